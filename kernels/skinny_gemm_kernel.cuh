// Skinny GEMM kernel body (see skinny_gemm_params.h).
#pragma once

#include "kernels/device_math.cuh"
#include "kernels/skinny_gemm_params.h"

namespace mamba::kernels {

template <typename T, bool kOutF32, bool kSplitK>
__global__ void __launch_bounds__(kSkinnyGemmWarps * 32) SkinnyGemmKernel(GemmArgs g) {
  constexpr int kMaxM = kSkinnyGemmMaxM;
  __shared__ float partial[kSkinnyGemmWarps][kMaxM];
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  const int64_t n =
      kSplitK ? blockIdx.x : static_cast<int64_t>(blockIdx.x) * kSkinnyGemmWarps + warp;
  if (!kSplitK && n >= g.n) return;  // whole warps, no barrier below in this variant
  // This warp's range of k: all of it, or its eighth (whole groups of 8 elements).
  int64_t k_begin = 0, k_end = g.k;
  if constexpr (kSplitK) {
    const int64_t share = ((g.k + kSkinnyGemmWarps - 1) / kSkinnyGemmWarps + 7) / 8 * 8;
    k_begin = MinI64(g.k, warp * share);
    k_end = MinI64(g.k, k_begin + share);
  }
  const int m_rows = static_cast<int>(g.m);
  const T* w = static_cast<const T*>(g.w) + n * g.ldw;
  const T* a = static_cast<const T*>(g.a);
  float acc[kMaxM];
#pragma unroll
  for (int m = 0; m < kMaxM; ++m) acc[m] = 0.0f;
#pragma unroll 4
  for (int64_t k = k_begin + lane * 8; k < k_end; k += 256) {
    float wv[8];
    Load8(w + k, wv);
#pragma unroll
    for (int m = 0; m < kMaxM; ++m) {
      if (m < m_rows) {
        float av[8];
        Load8(a + m * g.lda + k, av);
#pragma unroll
        for (int i = 0; i < 8; ++i) acc[m] = __fmaf_rn(wv[i], av[i], acc[m]);
      }
    }
  }
#pragma unroll
  for (int m = 0; m < kMaxM; ++m) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1)
      acc[m] = __fadd_rn(acc[m], __shfl_xor_sync(0xffffffffu, acc[m], off));
  }
  if constexpr (kSplitK) {
    if (lane == 0) {
#pragma unroll
      for (int m = 0; m < kMaxM; ++m) partial[warp][m] = acc[m];
    }
    __syncthreads();
    if (warp != 0) return;
#pragma unroll
    for (int m = 0; m < kMaxM; ++m) {
      float sum = partial[0][m];
#pragma unroll
      for (int w2 = 1; w2 < kSkinnyGemmWarps; ++w2) sum = __fadd_rn(sum, partial[w2][m]);
      acc[m] = sum;
    }
  }
  if (lane < m_rows) {
    // Lane m stores row m (a compile-time pick among the registers).
    float v = 0.0f;
#pragma unroll
    for (int m = 0; m < kMaxM; ++m) {
      if (m == lane) v = acc[m];
    }
    if constexpr (kOutF32) {
      static_cast<float*>(g.d)[lane * g.ldd + n] = v;
    } else {
      static_cast<T*>(g.d)[lane * g.ldd + n] = FromFloat<T>(v);
    }
  }
}

template <typename T>
cudaError_t RunSkinnyGemm(const GemmArgs& g, cudaStream_t stream) {
  if (g.m == 0) return cudaSuccess;
  const dim3 block(kSkinnyGemmWarps * 32);
  const bool f32 = g.d_dtype == KernelDType::kF32;
  if (g.n < kSkinnyGemmSplitN) {
    const dim3 grid(static_cast<unsigned>(g.n));
    if (f32) {
      SkinnyGemmKernel<T, true, true><<<grid, block, 0, stream>>>(g);
    } else {
      SkinnyGemmKernel<T, false, true><<<grid, block, 0, stream>>>(g);
    }
  } else {
    const dim3 grid(static_cast<unsigned>((g.n + kSkinnyGemmWarps - 1) / kSkinnyGemmWarps));
    if (f32) {
      SkinnyGemmKernel<T, true, false><<<grid, block, 0, stream>>>(g);
    } else {
      SkinnyGemmKernel<T, false, false><<<grid, block, 0, stream>>>(g);
    }
  }
  return cudaGetLastError();
}

}  // namespace mamba::kernels
