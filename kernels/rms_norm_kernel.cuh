// RMSNorm kernel body (see rms_norm_params.h). Included by the per-dtype instantiation files.
#pragma once

#include "kernels/dependent_launch.cuh"
#include "kernels/device_math.cuh"
#include "kernels/rms_norm_params.h"
#include "kernels/static_switch.h"

namespace mamba::kernels {

// kWidth consecutive elements per access: 4 when rows are 16-byte aligned (float4 / 8-byte half
// loads), else 1.
template <typename T, int kWidth>
struct RmsNormTraits {
  static constexpr int kThreads = kRmsNormThreads;
  static constexpr int kIters = static_cast<int>(kRmsNormMaxDim / (kThreads * kWidth));
  static_assert(kIters * kThreads * kWidth == kRmsNormMaxDim, "dim bound must tile evenly");
};

template <typename T, int kWidth>
__device__ __forceinline__ void LoadRow(const T* p, float (&v)[kWidth]) {
  if constexpr (kWidth == 4) {
    struct alignas(8) Four {
      T e[4];
    };
    Four f = *reinterpret_cast<const Four*>(p);
#pragma unroll
    for (int i = 0; i < 4; ++i) v[i] = ToFloat(f.e[i]);
  } else {
    v[0] = ToFloat(p[0]);
  }
}

template <typename T, int kWidth>
__device__ __forceinline__ void StoreRow(T* p, const float (&v)[kWidth]) {
  if constexpr (kWidth == 4) {
    struct alignas(8) Four {
      T e[4];
    };
    Four f;
#pragma unroll
    for (int i = 0; i < 4; ++i) f.e[i] = FromFloat<T>(v[i]);
    *reinterpret_cast<Four*>(p) = f;
  } else {
    p[0] = FromFloat<T>(v[0]);
  }
}

template <int kWidth>
__device__ __forceinline__ void LoadF32(const float* p, float (&v)[kWidth]) {
  if constexpr (kWidth == 4) {
    float4 f = *reinterpret_cast<const float4*>(p);
    v[0] = f.x;
    v[1] = f.y;
    v[2] = f.z;
    v[3] = f.w;
  } else {
    v[0] = p[0];
  }
}

template <int kWidth>
__device__ __forceinline__ void StoreF32(float* p, const float (&v)[kWidth]) {
  if constexpr (kWidth == 4) {
    *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
  } else {
    p[0] = v[0];
  }
}

template <typename T, int kWidth>
__global__ void __launch_bounds__(kRmsNormThreads) RmsNormKernel(RmsNormParams params) {
  using Traits = RmsNormTraits<T, kWidth>;
  __shared__ float warp_sums[Traits::kThreads / 32];
  __shared__ float row_scale;

  // The norm weight does not depend on the previous kernel: read it before waiting for it.
  const int tid = threadIdx.x;
  float wt[Traits::kIters][kWidth];
#pragma unroll
  for (int it = 0; it < Traits::kIters; ++it) {
    const int64_t col = (static_cast<int64_t>(it) * Traits::kThreads + tid) * kWidth;
    if (col < params.dim) LoadF32<kWidth>(params.weight + col, wt[it]);
  }
  // Everything below reads the previous kernel's output (or, for the embedding, a step input).
  WaitForPriorKernels();
  AllowDependentKernels();
  const int64_t row = blockIdx.x;
  const int64_t src = params.row_index != nullptr ? params.row_index[row] : row;
  const int64_t dim = params.dim;

  float* residual = params.residual + src * params.residual_row_stride;
  const T* add = params.add != nullptr
                     ? static_cast<const T*>(params.add) + src * params.add_row_stride
                     : nullptr;
  const T* emb = params.tokens != nullptr ? static_cast<const T*>(params.embedding) +
                                                static_cast<int64_t>(params.tokens[src]) * dim
                                          : nullptr;

  float v[Traits::kIters][kWidth];
  float ss = 0.0f;
#pragma unroll
  for (int it = 0; it < Traits::kIters; ++it) {
    const int64_t col = (static_cast<int64_t>(it) * Traits::kThreads + tid) * kWidth;
    if (col < dim) {
      if (emb != nullptr) {
        LoadRow<T, kWidth>(emb + col, v[it]);
      } else {
        LoadF32<kWidth>(residual + col, v[it]);
        if (add != nullptr) {
          float a[kWidth];
          LoadRow<T, kWidth>(add + col, a);
#pragma unroll
          for (int i = 0; i < kWidth; ++i) {
            a[i] = __fmul_rn(a[i], params.add_scale);
            a[i] = params.add_bias != nullptr ? __fadd_rn(a[i], params.add_bias[col + i]) : a[i];
            v[it][i] = __fadd_rn(v[it][i], a[i]);
          }
        }
      }
      if (params.write_residual) StoreF32<kWidth>(residual + col, v[it]);
#pragma unroll
      for (int i = 0; i < kWidth; ++i) ss = __fmaf_rn(v[it][i], v[it][i], ss);
    }
  }
  // Fixed-order reduction: butterfly within warps, then warp 0 over the warp sums.
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) ss = __fadd_rn(ss, __shfl_xor_sync(0xffffffffu, ss, off));
  if ((tid & 31) == 0) warp_sums[tid >> 5] = ss;
  __syncthreads();
  if (tid < 32) {
    float w = tid < Traits::kThreads / 32 ? warp_sums[tid] : 0.0f;
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) w = __fadd_rn(w, __shfl_xor_sync(0xffffffffu, w, off));
    if (tid == 0) row_scale = rsqrtf(__fadd_rn(__fdiv_rn(w, static_cast<float>(dim)), params.eps));
  }
  __syncthreads();
  const float scale = row_scale;

  T* out = static_cast<T*>(params.out) + row * params.out_row_stride;
#pragma unroll
  for (int it = 0; it < Traits::kIters; ++it) {
    const int64_t col = (static_cast<int64_t>(it) * Traits::kThreads + tid) * kWidth;
    if (col < dim) {
      float o[kWidth];
#pragma unroll
      for (int i = 0; i < kWidth; ++i) o[i] = __fmul_rn(__fmul_rn(v[it][i], scale), wt[it][i]);
      StoreRow<T, kWidth>(out + col, o);
    }
  }
}

template <typename T>
cudaError_t RunRmsNorm(const RmsNormParams& params, cudaStream_t stream) {
  if (params.rows == 0) return cudaSuccess;
  // Vector accesses need every row start and the weight 16-byte (fp32) / 8-byte (half) aligned.
  auto aligned = [](const void* p, int bytes) {
    return p == nullptr || reinterpret_cast<uintptr_t>(p) % bytes == 0;
  };
  const bool vec = params.dim % 4 == 0 && params.residual_row_stride % 4 == 0 &&
                   params.add_row_stride % 4 == 0 && params.out_row_stride % 4 == 0 &&
                   aligned(params.residual, 16) && aligned(params.add, 8) &&
                   aligned(params.embedding, 8) && aligned(params.weight, 16) &&
                   aligned(params.out, 8);
  const dim3 grid(static_cast<unsigned>(params.rows));
  // The embedding variant starts a step (after host copies); the others follow a kernel.
  const bool dependent = params.tokens == nullptr;
  return BOOL_SWITCH(vec, kVec, [&] {
    return LaunchKernel(RmsNormKernel<T, kVec ? 4 : 1>, grid, dim3(kRmsNormThreads), 0, stream,
                        dependent, params);
  });
}

}  // namespace mamba::kernels
