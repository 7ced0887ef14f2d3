// Persistent decode kernel body (see decode_step_params.h).
#pragma once

#include <cstring>
#include <type_traits>

#include "kernels/conv_decode.cuh"
#include "kernels/cp_async.cuh"
#include "kernels/decode_step_params.h"
#include "kernels/device_math.cuh"

namespace mamba::kernels {

namespace decode_step {

constexpr int kWarps = kDecodeStepThreads / 32;
// Depth of each warp's weight stream (chunks in flight, in shared memory; a chunk is kVec 16-byte
// pieces per lane): the first kStages - 1 of a phase are requested before the barrier that
// precedes it.
constexpr int kStages = kDecodeStepStages;
constexpr int kVec = kDecodeStepChunkVectors;
constexpr int kChunk = kVec * 256;  // elements of a row per chunk
// Elements of the normalised row per thread, in groups of 4 (d_model <= kDecodeStepMaxModel).
constexpr int kNormIters = kDecodeStepMaxModel / (kDecodeStepThreads * 4);
// dt_proj chunks (8 elements) per lane requested before the state-update phase's barrier.
constexpr int kDtPre = 4;

// Grid-wide barrier: returns once every block has arrived `target / gridDim.x` times. The block's
// writes are ordered before its arrival by the CTA barrier and the release of the increment
// (cumulative); the acquire of the load that sees the count orders every block's later reads
// after them. Data written during the launch is read with L2-only loads (LoadL2*), never from a
// stale L1 line.
__device__ __forceinline__ void GridBarrier(unsigned int* counter, unsigned int target) {
  __syncthreads();
  if (threadIdx.x < 32) {
    if (threadIdx.x == 0) {
      asm volatile("red.release.gpu.global.add.u32 [%0], 1;" ::"l"(counter) : "memory");
      unsigned int seen = 0;
      do {
        asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(seen) : "l"(counter) : "memory");
      } while (seen < target);
    }
    // The polling lane's warp meets the block barrier converged.
    __syncwarp();
  }
  __syncthreads();
}

template <typename T>
__device__ __forceinline__ float HalfBitsToFloat(unsigned short bits) {
  if constexpr (std::is_same_v<T, __half>) {
    return __half2float(__ushort_as_half(bits));
  } else {
    return __bfloat162float(__ushort_as_bfloat16(bits));
  }
}

// One element written earlier in this launch (L2, bypassing L1).
template <typename T>
__device__ __forceinline__ float LoadL2(const T* p) {
  return HalfBitsToFloat<T>(__ldcg(reinterpret_cast<const unsigned short*>(p)));
}

// Eight elements written earlier in this launch (16-byte aligned).
template <typename T>
__device__ __forceinline__ void LoadL2x8(const T* p, float (&out)[8]) {
  const uint4 u = __ldcg(reinterpret_cast<const uint4*>(p));
  Vec8<T> v;
  memcpy(&v, &u, sizeof(v));
#pragma unroll
  for (int i = 0; i < 8; ++i) out[i] = ToFloat(v.v[i]);
}

// Four elements written earlier in this launch (8-byte aligned).
template <typename T>
__device__ __forceinline__ void LoadL2x4(const T* p, float (&out)[4]) {
  const uint2 u = __ldcg(reinterpret_cast<const uint2*>(p));
  const unsigned short b[4] = {
      static_cast<unsigned short>(u.x & 0xffffu), static_cast<unsigned short>(u.x >> 16),
      static_cast<unsigned short>(u.y & 0xffffu), static_cast<unsigned short>(u.y >> 16)};
#pragma unroll
  for (int i = 0; i < 4; ++i) out[i] = HalfBitsToFloat<T>(b[i]);
}

template <typename T>
__device__ __forceinline__ Vec8<T> LoadWeights8(const T* p) {
  return *reinterpret_cast<const Vec8<T>*>(p);
}

// acc[r] += w . act[r][k, k + 8) for the first `rows` rows of act (shared memory, fp32 holding
// values already rounded to T; measured faster on the H100 than keeping them in T, whose
// conversions cost more than the shared-memory bytes they save: 1.4b, 4 rows, 2871 vs 3070 us).
template <typename T, int kRows>
__device__ __forceinline__ void Fma8(const Vec8<T>& w, const float* act, int act_ld, int k,
                                     int rows, float (&acc)[kRows]) {
  float wv[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) wv[i] = ToFloat(w.v[i]);
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    if (r < rows) {
      const float4 a0 = *reinterpret_cast<const float4*>(act + r * act_ld + k);
      const float4 a1 = *reinterpret_cast<const float4*>(act + r * act_ld + k + 4);
      float s = acc[r];
      s = __fmaf_rn(wv[0], a0.x, s);
      s = __fmaf_rn(wv[1], a0.y, s);
      s = __fmaf_rn(wv[2], a0.z, s);
      s = __fmaf_rn(wv[3], a0.w, s);
      s = __fmaf_rn(wv[4], a1.x, s);
      s = __fmaf_rn(wv[5], a1.y, s);
      s = __fmaf_rn(wv[6], a1.z, s);
      s = __fmaf_rn(wv[7], a1.w, s);
      acc[r] = s;
    }
  }
}

