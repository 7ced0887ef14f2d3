// The chunked (matrix) form of the SSD recurrence for prefill (see mamba2_params.h for the
// recurrence itself). Included by mamba2_kernel.cuh.
//
// One block owns one (sequence, head) and walks the sequence in chunks of kSsdChunk tokens,
// keeping the head's state h [head_dim x dstate] in fp32 tensor-core accumulators from the first
// chunk to the last. Per chunk, with S_t the running sum of dt * A over the chunk's tokens:
//   G[t][s]  = C_t . B_s                                   (C B^T, tensor cores)
//   M[t][s]  = G[t][s] exp(S_t - S_s) dt_s  for s <= t, else 0
//   y_t      = exp(S_t) C_t . h_start  +  sum_s M[t][s] x_s  +  D x_t
//   h_end    = exp(S_last) h_start  +  sum_s (x_s dt_s exp(S_last - S_s)) B_s^T
// Four products of 64 x 64 x {64, 128} on tensor cores (half-precision operands, fp32
// accumulation: the official implementation's Triton kernels make the same roundings) replace the
// recurrence's 64 dependent token steps. Padding a short last chunk with dt = 0, x = B = C = 0
// leaves every sum unchanged.
//
// Half-precision operands derived inside the kernel (M, the weighted x and h) are rounded after
// scaling by a power of two chosen from their block-wide maximum (|v| < 2^14 after scaling), and
// the products are scaled back in fp32, so f16 neither overflows nor loses small states; bf16 has
// fp32's range and skips the scaling.
//
// The result equals the recurrence's up to rounding, not bit for bit, and depends on where a
// prompt is split into chunks: the mixer uses it only outside the deterministic mode.
#pragma once

#include <mma.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "kernels/device_info.h"
#include "kernels/device_math.cuh"
#include "kernels/mamba2_params.h"

