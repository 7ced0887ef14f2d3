// Fused prefill selective scan (see selective_scan_params.h for the math and the tiling).
#pragma once

#include <cstring>
#include <type_traits>

#include "kernels/cp_async.cuh"
#include "kernels/device_math.cuh"
#include "kernels/selective_scan_params.h"

namespace mamba::kernels {

// kSPT state elements of one channel per thread; ScanBlocksPerSm gives the register cap.
template <typename T, typename S, int kNPad, int kSPT>
struct SelectiveScanTraits {
  using Input = T;
  using State = S;
  static constexpr int kThreads = kScanThreads;
  static constexpr int kStatesPerThread = kSPT;
  static constexpr int kMinBlocks = ScanBlocksPerSm(kSPT);
  static constexpr int kLanes = kNPad / kSPT;  // lanes sharing one channel's state
  static_assert(kLanes >= 1 && kLanes <= 32 && (kLanes & (kLanes - 1)) == 0,
                "lanes per channel must be a power of two within a warp");
  static constexpr int kChannels = kThreads / kLanes;  // channels per block
  static_assert(kChannels % 8 == 0, "the channel tile must be whole 16-byte vectors");
  static constexpr int kChunk = kScanChunk;
  static constexpr int kTileVecs = kChunk * kChannels / 8;  // 16-byte vectors per x/dt/z tile
  static constexpr int kTileVecsPerThread = (kTileVecs + kThreads - 1) / kThreads;
  static_assert(kThreads % (kChannels / 8) == 0, "a thread's tile columns must not move");
  static constexpr int kBcVecs = kChunk * kNPad / 8;  // 16-byte vectors per B or C tile
  static constexpr int kBcVecsPerThread = (kBcVecs + kThreads - 1) / kThreads;
  // The next chunk's raw tiles arrive by cp.async in shared memory (x and z double-buffered: the
  // current chunk's output phase still reads them) instead of registers, which frees the
  // registers for more resident blocks (ScanBlocksPerSm). With 8 or 16 states per thread the
  // tiles would pass the 48 KB of static shared memory, so those layouts keep registers.
  static constexpr bool kAsyncStage = kSPT <= 4;
  static constexpr int kXzStages = kAsyncStage ? 2 : 1;
  static constexpr int kRawRows = kAsyncStage ? kChunk : 1;