// One warp's share of a matrix-vector phase: rows first_row, first_row + row_step, ... of W
// ([rows_total, len]), each split into chunks of kChunk elements (lane L takes elements
// [256 v + 8L, 256 v + 8L + 8) of a chunk for v < kVec: every 16-byte request of the warp covers
// 512 contiguous bytes). The chunks stream through a ring of kStages slots per lane in shared
// memory with cp.async, one commit group per chunk, so kStages - 1 chunks are in flight without
// holding registers, across the barrier that precedes the phase (Prologue) and across the
// phase's own stalls. Each lane reads back only the pieces it requested itself.
template <typename T>
struct RowStream {
  // The request side walks the chunks with counters (no divisions: the loop is a few dozen
  // instructions per chunk, which matters at one row).
  const T* src_row;  // this lane's first element of the row being requested
  int64_t row_stride;
  int len, cpr, first_row, row_step, chunks, lane;
  int issue_left, issue_i, issue_slot;
  uint4* ring;  // this warp's [kStages][kVec][32]

  __device__ __forceinline__ void Init(const T* w, int len_, int rows_total, int first_row_,
                                       int row_step_, uint4* ring_, int lane_) {
    len = len_;
    cpr = (len_ + kChunk - 1) / kChunk;
    first_row = first_row_;
    row_step = row_step_;
    const int n =
        first_row_ < rows_total ? (rows_total - first_row_ + row_step_ - 1) / row_step_ : 0;
    chunks = n * cpr;
    ring = ring_;
    lane = lane_;
    src_row = w + static_cast<int64_t>(first_row_) * len_ + lane_ * 8;
    row_stride = static_cast<int64_t>(row_step_) * len_;
    issue_left = chunks;
    issue_i = 0;
    issue_slot = 0;
  }
  // Requests the next chunk (an empty group past the end, so the group count stays uniform).
  __device__ __forceinline__ void Issue() {
    if (issue_left > 0) {
#pragma unroll
      for (int v = 0; v < kVec; ++v) {
        if (issue_i * kChunk + v * 256 + lane * 8 < len) {
          CopyAsync16(ring + (issue_slot * kVec + v) * 32 + lane,
                      src_row + issue_i * kChunk + v * 256);
        }
      }
      --issue_left;
      if (++issue_i == cpr) {
        issue_i = 0;
        src_row += row_stride;
      }
    }
    issue_slot = issue_slot + 1 == kStages ? 0 : issue_slot + 1;
    CommitAsync();
  }
  __device__ __forceinline__ void Prologue() {
#pragma unroll
    for (int g = 0; g < kStages - 1; ++g) Issue();
  }
  // Runs the phase: for each row, acc[r] = row . act[r] (act in shared memory, rows
  // `rows`), complete in every lane, handed to emit(row index, acc).
  template <int kRows, typename Emit>
  __device__ __forceinline__ void Run(const float* act, int act_ld, int rows, Emit&& emit) {
    float acc[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r) acc[r] = 0.0f;
    int slot = 0, i = 0, n = first_row;
    for (int g = 0; g < chunks; ++g) {
      Issue();
      WaitAsync<kStages - 1>();
#pragma unroll
      for (int v = 0; v < kVec; ++v) {
        const int k = i * kChunk + v * 256 + lane * 8;
        if (k < len) {
          const uint4 u = ring[(slot * kVec + v) * 32 + lane];
          Vec8<T> wv;
          memcpy(&wv, &u, sizeof(wv));
          Fma8<T, kRows>(wv, act, act_ld, k, rows, acc);
        }
      }
      slot = slot + 1 == kStages ? 0 : slot + 1;
      if (++i == cpr) {
#pragma unroll
        for (int q = 0; q < kRows; ++q) {
#pragma unroll
          for (int off = 16; off > 0; off >>= 1)
            acc[q] = __fadd_rn(acc[q], __shfl_xor_sync(0xffffffffu, acc[q], off));
        }
        emit(n, acc);
#pragma unroll
        for (int q = 0; q < kRows; ++q) acc[q] = 0.0f;
        i = 0;
        n += row_step;
      }
    }
  }
};