namespace mamba::kernels {

inline constexpr int kSsdChunk = 64;  // tokens per chunk (Q)
inline constexpr int kSsdChunkThreads = 256;
inline constexpr int kSsdChunkWarps = kSsdChunkThreads / 32;

// Shared-memory layout of one block, in bytes. Rows of half-precision tiles are padded by 16
// bytes and fp32 staging rows by 16 bytes, so consecutive rows start in different banks; every
// 16 x 16 tile starts on a 32-byte boundary, as the tensor-core loads require.
template <int kN, int kPB>
struct SsdChunkLayout {
  static constexpr int kQ = kSsdChunk;
  static constexpr int kP = kPB;        // the block's channels of the head
  static constexpr int kLdN = kN + 8;   // C, B, h^T (2-byte elements)
  static constexpr int kLdP = kP + 8;   // x, weighted x
  static constexpr int kLdQ = kQ + 8;   // M
  static constexpr int kLdNf = kN + 4;  // fp32 staging of h
  static constexpr int kLdQf = kQ + 4;  // fp32 staging of G, then y
  static_assert(kP <= kQ, "y fits G's staging");
  static constexpr size_t kC = 0;
  static constexpr size_t kB = kC + size_t{2} * kQ * kLdN;
  static constexpr size_t kX = kB + size_t{2} * kQ * kLdN;
  static constexpr size_t kXw = kX + size_t{2} * kQ * kLdP;
  static constexpr size_t kHt = kXw + size_t{2} * kQ * kLdP;
  static constexpr size_t kM = kHt + size_t{2} * kP * kLdN;
  static constexpr size_t kStageH = kM + size_t{2} * kQ * kLdQ;
  static constexpr size_t kStageQ = kStageH + size_t{4} * kP * kLdNf;
  static constexpr size_t kDt = kStageQ + size_t{4} * kQ * kLdQf;  // dt per token
  static constexpr size_t kCum = kDt + size_t{4} * kQ;             // running sum of dt * A
  static constexpr size_t kExpCum = kCum + size_t{4} * kQ;         // exp(S_t)
  static constexpr size_t kWeight = kExpCum + size_t{4} * kQ;      // dt_s exp(S_last - S_s)
  static constexpr size_t kRed = kWeight + size_t{4} * kQ;         // 3 maxima per warp
  static constexpr size_t kBytes = kRed + size_t{4} * 3 * kSsdChunkWarps;
};

// A power of two s with max_abs * s in [2^13, 2^14): the scale of a half-precision operand. 1 for
// zero, non-finite or bf16 (which needs none).
template <typename T>
__device__ __forceinline__ float OperandScale(float max_abs) {
  if constexpr (!std::is_same_v<T, __half>) {
    return 1.0f;
  } else {
    if (!(max_abs > 0.0f) || !isfinite(max_abs)) return 1.0f;
    int e = 0;
    frexpf(max_abs, &e);  // max_abs < 2^e
    const int k = min(max(14 - e, -100), 100);
    return ldexpf(1.0f, k);
  }
}

// 16-byte vectors of 2-byte elements between global and shared memory; rows past `rows` zero.
template <typename T, int kCols>
__device__ __forceinline__ void LoadTileRows(const T* src, int64_t src_stride, int rows, T* dst,
                                             int dst_ld) {
  constexpr int kVecs = kCols / 8;
  for (int i = threadIdx.x; i < kSsdChunk * kVecs; i += kSsdChunkThreads) {
    const int r = i / kVecs;
    const int v = i % kVecs;
    uint4 val = make_uint4(0u, 0u, 0u, 0u);
    if (r < rows) val = *reinterpret_cast<const uint4*>(src + r * src_stride + v * 8);
    *reinterpret_cast<uint4*>(dst + r * dst_ld + v * 8) = val;
  }
}

// kPB: the head's channels one block takes (64: the whole head; 32: half of it, a second block
// the other half, for more blocks when there are few heads; each computes C B^T itself).
template <typename T, typename S, int kN, int kPB>
__global__ void __launch_bounds__(kSsdChunkThreads, 1)
    SsdChunkedKernel(SsdScanParams p, int64_t min_tokens) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
  namespace wmma = nvcuda::wmma;
  using L = SsdChunkLayout<kN, kPB>;
  constexpr int kQ = L::kQ, kP = L::kP;
  constexpr int kNT = kN / 16;                         // 16-wide tiles along dstate
  constexpr int kQT = kQ / 16;                         // along the chunk's tokens
  constexpr int kPT = kP / 16;                         // along head_dim
  constexpr int kHTiles = kPT * kNT / kSsdChunkWarps;  // state tiles per warp
  constexpr int kQTiles = kQT * kQT / kSsdChunkWarps;  // G tiles per warp
  constexpr int kYTiles = kQT * kPT / kSsdChunkWarps;  // y tiles per warp
  static_assert(kPT * kNT % kSsdChunkWarps == 0 && kQT * kQT % kSsdChunkWarps == 0 &&
                    kQT * kPT % kSsdChunkWarps == 0 && kHTiles >= 1 && kYTiles >= 1,
                "tiling");
  using AccFrag = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;
  using ARow = wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major>;
  using ACol = wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::col_major>;
  using BRow = wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major>;
  using BCol = wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major>;

  const int64_t h = blockIdx.x;
  const int64_t s = blockIdx.y;
  const int64_t ch0 = h * kSsdChunkHeadDim + blockIdx.z * kP;  // the block's first channel
  const int64_t t0 = p.cu_seqlens[s];
  const int64_t t1 = p.cu_seqlens[s + 1];
  if (t1 - t0 < min_tokens || t1 <= t0) return;  // the recurrence kernel takes it