  // Rows of the fp32 tiles are padded: threads write a row's 8 consecutive channels while the
  // warp spans 8 rows, which without padding puts 8 threads on every bank. B and C keep 16-byte
  // row alignment for the scan loop's vector reads.
  struct alignas(16) SharedStorage {
    T x[kXzStages][kChunk][kChannels];
    T z[kXzStages][kChunk][kChannels];
    T dt_raw[kRawRows][kChannels];  // dt_proj output, before softplus (cp.async staging)
    T b_raw[kRawRows][kNPad];
    T c_raw[kRawRows][kNPad];
    float dt[kChunk][kChannels + 1];   // softplus(dt + bias)
    float dtx[kChunk][kChannels + 1];  // dt * x
    float b[kChunk][kNPad + 4];
    float c[kChunk][kNPad + 4];
    float y[kChunk][kChannels + 1];
    float dt_bias[kChannels];  // per-channel parameters of the tile
    float d[kChannels];
    float z_bias[kChannels];
  };
};

// Loads 8 elements at `p` (a vector's first element) into a 16-byte register, zero-filling past
// `valid` elements. One 16-byte load when allowed, else element loads.
template <typename T>
__device__ __forceinline__ uint4 LoadVec8(const T* p, int valid, bool vec) {
  if (vec && valid == 8) return *reinterpret_cast<const uint4*>(p);
  Vec8<T> v;
#pragma unroll
  for (int i = 0; i < 8; ++i) v.v[i] = i < valid ? p[i] : FromFloat<T>(0.0f);
  uint4 u;
  memcpy(&u, &v, sizeof u);
  return u;
}

// One 16-byte vector of the next chunk into a shared staging tile: by cp.async where the tile is
// 16-byte aligned (`vec`: then `valid` is 8 or 0; a zero-byte copy reads nothing but takes
// `base`, the tensor's first element, as its address, since a tail tile's columns may lie past
// the last row), else by element loads (LoadVec8 zero-fills past `valid`).
template <typename T>
__device__ __forceinline__ void StageVec8(T* smem, const T* src, const T* base, int valid,
                                          bool vec) {
  if (vec) {
    CopyAsync16Fill(smem, valid == 8 ? src : base, valid == 8 ? 16 : 0);
  } else {
    *reinterpret_cast<uint4*>(smem) = LoadVec8(src, valid, false);
  }
}

template <typename T>
__device__ __forceinline__ void UnpackVec8(const uint4& u, float (&out)[8]) {
  Vec8<T> v;
  memcpy(&v, &u, sizeof u);
#pragma unroll
  for (int i = 0; i < 8; ++i) out[i] = ToFloat(v.v[i]);
}

template <typename Traits>
__global__ void __launch_bounds__(Traits::kThreads, Traits::kMinBlocks)
    SelectiveScanKernel(SelectiveScanParams p, int mode, bool vec_tiles, bool vec_bc,
                        bool vec_state) {
  using T = typename Traits::Input;
  using S = typename Traits::State;
  constexpr int kChunk = Traits::kChunk;
  constexpr int kCh = Traits::kChannels;
  constexpr int kLanes = Traits::kLanes;
  constexpr int kSPT = Traits::kStatesPerThread;
  constexpr int kNPad = kLanes * kSPT;
  constexpr int kVecsPerRow = kCh / 8;
  constexpr int kBcVecsPerRow = kNPad / 8;
  __shared__ typename Traits::SharedStorage sm;

  const int tid = threadIdx.x;
  const int64_t e0 = static_cast<int64_t>(blockIdx.x) * kCh;
  const int64_t seq = blockIdx.y;
  const int64_t seq_start = p.cu_seqlens[seq];
  const int64_t seq_len = p.cu_seqlens[seq + 1] - seq_start;
  const int64_t slot = p.slots[seq];
  const int64_t dstate = p.dstate;
  // This block's segment of the sequence (the whole sequence in the sequential mode).
  const int64_t seg = blockIdx.z;
  const int64_t seg_len = mode == kScanSequential ? seq_len : p.segment_len;
  const int64_t num_segs = (seq_len + seg_len - 1) / seg_len;
  if (seg >= num_segs) return;  // the whole block: before any barrier
  const bool last_seg = seg == num_segs - 1;
  const int64_t start = seq_start + seg * seg_len;
  const int64_t len = MinI64(seg_len, seq_len - seg * seg_len);
  auto entry = [&](int64_t j) { return seq * p.max_segments + j; };

  // This thread's scan work: channel cl of the tile, state elements n0..n0+kSPT.
  const int cl = tid / kLanes;
  const int lane = tid % kLanes;
  const int n0 = lane * kSPT;
  const int64_t e = e0 + cl;
  const bool channel_ok = e < p.dim;
  const int64_t ec = channel_ok ? e : p.dim - 1;

  float h[kSPT];
  float a2[kSPT];
#pragma unroll
  for (int s = 0; s < kSPT; ++s) a2[s] = n0 + s < dstate ? p.a2[ec * dstate + n0 + s] : 0.0f;
  S* state = static_cast<S*>(p.state) + slot * p.state_slot_stride + ec * dstate + n0;
  const bool owns_state = channel_ok && n0 < dstate;
  auto load_slot = [&] {
    if (vec_state && owns_state) {
      if constexpr (sizeof(S) == 4 && kSPT == 4) {
        const float4 v = *reinterpret_cast<const float4*>(state);
        h[0] = v.x;
        h[1] = v.y;
        h[2] = v.z;
        h[3] = v.w;
      } else {
#pragma unroll
        for (int s = 0; s < kSPT; ++s) h[s] = ToFloat(state[s]);
      }
    } else {
#pragma unroll
      for (int s = 0; s < kSPT; ++s)
        h[s] = (owns_state && n0 + s < dstate) ? ToFloat(state[s]) : 0.0f;
    }
  };
  // Scratch entries of the segmented scan: a segment's local final state, or (in the last
  // segment's entry) a copy of the slot's state from before the launch.
  auto scratch_state = [&](int64_t j) {
    return p.segment_state + (entry(j) * p.dim + ec) * dstate + n0;
  };
  if (mode == kScanSequential) {
    load_slot();
  } else if (mode == kScanLocalPass) {
    if (last_seg) {
      // The final pass overwrites the slot while other blocks still need its old value.
      load_slot();
      if (owns_state) {
#pragma unroll
        for (int s = 0; s < kSPT; ++s) {
          if (n0 + s < dstate) scratch_state(seg)[s] = h[s];
        }
      }
      return;  // the whole block
    }
#pragma unroll
    for (int s = 0; s < kSPT; ++s) h[s] = 0.0f;
  } else {
    // The true start state: the slot's old state carried through every earlier segment.
#pragma unroll
    for (int s = 0; s < kSPT; ++s)
      h[s] = (owns_state && n0 + s < dstate) ? scratch_state(num_segs - 1)[s] : 0.0f;
    for (int64_t j = 0; j < seg; ++j) {
      const float dt_sum = p.segment_dt_sum[entry(j) * p.dim + ec];
      const float* local = scratch_state(j);
#pragma unroll
      for (int s = 0; s < kSPT; ++s) {
        const float l = (owns_state && n0 + s < dstate) ? local[s] : 0.0f;
        h[s] = __fmaf_rn(FastExp2(__fmul_rn(a2[s], dt_sum)), h[s], l);
      }
    }
  }

  // This thread's tile vectors: fixed columns col8..col8+8, rows that advance by a fixed step.
  const int col8 = (tid % kVecsPerRow) * 8;
  const int valid_cols = static_cast<int>(MaxI64(0, MinI64(8, p.dim - (e0 + col8))));
  for (int i = tid; i < kCh; i += Traits::kThreads) {
    const int64_t ei = MinI64(e0 + i, p.dim - 1);
    sm.dt_bias[i] = p.dt_bias[ei];
    sm.d[i] = p.d[ei];
    sm.z_bias[i] = p.z_bias != nullptr ? p.z_bias[ei] : 0.0f;
  }
  __syncthreads();
  const T* x_base = static_cast<const T*>(p.x) + start * p.x_row_stride + e0 + col8;
  const T* dt_base = static_cast<const T*>(p.dt) + start * p.dt_row_stride + e0 + col8;
  const T* z_base = static_cast<const T*>(p.z) + start * p.z_row_stride + e0 + col8;
  const T* b_base = static_cast<const T*>(p.b) + start * p.b_row_stride;
  const T* c_base = static_cast<const T*>(p.c) + start * p.c_row_stride;
  T* out_base = static_cast<T*>(p.out) + start * p.out_row_stride + e0 + col8;

  constexpr bool kAsync = Traits::kAsyncStage;
  constexpr int kRegVecs = kAsync ? 1 : Traits::kTileVecsPerThread;
  constexpr int kRegBcVecs = kAsync ? 1 : Traits::kBcVecsPerThread;
  uint4 rx[kRegVecs], rdt[kRegVecs], rz[kRegVecs];
  uint4 rb[kRegBcVecs], rc[kRegBcVecs];

  // Requests the chunk at chunk_start: into registers, or (kAsync) into the shared staging tiles
  // (x and z into buffer `stage`), by cp.async where 16-byte aligned, else by plain loads.
  auto prefetch = [&](int64_t chunk_start, int stage) {
#pragma unroll
    for (int k = 0; k < Traits::kTileVecsPerThread; ++k) {
      const int v = tid + k * Traits::kThreads;
      const int row = v / kVecsPerRow;
      const int64_t t = chunk_start + row;
      const int valid = (v < Traits::kTileVecs && t < len) ? valid_cols : 0;
      if constexpr (kAsync) {
        if (v >= Traits::kTileVecs) continue;
        StageVec8(&sm.x[stage][row][col8], x_base + t * p.x_row_stride, static_cast<const T*>(p.x),
                  valid, vec_tiles);
        StageVec8(&sm.dt_raw[row][col8], dt_base + t * p.dt_row_stride, static_cast<const T*>(p.dt),
                  valid, vec_tiles);
        StageVec8(&sm.z[stage][row][col8], z_base + t * p.z_row_stride, static_cast<const T*>(p.z),
                  valid, vec_tiles);
      } else {
        rx[k] = LoadVec8(x_base + t * p.x_row_stride, valid, vec_tiles);
        rdt[k] = LoadVec8(dt_base + t * p.dt_row_stride, valid, vec_tiles);
        rz[k] = LoadVec8(z_base + t * p.z_row_stride, valid, vec_tiles);
      }
    }
#pragma unroll
    for (int k = 0; k < Traits::kBcVecsPerThread; ++k) {
      const int v = tid + k * Traits::kThreads;
      const int row = v / kBcVecsPerRow;
      const int64_t t = chunk_start + row;
      const int n = (v % kBcVecsPerRow) * 8;
      const int valid =
          (v < Traits::kBcVecs && t < len) ? static_cast<int>(MaxI64(0, MinI64(8, dstate - n))) : 0;
      if constexpr (kAsync) {
        if (v >= Traits::kBcVecs) continue;
        StageVec8(&sm.b_raw[row][n], b_base + t * p.b_row_stride + n, static_cast<const T*>(p.b),
                  valid, vec_bc);
        StageVec8(&sm.c_raw[row][n], c_base + t * p.c_row_stride + n, static_cast<const T*>(p.c),
                  valid, vec_bc);
      } else {
        rb[k] = LoadVec8(b_base + t * p.b_row_stride + n, valid, vec_bc);
        rc[k] = LoadVec8(c_base + t * p.c_row_stride + n, valid, vec_bc);
      }
    }
    if constexpr (kAsync) CommitAsync();
  };

  float dt_sum = 0.0f;  // the local pass's sum of dt over the segment
  auto scan = [&](auto with_output) {
    constexpr bool kOut = decltype(with_output)::value;
    prefetch(0, 0);
    int stage = 0;
    for (int64_t chunk_start = 0; chunk_start < len; chunk_start += kChunk, stage ^= kAsync) {
      const int chunk_len = static_cast<int>(MinI64(kChunk, len - chunk_start));
      if constexpr (kAsync) {
        WaitAsync<0>();   // this thread's copies (all of them committed) have landed
        __syncthreads();  // and every other thread's
      }
      // Registers or staging tiles -> shared memory, computing softplus and dt * x once per
      // (token, channel).
#pragma unroll
      for (int k = 0; k < Traits::kTileVecsPerThread; ++k) {
        const int v = tid + k * Traits::kThreads;
        if (v < Traits::kTileVecs) {
          const int row = v / kVecsPerRow;
          uint4 ux, ud;
          if constexpr (kAsync) {
            ux = *reinterpret_cast<const uint4*>(&sm.x[stage][row][col8]);
            ud = *reinterpret_cast<const uint4*>(&sm.dt_raw[row][col8]);
          } else {
            ux = rx[k];
            ud = rdt[k];
            *reinterpret_cast<uint4*>(&sm.x[0][row][col8]) = rx[k];
            *reinterpret_cast<uint4*>(&sm.z[0][row][col8]) = rz[k];
          }
          float xv[8], dv[8];
          UnpackVec8<T>(ux, xv);
          UnpackVec8<T>(ud, dv);
#pragma unroll
          for (int i = 0; i < 8; ++i) {
            const float dt = DeltaFromRaw(dv[i], sm.dt_bias[col8 + i]);
            sm.dt[row][col8 + i] = dt;
            sm.dtx[row][col8 + i] = __fmul_rn(dt, xv[i]);
          }
        }
      }
#pragma unroll
      for (int k = 0; k < Traits::kBcVecsPerThread; ++k) {
        const int v = tid + k * Traits::kThreads;
        if (v < Traits::kBcVecs) {
          const int row = v / kBcVecsPerRow;
          const int n = (v % kBcVecsPerRow) * 8;
          float bv[8], cv[8];
          if constexpr (kAsync) {
            UnpackVec8<T>(*reinterpret_cast<const uint4*>(&sm.b_raw[row][n]), bv);
            UnpackVec8<T>(*reinterpret_cast<const uint4*>(&sm.c_raw[row][n]), cv);
          } else {
            UnpackVec8<T>(rb[k], bv);
            UnpackVec8<T>(rc[k], cv);
          }
#pragma unroll
          for (int i = 0; i < 8; ++i) {
            sm.b[row][n + i] = bv[i];
            sm.c[row][n + i] = cv[i];
          }
        }
      }
      __syncthreads();
      // The staging tiles read above and the other x/z buffer (read by the previous chunk's
      // output phase, before the barrier above) are free for the next chunk.
      if (chunk_start + kChunk < len) prefetch(chunk_start + kChunk, stage ^ kAsync);

      // The recurrence, token by token, for this thread's state elements. A whole chunk keeps
      // each token's partial y in registers and reduces across the channel's lanes once at the
      // end (reduce-scatter), so the sequential loop has no shuffles on its path; a partial last
      // chunk reduces token by token. Both give the canonical tree's bits.
      if constexpr (!kOut) {
#pragma unroll 4
        for (int t = 0; t < chunk_len; ++t) {
          const float dt = sm.dt[t][cl];
          const float dtx = sm.dtx[t][cl];
          dt_sum = __fadd_rn(dt_sum, dt);
#pragma unroll
          for (int s = 0; s < kSPT; ++s)
            h[s] = SsmRecurrence(h[s], dt, a2[s], dtx, sm.b[t][n0 + s]);
        }
      } else if (chunk_len == kChunk) {
        // Two halves of 16 tokens, each reduced on its own: half the registers for partials.
        // The halves stay a loop: one unrolled half of code, not two (instruction cache).
#pragma unroll 1
        for (int half = 0; half < kChunk; half += kChunk / 2) {
          float ypart[kChunk / 2];
#pragma unroll
          for (int i = 0; i < kChunk / 2; ++i) {
            const int t = half + i;
            const float dt = sm.dt[t][cl];
            const float dtx = sm.dtx[t][cl];
            float prod[kSPT];
#pragma unroll
            for (int s = 0; s < kSPT; ++s) {
              h[s] = SsmRecurrence(h[s], dt, a2[s], dtx, sm.b[t][n0 + s]);
              prod[s] = __fmul_rn(sm.c[t][n0 + s], h[s]);
            }
            ypart[i] = TreeSum(prod);
          }
          const int first = LaneReduceScatter<kLanes, kChunk / 2>(ypart, lane);
#pragma unroll
          for (int i = 0; i < kChunk / 2 / kLanes; ++i) sm.y[half + first + i][cl] = ypart[i];
        }
      } else {
#pragma unroll 2
        for (int t = 0; t < chunk_len; ++t) {
          const float dt = sm.dt[t][cl];
          const float dtx = sm.dtx[t][cl];
          float prod[kSPT];
#pragma unroll
          for (int s = 0; s < kSPT; ++s) {
            h[s] = SsmRecurrence(h[s], dt, a2[s], dtx, sm.b[t][n0 + s]);
            prod[s] = __fmul_rn(sm.c[t][n0 + s], h[s]);
          }
          const float y = LaneTreeSum<kLanes>(TreeSum(prod));
          if (lane == 0) sm.y[t][cl] = y;
        }
      }
      __syncthreads();

      if constexpr (kOut) {
        // Gated output, 16-byte stores.
#pragma unroll
        for (int k = 0; k < Traits::kTileVecsPerThread; ++k) {
          const int v = tid + k * Traits::kThreads;
          const int row = v / kVecsPerRow;
          if (v < Traits::kTileVecs && row < chunk_len) {
            float xv[8], zv[8], o[8];
            UnpackVec8<T>(*reinterpret_cast<const uint4*>(&sm.x[stage][row][col8]), xv);
            UnpackVec8<T>(*reinterpret_cast<const uint4*>(&sm.z[stage][row][col8]), zv);
#pragma unroll
            for (int i = 0; i < 8; ++i) {
              const float zi = p.z_bias != nullptr ? __fadd_rn(zv[i], sm.z_bias[col8 + i]) : zv[i];
              o[i] = __fmul_rn(GatedOutput(sm.y[row][col8 + i], sm.d[col8 + i], xv[i], zi),
                               p.out_scale);
            }
            T* dst = out_base + (chunk_start + row) * p.out_row_stride;
            if (vec_tiles && valid_cols == 8) {
              StoreVec(dst, o);
            } else {
#pragma unroll
              for (int i = 0; i < 8; ++i) {
                if (i < valid_cols) dst[i] = FromFloat<T>(o[i]);
              }
            }
          }
        }
        __syncthreads();
      }
    }
  };
  if (mode == kScanLocalPass) {
    scan(std::false_type{});
    // The segment's local final state and its sum of dt, for the final pass.
    if (owns_state) {
#pragma unroll
      for (int s = 0; s < kSPT; ++s) {
        if (n0 + s < dstate) scratch_state(seg)[s] = h[s];
      }
      if (lane == 0) p.segment_dt_sum[entry(seg) * p.dim + ec] = dt_sum;
    }
    return;
  }
  scan(std::true_type{});
  if (mode == kScanFinalPass && !last_seg) return;

  // The final state goes back to the slot.
  if (owns_state) {
    if (vec_state) {
      if constexpr (sizeof(S) == 4 && kSPT == 4) {
        *reinterpret_cast<float4*>(state) = make_float4(h[0], h[1], h[2], h[3]);
      } else {
#pragma unroll
        for (int s = 0; s < kSPT; ++s) state[s] = FromFloat<S>(h[s]);
      }
    } else {
#pragma unroll
      for (int s = 0; s < kSPT; ++s) {
        if (n0 + s < dstate) state[s] = FromFloat<S>(h[s]);
      }
    }
  }
}

template <typename T, typename S, int kNPad, int kSPT>
cudaError_t LaunchScanVariant(const SelectiveScanParams& p, cudaStream_t stream) {
  using Traits = SelectiveScanTraits<T, S, kNPad, kSPT>;
  auto aligned16 = [](const void* q) { return reinterpret_cast<uintptr_t>(q) % 16 == 0; };
  const bool vec_tiles = p.dim % 8 == 0 && p.x_row_stride % 8 == 0 && p.dt_row_stride % 8 == 0 &&
                         p.z_row_stride % 8 == 0 && p.out_row_stride % 8 == 0 && aligned16(p.x) &&
                         aligned16(p.dt) && aligned16(p.z) && aligned16(p.out);
  const bool vec_bc = p.dstate % 8 == 0 && p.b_row_stride % 8 == 0 && p.c_row_stride % 8 == 0 &&
                      aligned16(p.b) && aligned16(p.c);
  // Whole per-thread state groups: every group in range and, for fp32, float4-aligned.
  const bool vec_state = p.dstate % kSPT == 0 && p.state_slot_stride % kSPT == 0 &&
                         reinterpret_cast<uintptr_t>(p.state) % (sizeof(S) * kSPT) == 0;
  if (p.segment_len <= 0) {
    const dim3 grid(static_cast<unsigned>((p.dim + Traits::kChannels - 1) / Traits::kChannels),
                    static_cast<unsigned>(p.num_seqs));
    SelectiveScanKernel<Traits>
        <<<grid, Traits::kThreads, 0, stream>>>(p, kScanSequential, vec_tiles, vec_bc, vec_state);
    return cudaGetLastError();
  }
  const dim3 grid(static_cast<unsigned>((p.dim + Traits::kChannels - 1) / Traits::kChannels),
                  static_cast<unsigned>(p.num_seqs), static_cast<unsigned>(p.max_segments));
  SelectiveScanKernel<Traits>
      <<<grid, Traits::kThreads, 0, stream>>>(p, kScanLocalPass, vec_tiles, vec_bc, vec_state);
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  SelectiveScanKernel<Traits>
      <<<grid, Traits::kThreads, 0, stream>>>(p, kScanFinalPass, vec_tiles, vec_bc, vec_state);
  return cudaGetLastError();
}

template <typename T, typename S>
cudaError_t RunSelectiveScanState(const SelectiveScanParams& p, cudaStream_t stream) {
  if (p.num_seqs == 0 || p.total_tokens == 0) return cudaSuccess;
  if (p.dstate <= 16) {
    switch (p.states_per_thread) {
      case 1:
        return LaunchScanVariant<T, S, 16, 1>(p, stream);
      case 8:
        return LaunchScanVariant<T, S, 16, 8>(p, stream);
      default:
        return LaunchScanVariant<T, S, 16, 4>(p, stream);
    }
  }
  return LaunchScanVariant<T, S, kScanMaxState, 4>(p, stream);
}

template <typename T>
cudaError_t RunSelectiveScanAnyState(const SelectiveScanParams& p, KernelDType state,
                                     cudaStream_t stream) {
  return state == KernelDType::kBF16 ? RunSelectiveScanState<T, __nv_bfloat16>(p, stream)
                                     : RunSelectiveScanState<T, float>(p, stream);
}

}  // namespace mamba::kernels