// Sums v[r] over the block for every row (butterfly within each warp, then the warps in order)
// and gives every thread the sums. `red` may be written again only after a block barrier.
template <int kRows>
__device__ __forceinline__ void BlockSumRows(float (&v)[kRows], float (*red)[kRows], int lane,
                                             int warp) {
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1)
      v[r] = __fadd_rn(v[r], __shfl_xor_sync(0xffffffffu, v[r], off));
    if (lane == 0) red[warp][r] = v[r];
  }
  __syncthreads();
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    float s = red[0][r];
#pragma unroll
    for (int w = 1; w < kWarps; ++w) s = __fadd_rn(s, red[w][r]);
    v[r] = s;
  }
}

// acc[lane] as a compile-time pick among the registers.
template <int kRows>
__device__ __forceinline__ float Pick(const float (&acc)[kRows], int lane) {
  float v = 0.0f;
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    if (r == lane) v = acc[r];
  }
  return v;
}

// The state-update phase's geometry: kLanes lanes per channel, kSPT states each (16 bytes).
template <typename S>
struct UpdateShape {
  static constexpr int kSPT = 16 / static_cast<int>(sizeof(S)) < kDecodeStepMaxState
                                  ? 16 / static_cast<int>(sizeof(S))
                                  : kDecodeStepMaxState;
  static constexpr int kLanes = kDecodeStepMaxState / kSPT;
  static constexpr int kChannelsPerWarp = 32 / kLanes;
};

// What the state update of one channel group reads before its barrier: the states of every row,
// the constants, and the first dt_proj chunks.
template <typename T, typename S, int kRows>
struct UpdateInputs {
  using Shape = UpdateShape<S>;
  float h[kRows][Shape::kSPT];
  S* state[kRows];
  float a2[Shape::kSPT];
  float dt_bias, dskip;
  Vec8<T> dtw[kDtPre];

  __device__ __forceinline__ void Load(const DecodeStepParams& p, const DecodeStepLayer& L, int l,
                                       const int* slots, int64_t e, int lane) {
    constexpr int kSPT = Shape::kSPT;
    const int64_t E = p.d_inner;
    const int64_t ec = e < E ? e : E - 1;
    const int sub = lane % Shape::kLanes;
    const int n0 = sub * kSPT;
    const int valid = static_cast<int>(MaxI64(0, MinI64(kSPT, p.d_state - n0)));
    const bool vec = valid == kSPT && p.d_state % kSPT == 0;
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      state[r] = nullptr;
      if (r < p.rows) {
        state[r] = static_cast<S*>(p.ssm_state) + l * p.ssm_layer_stride +
                   slots[r] * p.slot_stride + ec * p.d_state + n0;
        if (vec) {
          if constexpr (sizeof(S) == 4) {
            const float4 v = *reinterpret_cast<const float4*>(state[r]);
            h[r][0] = v.x;
            h[r][1] = v.y;
            h[r][2] = v.z;
            h[r][3] = v.w;
          } else {
            LoadVec(state[r], h[r]);
          }
        } else {
#pragma unroll
          for (int s = 0; s < kSPT; ++s) h[r][s] = s < valid ? ToFloat(state[r][s]) : 0.0f;
        }
      }
    }
#pragma unroll
    for (int s = 0; s < kSPT; ++s) a2[s] = s < valid ? L.a2[ec * p.d_state + n0 + s] : 0.0f;
    dt_bias = L.dt_bias[ec];
    dskip = L.d[ec];
    const T* w = static_cast<const T*>(L.dt_proj) + ec * p.dt_rank;
    const int chunks = static_cast<int>(p.dt_rank / 8);
#pragma unroll
    for (int i = 0; i < kDtPre; ++i) {
      const int c = sub + i * Shape::kLanes;
      if (c < chunks) dtw[i] = LoadWeights8(w + c * 8);
    }
  }
};

}  // namespace decode_step