  extern __shared__ __align__(128) unsigned char smem[];
  T* const c_s = reinterpret_cast<T*>(smem + L::kC);
  T* const b_s = reinterpret_cast<T*>(smem + L::kB);
  T* const x_s = reinterpret_cast<T*>(smem + L::kX);
  T* const xw_s = reinterpret_cast<T*>(smem + L::kXw);
  T* const ht_s = reinterpret_cast<T*>(smem + L::kHt);
  T* const m_s = reinterpret_cast<T*>(smem + L::kM);
  float* const stage_h = reinterpret_cast<float*>(smem + L::kStageH);
  float* const stage_q = reinterpret_cast<float*>(smem + L::kStageQ);
  float* const dt_s = reinterpret_cast<float*>(smem + L::kDt);
  float* const cum_s = reinterpret_cast<float*>(smem + L::kCum);
  float* const ecum_s = reinterpret_cast<float*>(smem + L::kExpCum);
  float* const w_s = reinterpret_cast<float*>(smem + L::kWeight);
  float* const red_s = reinterpret_cast<float*>(smem + L::kRed);

  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int64_t g = h / (p.n_heads / p.n_groups);
  const float a = p.a[h];
  const float bias = p.dt_bias[h] + (p.dt_in_bias != nullptr ? p.dt_in_bias[h] : 0.0f);
  const T* const x_base = static_cast<const T*>(p.x) + ch0;
  const T* const b_base = static_cast<const T*>(p.b) + g * kN;
  const T* const c_base = static_cast<const T*>(p.c) + g * kN;

  // The slot's state, [head_dim][dstate] of this head, into the accumulators.
  S* const state =
      static_cast<S*>(p.state) + static_cast<int64_t>(p.slots[s]) * p.state_slot_stride + ch0 * kN;
  for (int i = threadIdx.x; i < kP * kN; i += kSsdChunkThreads) {
    stage_h[(i / kN) * L::kLdNf + i % kN] = ToFloat(state[i]);
  }
  __syncthreads();
  AccFrag hf[kHTiles];
#pragma unroll
  for (int j = 0; j < kHTiles; ++j) {
    const int tile = warp + j * kSsdChunkWarps;
    wmma::load_matrix_sync(hf[j], stage_h + (tile / kNT) * 16 * L::kLdNf + (tile % kNT) * 16,
                           L::kLdNf, wmma::mem_row_major);
  }

