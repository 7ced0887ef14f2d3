// Device-side element math shared by every kernel (CUDA only).
//
// Why one file: the prefill kernels (conv1d, selective scan) and the decode kernels (conv update,
// state update) must compute bit-identical values for the same token, so that chunked prefill,
// prefill-then-decode and a longer prefill agree exactly (the batch-invariant mode depends on it).
// Every operation that rounds is therefore written with explicit-rounding intrinsics (__fmul_rn,
// __fadd_rn, __fmaf_rn), which the compiler never contracts or reorders, and lives here once.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace mamba::kernels {

// ---- integers --------------------------------------------------------------------------------
__host__ __device__ __forceinline__ int64_t MinI64(int64_t a, int64_t b) { return a < b ? a : b; }
__host__ __device__ __forceinline__ int64_t MaxI64(int64_t a, int64_t b) { return a > b ? a : b; }

// ---- conversions ------------------------------------------------------------------------------
__device__ __forceinline__ float ToFloat(float v) { return v; }
__device__ __forceinline__ float ToFloat(__half v) { return __half2float(v); }
__device__ __forceinline__ float ToFloat(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T FromFloat(float v);
template <>
__device__ __forceinline__ float FromFloat<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __half FromFloat<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 FromFloat<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// N consecutive 2-byte elements, viewed either as one vector access (2N bytes) or as N elements.
template <typename T, int N>
struct alignas(sizeof(T) * N) VecN {
  T v[N];
};
// 16 bytes: the common case.
template <typename T>
using Vec8 = VecN<T, 8>;

// Loads N consecutive elements starting at p (aligned to the vector) and widens them.
template <typename T, int N>
__device__ __forceinline__ void LoadVec(const T* p, float (&out)[N]) {
  static_assert(sizeof(T) == 2, "LoadVec is for 2-byte types");
  VecN<T, N> v = *reinterpret_cast<const VecN<T, N>*>(p);
#pragma unroll
  for (int i = 0; i < N; ++i) out[i] = ToFloat(v.v[i]);
}

// Rounds N floats and stores them at p (aligned to the vector).
template <typename T, int N>
__device__ __forceinline__ void StoreVec(T* p, const float (&in)[N]) {
  static_assert(sizeof(T) == 2, "StoreVec is for 2-byte types");
  VecN<T, N> v;
#pragma unroll
  for (int i = 0; i < N; ++i) v.v[i] = FromFloat<T>(in[i]);
  *reinterpret_cast<VecN<T, N>*>(p) = v;
}

// ---- the model's element functions -----------------------------------------------------------

// 2^x on the special-function unit (one MUFU.EX2; relative error about 2^-22).
__device__ __forceinline__ float FastExp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// torch.nn.functional.softplus with beta 1 and threshold 20: log(1 + e^x). For e^x < 1/16 (dt
// below ~0.06, most channels) a 5-term series of log1p (error < 2e-7 relative), else the
// special-function log (error < 1e-5 relative there): two or three instructions on the
// special-function unit instead of log1pf's ~25, which matters once per channel and token.
__device__ __forceinline__ float Softplus(float x) {
  if (x > 20.0f) return x;
  const float e = __expf(x);
  if (e < 0.0625f) {
    float p = 0.2f;
    p = __fmaf_rn(p, e, -0.25f);
    p = __fmaf_rn(p, e, 0.33333334f);
    p = __fmaf_rn(p, e, -0.5f);
    p = __fmaf_rn(p, e, 1.0f);
    return __fmul_rn(p, e);
  }
  return __logf(__fadd_rn(1.0f, e));
}

// silu(v) = v * sigmoid(v).
__device__ __forceinline__ float Silu(float v) {
  return __fdividef(v, __fadd_rn(1.0f, __expf(-v)));
}

// dt = softplus(dt_raw + dt_bias): the discretization step of one channel at one token.
__device__ __forceinline__ float DeltaFromRaw(float dt_raw, float dt_bias) {
  return Softplus(__fadd_rn(dt_raw, dt_bias));
}

// One state element's recurrence h = exp(dt * A) * h + (dt * x) * B, with A pre-scaled by log2(e)
// (a2 = A * log2 e) and dtx = dt * x computed once per channel and token.
__device__ __forceinline__ float SsmRecurrence(float h, float dt, float a2, float dtx, float b) {
  return __fmaf_rn(FastExp2(__fmul_rn(dt, a2)), h, __fmul_rn(b, dtx));
}

// The gated output of one channel: (y + D * x) * silu(z).
__device__ __forceinline__ float GatedOutput(float y, float d, float x, float z) {
  return __fmul_rn(__fadd_rn(y, __fmul_rn(d, x)), Silu(z));
}

// The causal conv's pre-activation for one channel and token: bias + sum_k w[k] * in[k] over
// kConvTaps taps, where in[] are the channel's last kConvTaps inputs, oldest first. A conv of width
// w < kConvTaps is computed with its PyTorch weight row right-aligned in w[] and zeros before it
// (a zero tap adds exactly nothing), so every width shares one accumulation order.
inline constexpr int kConvTaps = 4;
__device__ __forceinline__ float ConvAccumulate(float bias, const float (&w)[kConvTaps],
                                                const float (&in)[kConvTaps]) {
  float acc = bias;
#pragma unroll
  for (int k = 0; k < kConvTaps; ++k) acc = __fmaf_rn(w[k], in[k], acc);
  return acc;
}

// Sums kN values held by one thread as a pairwise tree (adjacent pairs first). With the xor
// butterfly below it forms one canonical tree over all state elements, whatever the number of
// elements per thread, so kernels that split d_state differently still agree bit for bit.
template <int kN>
__device__ __forceinline__ float TreeSum(float (&p)[kN]) {
#pragma unroll
  for (int w = 1; w < kN; w <<= 1) {
#pragma unroll
    for (int i = 0; i + w < kN; i += 2 * w) p[i] = __fadd_rn(p[i], p[i + w]);
  }
  return p[0];
}

// Completes TreeSum across kLanes consecutive lanes (a power of two, lane groups aligned to it).
// Every lane of the group ends with the same value (IEEE addition is commutative).
template <int kLanes>
__device__ __forceinline__ float LaneTreeSum(float v) {
#pragma unroll
  for (int off = 1; off < kLanes; off <<= 1) v = __fadd_rn(v, __shfl_xor_sync(0xffffffffu, v, off));
  return v;
}

// Completes TreeSum across kLanes consecutive lanes for kN values at once (one per token): after
// log2(kLanes) rounds lane `lane` holds, in v[0, kN / kLanes), the sums of tokens first..first +
// kN / kLanes, where `first` is returned. Round r pairs lanes differing in bit r, exactly as
// LaneTreeSum does, so each sum has LaneTreeSum's bits; it costs kN - kN / kLanes shuffles in
// all instead of kN * log2(kLanes).
template <int kLanes, int kN>
__device__ __forceinline__ int LaneReduceScatter(float (&v)[kN], int lane) {
  static_assert(kN % kLanes == 0, "values must split evenly over the lanes");
  int first = 0;
  int n = kN;
#pragma unroll
  for (int off = 1; off < kLanes; off <<= 1) {
    const int half = n / 2;
    const bool upper = (lane & off) != 0;
#pragma unroll
    for (int i = 0; i < kN / 2; ++i) {
      if (i < half) {
        const float keep = upper ? v[half + i] : v[i];
        const float send = upper ? v[i] : v[half + i];
        v[i] = __fadd_rn(keep, __shfl_xor_sync(0xffffffffu, send, off));
      }
    }
    if (upper) first += half;
    n = half;
  }
  return first;
}

}  // namespace mamba::kernels