template <typename T, typename S, int kRows>
__global__ void __launch_bounds__(kDecodeStepThreads, 1)
    DecodeStepKernel(const __grid_constant__ DecodeStepParams p) {
  using namespace decode_step;
  using Shape = UpdateShape<S>;
  constexpr int kSPT = Shape::kSPT;
  constexpr int kLanes = Shape::kLanes;
  extern __shared__ float4 smem_raw[];
  __shared__ float red[kWarps][kRows];

  const int D = static_cast<int>(p.d_model), E = static_cast<int>(p.d_inner);
  const int N = static_cast<int>(p.d_state), R = static_cast<int>(p.dt_rank);
  const int J = R + 2 * N;
  const int dbc_ld = static_cast<int>(p.dbc_ld);
  const int act_ld = D > E ? D : E;
  // The layer table and the rows' slots, copied once: the weight and state addresses of every
  // prefetch then come from shared memory, not from a dependent global load before each barrier.
  DecodeStepLayer* layers_s = reinterpret_cast<DecodeStepLayer*>(smem_raw);  // [n_layer]
  __shared__ int slots_s[kDecodeStepMaxRows];
  float* dbc_s = reinterpret_cast<float*>(smem_raw) + DecodeStepTableFloats(p.n_layer);
  float* act = dbc_s + kRows * dbc_ld;  // [kRows][act_ld]

  uint4* ring = reinterpret_cast<uint4*>(act + kRows * act_ld);  // [kWarps][kStages][kVec][32]

  const int tid = threadIdx.x;
  const int lane = tid % 32;
  const int warp = tid / 32;
  const int rows = p.rows;
  const int nb = static_cast<int>(gridDim.x);
  // Warp slots numbered block-fastest, so a phase with few units still spreads over every SM.
  const int slot = warp * nb + static_cast<int>(blockIdx.x);
  const int slots_total = nb * kWarps;
  uint4* warp_ring = ring + warp * kStages * kVec * 32;
  unsigned int barrier_target = 0;
  unsigned long long* trace =
      p.trace != nullptr
          ? p.trace + static_cast<int64_t>(blockIdx.x) * kDecodeStepTracePerLayer * p.n_layer
          : nullptr;
  int trace_at = 0;
  auto stamp = [&] {
    if (trace != nullptr && tid == 0) {
      unsigned long long t;
      asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
      trace[trace_at] = t;
    }
    ++trace_at;
  };
  stamp();
  // Points inside phases A and D (after the staging, after the matrix stream), block-wide.
  auto detail = [&](int l, int k) {
    if (trace == nullptr) return;
    __syncthreads();
    if (tid == 0) {
      unsigned long long t;
      asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
      trace[8 * p.n_layer + 4 * l + k] = t;
    }
  };
  auto barrier = [&] {
    barrier_target += static_cast<unsigned int>(nb);
    if (trace != nullptr) {
      __syncthreads();  // the arrival is when the whole block is done
      stamp();
      GridBarrier(p.barrier, barrier_target);
      stamp();
    } else {
      GridBarrier(p.barrier, barrier_target);
    }
  };

  const T* h_in = static_cast<const T*>(p.h);
  T* h_out = static_cast<T*>(p.h);
  T* xc = static_cast<T*>(p.xc);
  T* zb = static_cast<T*>(p.z);
  T* dbc = static_cast<T*>(p.dbc);
  T* yb = static_cast<T*>(p.y);

  auto conv_params = [&](const DecodeStepLayer& L, int l) {
    CausalConv1dParams c;
    c.num_seqs = rows;
    c.total_tokens = rows;
    c.dim = E;
    c.width = p.d_conv;
    c.weight = L.conv_weight;
    c.bias = L.conv_bias;
    c.out = p.xc;
    c.out_row_stride = E;
    c.slots = slots_s;
    c.state = static_cast<S*>(p.conv_state) + l * p.conv_layer_stride;
    c.state_slot_stride = p.slot_stride;
    return c;
  };

  {
    const int words = p.n_layer * static_cast<int>(sizeof(DecodeStepLayer) / sizeof(int));
    const int* src = reinterpret_cast<const int*>(p.layers);
    int* dst = reinterpret_cast<int*>(layers_s);
    for (int i = tid; i < words; i += kDecodeStepThreads) dst[i] = src[i];
    if (tid < rows) slots_s[tid] = p.slots[tid];
    __syncthreads();
  }

  for (int l = 0; l < p.n_layer; ++l) {
    const DecodeStepLayer& L = layers_s[l];
    // A's prefetch (before the barrier after the previous layer's out_proj): the first in_proj
    // row of this warp and, for an x row, the conv state (only this phase touches it).
    RowStream<T> in_stream;
    in_stream.Init(static_cast<const T*>(L.in_proj), D, 2 * E, slot, slots_total, warp_ring, lane);
    in_stream.Prologue();
    ConvDecodeChannel<S> conv_first;  // the state of the warp's next x row (conv channel)
    if (slot < E && lane < rows) conv_first.Load(conv_params(L, l), lane, slot);
    if (l > 0) barrier();

    // ---- A: residual, norm, in_proj (+ conv) ------------------------------------------------
    {
      // (No indexing of the parameter array by a runtime value: that copies it to local memory.)
      const float* res_prev = l % 2 == 0 ? p.residual[1] : p.residual[0];
      float* res_cur = l % 2 == 0 ? p.residual[0] : p.residual[1];
      const float* prev_bias = l > 0 ? layers_s[l - 1].out_proj_bias : nullptr;
      float ss[kRows];
#pragma unroll
      for (int r = 0; r < kRows; ++r) ss[r] = 0.0f;
      // The norm weights of this thread's elements, requested with the residual.
      float wn[kNormIters][4];
#pragma unroll
      for (int it = 0; it < kNormIters; ++it) {
        const int i = (it * kDecodeStepThreads + tid) * 4;
        if (i < D) {
          const float4 w4 = *reinterpret_cast<const float4*>(L.norm + i);
          wn[it][0] = w4.x;
          wn[it][1] = w4.y;
          wn[it][2] = w4.z;
          wn[it][3] = w4.w;
        }
      }
      float v[kNormIters][kRows][4];
#pragma unroll
      for (int it = 0; it < kNormIters; ++it) {
        const int i = (it * kDecodeStepThreads + tid) * 4;
        if (i >= D) continue;
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
          if (r >= rows) break;
          float* vr = v[it][r];
          if (l == 0) {
            const T* emb =
                static_cast<const T*>(p.embedding) + static_cast<int64_t>(p.token_ids[r]) * D + i;
#pragma unroll
            for (int j = 0; j < 4; ++j) vr[j] = ToFloat(emb[j]);
          } else {
            const float4 rv = __ldcg(reinterpret_cast<const float4*>(res_prev + r * D + i));
            float hv[4];
            LoadL2x4(h_in + r * D + i, hv);
            const float rp[4] = {rv.x, rv.y, rv.z, rv.w};
#pragma unroll
            for (int j = 0; j < 4; ++j) {
              const float a = prev_bias != nullptr ? __fadd_rn(hv[j], prev_bias[i + j]) : hv[j];
              vr[j] = __fadd_rn(rp[j], a);
            }
          }
          if (blockIdx.x == 0) {
            *reinterpret_cast<float4*>(res_cur + r * D + i) =
                make_float4(vr[0], vr[1], vr[2], vr[3]);
          }
#pragma unroll
          for (int j = 0; j < 4; ++j) ss[r] = __fmaf_rn(vr[j], vr[j], ss[r]);
        }
      }
      BlockSumRows(ss, red, lane, warp);
      float scale[kRows];
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        scale[r] = rsqrtf(__fadd_rn(__fdiv_rn(ss[r], static_cast<float>(D)), p.eps));
      }
#pragma unroll
      for (int it = 0; it < kNormIters; ++it) {
        const int i = (it * kDecodeStepThreads + tid) * 4;
        if (i < D) {
#pragma unroll
          for (int r = 0; r < kRows; ++r) {
            if (r < rows) {
#pragma unroll
              for (int j = 0; j < 4; ++j) {
                act[r * act_ld + i + j] =
                    ToFloat(FromFloat<T>(__fmul_rn(__fmul_rn(v[it][r][j], scale[r]), wn[it][j])));
              }
            }
          }
        }
      }
      __syncthreads();
      detail(l, 0);

      const CausalConv1dParams conv = conv_params(L, l);
      in_stream.template Run<kRows>(act, act_ld, rows, [&](int n, const float(&acc)[kRows]) {
        if (lane >= rows) return;
        const float v = Pick(acc, lane);
        if (n < E) {
          // The conv reads in_proj's output as the layered path stores it (rounded to T).
          const float x = ToFloat(FromFloat<T>(v));
          conv_first.template Finish<T>(
              conv, lane, n, L.in_proj_bias != nullptr ? __fadd_rn(x, L.in_proj_bias[n]) : x);
          // The warp's next x row's conv state, in flight while that row streams in.
          if (n + slots_total < E) conv_first.Load(conv, lane, n + slots_total);
        } else {
          zb[lane * E + (n - E)] = FromFloat<T>(v);
        }
      });
      detail(l, 1);
    }
    // B's prefetch: this thread's first chunk of the block's first x_proj output.
    Vec8<T> xw_first;
    const T* w_x = static_cast<const T*>(L.x_proj);
    const bool xw_prefetched = static_cast<int>(blockIdx.x) < J && tid * 8 < E;
    if (xw_prefetched) {
      xw_first = LoadWeights8(w_x + static_cast<int64_t>(blockIdx.x) * E + tid * 8);
    }
    barrier();

    // ---- B: x_proj, one output per block ---------------------------------------------------
    for (int j = blockIdx.x; j < J; j += nb) {
      float part[kRows];
#pragma unroll
      for (int r = 0; r < kRows; ++r) part[r] = 0.0f;
      for (int k = tid * 8; k < E; k += kDecodeStepThreads * 8) {
        const Vec8<T> w = (xw_prefetched && j == static_cast<int>(blockIdx.x) && k == tid * 8)
                              ? xw_first
                              : LoadWeights8(w_x + static_cast<int64_t>(j) * E + k);
        float wv[8];
#pragma unroll
        for (int i = 0; i < 8; ++i) wv[i] = ToFloat(w.v[i]);
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
          if (r < rows) {
            float a[8];
            LoadL2x8(xc + r * E + k, a);
#pragma unroll
            for (int i = 0; i < 8; ++i) part[r] = __fmaf_rn(wv[i], a[i], part[r]);
          }
        }
      }
      BlockSumRows(part, red, lane, warp);
      if (tid < rows) dbc[tid * dbc_ld + j] = FromFloat<T>(Pick(part, tid));
      __syncthreads();  // red is reused by the next output
    }
    // C's prefetch: this warp's first channel group (states, constants, dt_proj chunks).
    const int groups = (E + Shape::kChannelsPerWarp - 1) / Shape::kChannelsPerWarp;
    UpdateInputs<T, S, kRows> upd;
    if (slot < groups) {
      upd.Load(p, L, l, slots_s,
               static_cast<int64_t>(slot) * Shape::kChannelsPerWarp + lane / kLanes, lane);
    }
    barrier();

    // ---- C: dt_proj + state update + gate ----------------------------------------------------
    {
      // The group's x and z (written by phase A) are requested with the staging of [dt_low | B |
      // C].
      float xr[kRows], zr[kRows];
      auto load_xz = [&](int g) {
        const int e = g * Shape::kChannelsPerWarp + lane / kLanes;
        const int ec = e < E ? e : E - 1;
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
          if (r < rows) {
            xr[r] = LoadL2(xc + r * E + ec);
            zr[r] = LoadL2(zb + r * E + ec);
          }
        }
      };
      if (slot < groups) load_xz(slot);
      for (int i = tid; i < rows * dbc_ld; i += kDecodeStepThreads) {
        const int r = i / dbc_ld, k = i % dbc_ld;
        dbc_s[r * dbc_ld + k] = k < J ? LoadL2(dbc + r * dbc_ld + k) : 0.0f;
      }
      __syncthreads();
      const int sub = lane % kLanes;
      const int n0 = sub * kSPT;
      const int valid = static_cast<int>(MaxI64(0, MinI64(kSPT, N - n0)));
      const bool vec = valid == kSPT && N % kSPT == 0;
      const int chunks = R / 8;
      const float* z_bias = L.in_proj_bias != nullptr ? L.in_proj_bias + E : nullptr;
      for (int g = slot; g < groups; g += slots_total) {
        const int e = g * Shape::kChannelsPerWarp + lane / kLanes;
        const bool channel_ok = e < E;
        const int ec = channel_ok ? e : E - 1;
        if (g != slot) {
          upd.Load(p, L, l, slots_s, e, lane);
          load_xz(g);
        }
        // dt before its bias, for every row: this lane's chunks of the dt_proj row.
        float part[kRows];
#pragma unroll
        for (int r = 0; r < kRows; ++r) part[r] = 0.0f;
        const T* wdt = static_cast<const T*>(L.dt_proj) + static_cast<int64_t>(ec) * R;
        auto dt_chunk = [&](const Vec8<T>& w, int c) {
#pragma unroll
          for (int r = 0; r < kRows; ++r) {
            if (r < rows) {
#pragma unroll
              for (int q = 0; q < 8; ++q)
                part[r] = __fmaf_rn(dbc_s[r * dbc_ld + c * 8 + q], ToFloat(w.v[q]), part[r]);
            }
          }
        };
#pragma unroll
        for (int i = 0; i < kDtPre; ++i) {
          const int c = sub + i * kLanes;
          if (c < chunks) dt_chunk(upd.dtw[i], c);
        }
        for (int c = sub + kDtPre * kLanes; c < chunks; c += kLanes) {
          dt_chunk(LoadWeights8(wdt + c * 8), c);
        }
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
          if (r >= rows) break;
          const float dt_raw = LaneTreeSum<kLanes>(part[r]);
          const float x = xr[r];
          const float z = z_bias != nullptr ? __fadd_rn(zr[r], z_bias[ec]) : zr[r];
          const float dt = DeltaFromRaw(dt_raw, upd.dt_bias);
          const float dtx = __fmul_rn(dt, x);
          const float* bv = dbc_s + r * dbc_ld + R;
          const float* cv = bv + N;
          float prod[kSPT];
#pragma unroll
          for (int s = 0; s < kSPT; ++s) {
            const int n = n0 + s < N ? n0 + s : 0;
            upd.h[r][s] = SsmRecurrence(upd.h[r][s], dt, upd.a2[s], dtx, s < valid ? bv[n] : 0.0f);
            prod[s] = __fmul_rn(s < valid ? cv[n] : 0.0f, upd.h[r][s]);
          }
          const float y = LaneTreeSum<kLanes>(TreeSum(prod));
          if (channel_ok) {
            if (vec) {
              if constexpr (sizeof(S) == 4) {
                *reinterpret_cast<float4*>(upd.state[r]) =
                    make_float4(upd.h[r][0], upd.h[r][1], upd.h[r][2], upd.h[r][3]);
              } else {
                StoreVec(upd.state[r], upd.h[r]);
              }
            } else {
#pragma unroll
              for (int s = 0; s < kSPT; ++s) {
                if (s < valid) upd.state[r][s] = FromFloat<S>(upd.h[r][s]);
              }
            }
            if (sub == 0) yb[r * E + e] = FromFloat<T>(GatedOutput(y, upd.dskip, x, z));
          }
        }
      }
    }
    // D's prefetch: this warp's first out_proj row.
    RowStream<T> out_stream;
    out_stream.Init(static_cast<const T*>(L.out_proj), E, D, slot, slots_total, warp_ring, lane);
    out_stream.Prologue();
    barrier();

    // ---- D: out_proj -------------------------------------------------------------------------
    {
      for (int i = tid * 8; i < rows * E; i += kDecodeStepThreads * 8) {
        const int r = i / E, k = i % E;
        float a[8];
        LoadL2x8(yb + r * E + k, a);
        *reinterpret_cast<float4*>(act + r * act_ld + k) = make_float4(a[0], a[1], a[2], a[3]);
        *reinterpret_cast<float4*>(act + r * act_ld + k + 4) = make_float4(a[4], a[5], a[6], a[7]);
      }
      __syncthreads();
      detail(l, 2);
      out_stream.template Run<kRows>(act, act_ld, rows, [&](int n, const float(&acc)[kRows]) {
        if (lane < rows) h_out[lane * D + n] = FromFloat<T>(Pick(acc, lane));
      });
      detail(l, 3);
    }
  }

  // Leave the counters zero for the next launch: the last block to get here knows that every
  // block has passed every barrier (no one reads the counter any more).
  __syncthreads();
  if (trace != nullptr) stamp();
  if (tid == 0) {
    __threadfence();
    if (atomicAdd(p.barrier + 1, 1u) == static_cast<unsigned int>(nb) - 1) {
      atomicExch(p.barrier, 0u);
      atomicExch(p.barrier + 1, 0u);
    }
  }
}