  for (int64_t c0 = t0; c0 < t1; c0 += kQ) {
    const int q = static_cast<int>(t1 - c0 < kQ ? t1 - c0 : kQ);
    __syncthreads();  // the previous chunk's shared data is consumed

    // Phase A: the chunk's C, B and x rows (zero past q), dt per token, the state as it stands
    // (fp32 staging, read when it is rounded below).
    LoadTileRows<T, kN>(c_base + c0 * p.xbc_row_stride, p.xbc_row_stride, q, c_s, L::kLdN);
    LoadTileRows<T, kN>(b_base + c0 * p.xbc_row_stride, p.xbc_row_stride, q, b_s, L::kLdN);
    LoadTileRows<T, kP>(x_base + c0 * p.xbc_row_stride, p.xbc_row_stride, q, x_s, L::kLdP);
#pragma unroll
    for (int j = 0; j < kHTiles; ++j) {
      const int tile = warp + j * kSsdChunkWarps;
      wmma::store_matrix_sync(stage_h + (tile / kNT) * 16 * L::kLdNf + (tile % kNT) * 16, hf[j],
                              L::kLdNf, wmma::mem_row_major);
    }
    if (warp == 0) {
      // Two tokens per lane: dt, then the inclusive running sum of dt * A over the chunk.
      float dt2[2], da2[2];
#pragma unroll
      for (int k = 0; k < 2; ++k) {
        const int t = 2 * lane + k;
        float dt = 0.0f;
        if (t < q) {
          dt = Softplus(__fadd_rn(
              ToFloat(static_cast<const T*>(p.dt)[(c0 + t) * p.dt_row_stride + h]), bias));
          dt = fminf(fmaxf(dt, p.dt_min), p.dt_max);
        }
        dt2[k] = dt;
        da2[k] = __fmul_rn(dt, a);
      }
      const float pair = __fadd_rn(da2[0], da2[1]);
      float incl = pair;
#pragma unroll
      for (int off = 1; off < 32; off *= 2) {
        const float up = __shfl_up_sync(0xffffffffu, incl, off);
        if (lane >= off) incl = __fadd_rn(incl, up);
      }
      const float before = __fsub_rn(incl, pair);
      const float last = __shfl_sync(0xffffffffu, incl, 31);  // S over the whole chunk
      const float cum2[2] = {__fadd_rn(before, da2[0]), incl};
#pragma unroll
      for (int k = 0; k < 2; ++k) {
        const int t = 2 * lane + k;
        dt_s[t] = dt2[k];
        cum_s[t] = cum2[k];
        ecum_s[t] = __expf(cum2[k]);
        w_s[t] = __fmul_rn(dt2[k], __expf(__fsub_rn(last, cum2[k])));
      }
    }
    __syncthreads();

    // Phase B: G = C B^T, the lower-triangular tiles only.
#pragma unroll
    for (int j = 0; j < kQTiles; ++j) {
      const int tile = warp + j * kSsdChunkWarps;
      const int ti = tile / kQT, si = tile % kQT;
      if (si > ti) continue;
      AccFrag acc;
      wmma::fill_fragment(acc, 0.0f);
#pragma unroll
      for (int k = 0; k < kNT; ++k) {
        ARow af;
        BCol bf;
        wmma::load_matrix_sync(af, c_s + ti * 16 * L::kLdN + k * 16, L::kLdN);
        wmma::load_matrix_sync(bf, b_s + si * 16 * L::kLdN + k * 16, L::kLdN);
        wmma::mma_sync(acc, af, bf, acc);
      }
      wmma::store_matrix_sync(stage_q + ti * 16 * L::kLdQf + si * 16, acc, L::kLdQf,
                              wmma::mem_row_major);
    }
    __syncthreads();

    // Phase C: M in fp32 in place of G (zero above the diagonal), then the half-precision
    // operands of this chunk's products, each scaled by a power of two from its block-wide
    // maximum (f16 only).
    float mm = 0.0f;
    for (int i = threadIdx.x; i < kQ * kQ; i += kSsdChunkThreads) {
      const int t = i / kQ, si = i % kQ;
      float& g_ts = stage_q[t * L::kLdQf + si];
      const float m =
          si > t ? 0.0f
                 : __fmul_rn(__fmul_rn(g_ts, __expf(__fsub_rn(cum_s[t], cum_s[si]))), dt_s[si]);
      g_ts = m;
      mm = fmaxf(mm, fabsf(m));
    }
    float h_scale = 1.0f, m_scale = 1.0f, xw_scale = 1.0f;
    if constexpr (std::is_same_v<T, __half>) {
      float mh = 0.0f, mx = 0.0f;
      for (int i = threadIdx.x; i < kP * kN; i += kSsdChunkThreads) {
        mh = fmaxf(mh, fabsf(stage_h[(i / kN) * L::kLdNf + i % kN]));
      }
      for (int i = threadIdx.x; i < kQ * kP; i += kSsdChunkThreads) {
        mx = fmaxf(mx, fabsf(__fmul_rn(ToFloat(x_s[(i / kP) * L::kLdP + i % kP]), w_s[i / kP])));
      }
#pragma unroll
      for (int off = 16; off > 0; off /= 2) {
        mh = fmaxf(mh, __shfl_xor_sync(0xffffffffu, mh, off));
        mm = fmaxf(mm, __shfl_xor_sync(0xffffffffu, mm, off));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
      }
      if (lane == 0) {
        red_s[warp] = mh;
        red_s[kSsdChunkWarps + warp] = mm;
        red_s[2 * kSsdChunkWarps + warp] = mx;
      }
    }
    __syncthreads();  // M is complete (and the maxima are in)
    if constexpr (std::is_same_v<T, __half>) {
      float mh = 0.0f, mx = 0.0f;
      mm = 0.0f;
#pragma unroll
      for (int w = 0; w < kSsdChunkWarps; ++w) {
        mh = fmaxf(mh, red_s[w]);
        mm = fmaxf(mm, red_s[kSsdChunkWarps + w]);
        mx = fmaxf(mx, red_s[2 * kSsdChunkWarps + w]);
      }
      h_scale = OperandScale<T>(mh);
      m_scale = OperandScale<T>(mm);
      xw_scale = OperandScale<T>(mx);
    }
    for (int i = threadIdx.x; i < kP * kN; i += kSsdChunkThreads) {
      const int r = i / kN, n = i % kN;
      ht_s[r * L::kLdN + n] = FromFloat<T>(__fmul_rn(stage_h[r * L::kLdNf + n], h_scale));
    }
    for (int i = threadIdx.x; i < kQ * kQ; i += kSsdChunkThreads) {
      const int t = i / kQ, si = i % kQ;
      m_s[t * L::kLdQ + si] = FromFloat<T>(__fmul_rn(stage_q[t * L::kLdQf + si], m_scale));
    }
    for (int i = threadIdx.x; i < kQ * kP; i += kSsdChunkThreads) {
      const int si = i / kP, e = i % kP;
      xw_s[si * L::kLdP + e] =
          FromFloat<T>(__fmul_rn(__fmul_rn(ToFloat(x_s[si * L::kLdP + e]), w_s[si]), xw_scale));
    }
    // C's rows times exp(S_t) (at most 1: no scaling needed); G has been computed from C already.
    for (int i = threadIdx.x; i < kQ * kN; i += kSsdChunkThreads) {
      const int t = i / kN, n = i % kN;
      T& v = c_s[t * L::kLdN + n];
      v = FromFloat<T>(__fmul_rn(ToFloat(v), ecum_s[t]));
    }
    __syncthreads();

    // Phase D: y = exp(S) C h^T + M x (into the staging G no longer needs), and the state's step
    // h = exp(S_last) h + (weighted x)^T B.
    const float inv_h = 1.0f / h_scale, inv_m = 1.0f / m_scale, inv_xw = 1.0f / xw_scale;
#pragma unroll
    for (int j = 0; j < kYTiles; ++j) {
      const int tile = warp + j * kSsdChunkWarps;
      const int ti = tile / kPT, pj = tile % kPT;
      AccFrag from_state, within;
      wmma::fill_fragment(from_state, 0.0f);
      wmma::fill_fragment(within, 0.0f);
#pragma unroll
      for (int k = 0; k < kNT; ++k) {
        ARow af;
        BCol bf;
        wmma::load_matrix_sync(af, c_s + ti * 16 * L::kLdN + k * 16, L::kLdN);
        wmma::load_matrix_sync(bf, ht_s + pj * 16 * L::kLdN + k * 16, L::kLdN);
        wmma::mma_sync(from_state, af, bf, from_state);
      }
      for (int k = 0; k <= ti; ++k) {
        ARow af;
        BRow bf;
        wmma::load_matrix_sync(af, m_s + ti * 16 * L::kLdQ + k * 16, L::kLdQ);
        wmma::load_matrix_sync(bf, x_s + k * 16 * L::kLdP + pj * 16, L::kLdP);
        wmma::mma_sync(within, af, bf, within);
      }
#pragma unroll
      for (int i = 0; i < from_state.num_elements; ++i) {
        from_state.x[i] = __fmaf_rn(from_state.x[i], inv_h, __fmul_rn(within.x[i], inv_m));
      }
      wmma::store_matrix_sync(stage_q + ti * 16 * L::kLdQf + pj * 16, from_state, L::kLdQf,
                              wmma::mem_row_major);
    }
    const float decay = ecum_s[kQ - 1];
#pragma unroll
    for (int j = 0; j < kHTiles; ++j) {
      const int tile = warp + j * kSsdChunkWarps;
      const int pi = tile / kNT, ni = tile % kNT;
      AccFrag inc;
      wmma::fill_fragment(inc, 0.0f);
#pragma unroll
      for (int k = 0; k < kQT; ++k) {
        ACol af;
        BRow bf;
        wmma::load_matrix_sync(af, xw_s + k * 16 * L::kLdP + pi * 16, L::kLdP);
        wmma::load_matrix_sync(bf, b_s + k * 16 * L::kLdN + ni * 16, L::kLdN);
        wmma::mma_sync(inc, af, bf, inc);
      }
#pragma unroll
      for (int i = 0; i < inc.num_elements; ++i) {
        hf[j].x[i] = __fmaf_rn(hf[j].x[i], decay, __fmul_rn(inc.x[i], inv_xw));
      }
    }
    __syncthreads();

    // Phase E: y + D x to the output rows of the chunk.
    for (int i = threadIdx.x; i < q * kP; i += kSsdChunkThreads) {
      const int t = i / kP, e = i % kP;
      const int64_t ch = ch0 + e;
      const float dskip = p.d[p.d_per_channel ? ch : h];
      p.out[(c0 + t) * p.out_row_stride + ch] =
          __fmaf_rn(dskip, ToFloat(x_s[t * L::kLdP + e]), stage_q[t * L::kLdQf + e]);
    }
  }

  // The final state back to the slot.
  __syncthreads();
#pragma unroll
  for (int j = 0; j < kHTiles; ++j) {
    const int tile = warp + j * kSsdChunkWarps;
    wmma::store_matrix_sync(stage_h + (tile / kNT) * 16 * L::kLdNf + (tile % kNT) * 16, hf[j],
                            L::kLdNf, wmma::mem_row_major);
  }
  __syncthreads();
  for (int i = threadIdx.x; i < kP * kN; i += kSsdChunkThreads) {
    state[i] = FromFloat<S>(stage_h[(i / kN) * L::kLdNf + i % kN]);
  }
#endif
}

// Whether the chunked form serves these shapes: head_dim 64, dstate 64 or 128, and B, C and x
// rows whose 16-byte vectors are aligned.
template <typename T>
bool SsdChunkedSupported(const SsdScanParams& p) {
  auto aligned = [](const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; };
  return p.cu_seqlens != nullptr && p.head_dim == kSsdChunkHeadDim &&
         (p.dstate == 64 || p.dstate == 128) && aligned(p.x) && aligned(p.b) && aligned(p.c) &&
         (p.xbc_row_stride * static_cast<int64_t>(sizeof(T))) % 16 == 0;
}

template <typename T, typename S, int kN, int kPB>
cudaError_t LaunchSsdChunkedVariant(const SsdScanParams& p, int64_t min_tokens,
                                    cudaStream_t stream) {
  constexpr size_t kBytes = SsdChunkLayout<kN, kPB>::kBytes;
  const cudaError_t attr =
      cudaFuncSetAttribute(SsdChunkedKernel<T, S, kN, kPB>,
                           cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(kBytes));
  if (attr != cudaSuccess) return attr;
  const dim3 grid(static_cast<unsigned>(p.n_heads), static_cast<unsigned>(p.num_seqs),
                  static_cast<unsigned>(kSsdChunkHeadDim / kPB));
  SsdChunkedKernel<T, S, kN, kPB><<<grid, kSsdChunkThreads, kBytes, stream>>>(p, min_tokens);
  return cudaGetLastError();
}

// Whole heads per block when the long sequences' heads fill the GPU (or `split` says 1), else
// half heads (`split` 2), doubling the blocks. The long sequences are not known on the host:
// each sequence is counted, an upper bound of the blocks that do work.
template <typename T, typename S, int kN>
cudaError_t LaunchSsdChunked(const SsdScanParams& p, int64_t min_tokens, int split,
                             cudaStream_t stream) {
  if (split == 0) {
    const int64_t long_seqs =
        p.max_seqlen > 0 ? std::min<int64_t>(p.num_seqs, p.total_tokens / min_tokens) : p.num_seqs;
    split = long_seqs * p.n_heads < CurrentDeviceSmCount() ? 2 : 1;
  }
  return split == 2 ? LaunchSsdChunkedVariant<T, S, kN, 32>(p, min_tokens, stream)
                    : LaunchSsdChunkedVariant<T, S, kN, 64>(p, min_tokens, stream);
}

}  // namespace mamba::kernels