template <typename T, typename S, int kRows>
cudaError_t LaunchDecodeStepVariant(const DecodeStepParams& p, int blocks, cudaStream_t stream) {
  const size_t smem = DecodeStepSharedBytes(p.d_model, p.d_inner, p.dbc_ld, p.n_layer, kRows);
  auto kernel = DecodeStepKernel<T, S, kRows>;
  if (smem > 48 * 1024) {
    const cudaError_t err = cudaFuncSetAttribute(
        kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    if (err != cudaSuccess) return err;
  }
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3(static_cast<unsigned>(blocks));
  config.blockDim = dim3(kDecodeStepThreads);
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  // Cooperative: the runtime guarantees every block is resident at once (the barriers need it)
  // or refuses the launch.
  cudaLaunchAttribute attribute[1] = {};
  attribute[0].id = cudaLaunchAttributeCooperative;
  attribute[0].val.cooperative = 1;
  config.attrs = attribute;
  config.numAttrs = 1;
  return cudaLaunchKernelEx(&config, kernel, p);
}

template <typename T, typename S>
cudaError_t LaunchDecodeStepState(const DecodeStepParams& p, int blocks, cudaStream_t stream) {
  return p.rows == 1 ? LaunchDecodeStepVariant<T, S, 1>(p, blocks, stream)
                     : LaunchDecodeStepVariant<T, S, kDecodeStepMaxRows>(p, blocks, stream);
}

template <typename T>
cudaError_t RunDecodeStep(const DecodeStepParams& p, KernelDType state, int blocks,
                          cudaStream_t stream) {
  return state == KernelDType::kBF16 ? LaunchDecodeStepState<T, __nv_bfloat16>(p, blocks, stream)
                                     : LaunchDecodeStepState<T, float>(p, blocks, stream);
}

template <typename T>
int DecodeStepBlocksPerSmFor(KernelDType state, size_t smem) {
  int n = 0;
  auto query = [&](auto kernel) {
    if (smem > 48 * 1024 &&
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(smem)) != cudaSuccess) {
      return 0;
    }
    int blocks = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel, kDecodeStepThreads, smem) !=
        cudaSuccess) {
      return 0;
    }
    return blocks;
  };
  // Both row variants must fit (a step may use either).
  if (state == KernelDType::kBF16) {
    n = query(DecodeStepKernel<T, __nv_bfloat16, 1>);
    const int m = query(DecodeStepKernel<T, __nv_bfloat16, kDecodeStepMaxRows>);
    n = n < m ? n : m;
  } else {
    n = query(DecodeStepKernel<T, float, 1>);
    const int m = query(DecodeStepKernel<T, float, kDecodeStepMaxRows>);
    n = n < m ? n : m;
  }
  return n;
}

}  // namespace mamba::kernels
