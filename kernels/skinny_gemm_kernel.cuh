// Skinny GEMM kernel body (see skinny_gemm_params.h).
#pragma once

#include <type_traits>

#include "kernels/conv_decode.cuh"
#include "kernels/dependent_launch.cuh"
#include "kernels/device_math.cuh"
#include "kernels/skinny_gemm_params.h"

namespace mamba::kernels {

// kConv: 0 a plain product; else in_proj with the conv decode update fused into the store of
// the x half (columns n < conv.dim), the conv state in fp32 (1) or bf16 (2).
template <typename T, bool kOutF32, bool kSplitK, int kConv>
__global__ void __launch_bounds__(kSkinnyGemmWarps * 32)
    SkinnyGemmKernel(GemmArgs g, CausalConv1dParams conv) {
  using ConvState = std::conditional_t<kConv == 2, __nv_bfloat16, float>;
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
  // W does not depend on the previous kernel: the first kSkinnyGemmPrefetch chunks of this
  // lane's share are requested before waiting for it (dependent launch), the rest after.
  constexpr int kPre = kSkinnyGemmPrefetch;
  const int64_t k_first = k_begin + lane * 8;
  Vec8<T> pre[kPre];
#pragma unroll
  for (int i = 0; i < kPre; ++i) {
    const int64_t k = k_first + static_cast<int64_t>(i) * 256;
    if (k < k_end) pre[i] = *reinterpret_cast<const Vec8<T>*>(w + k);
  }
  // The storing lane's conv state and taps (x-half columns), also independent of it when the
  // caller says the previous kernel does not write the state (conv.state_read_early).
  const bool storer = lane < m_rows && (!kSplitK || warp == 0);
  const bool conv_column = kConv != 0 && n < conv.dim;
  ConvDecodeChannel<ConvState> channel;
  if (conv_column && storer && conv.state_read_early) channel.Load(conv, lane, n);
  WaitForPriorKernels();
  AllowDependentKernels();
  if (conv_column && storer && !conv.state_read_early) channel.Load(conv, lane, n);

  float acc[kMaxM];
#pragma unroll
  for (int m = 0; m < kMaxM; ++m) acc[m] = 0.0f;
  auto accumulate = [&](const Vec8<T>& wraw, int64_t k) {
    float wv[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) wv[i] = ToFloat(wraw.v[i]);
#pragma unroll
    for (int m = 0; m < kMaxM; ++m) {
      if (m < m_rows) {
        float av[8];
        LoadVec(a + m * g.lda + k, av);
#pragma unroll
        for (int i = 0; i < 8; ++i) acc[m] = __fmaf_rn(wv[i], av[i], acc[m]);
      }
    }
  };
#pragma unroll
  for (int i = 0; i < kPre; ++i) {
    const int64_t k = k_first + static_cast<int64_t>(i) * 256;
    if (k < k_end) accumulate(pre[i], k);
  }
#pragma unroll 4
  for (int64_t k = k_first + static_cast<int64_t>(kPre) * 256; k < k_end; k += 256) {
    accumulate(*reinterpret_cast<const Vec8<T>*>(w + k), k);
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
    if constexpr (kConv != 0) {
      if (conv_column) {
        // The conv reads in_proj's output as the unfused path stores it (rounded to T).
        const float x = ToFloat(FromFloat<T>(v));
        channel.template Finish<T>(conv, lane,
                                   n, conv.x_bias != nullptr ? __fadd_rn(x, conv.x_bias[n]) : x);
        return;
      }
    }
    if constexpr (kOutF32) {
      static_cast<float*>(g.d)[lane * g.ldd + n] = v;
    } else {
      static_cast<T*>(g.d)[lane * g.ldd + n] = FromFloat<T>(v);
    }
  }
}

template <typename T, int kConv>
cudaError_t RunSkinnyGemmVariant(const GemmArgs& g, const CausalConv1dParams& conv,
                                 cudaStream_t stream) {
  if (g.m == 0) return cudaSuccess;
  const dim3 block(kSkinnyGemmWarps * 32);
  const bool f32 = g.d_dtype == KernelDType::kF32;
  if (g.n < kSkinnyGemmSplitN) {
    const dim3 grid(static_cast<unsigned>(g.n));
    return LaunchKernel(f32 ? SkinnyGemmKernel<T, true, true, kConv>
                            : SkinnyGemmKernel<T, false, true, kConv>,
                        grid, block, 0, stream, /*dependent=*/true, g, conv);
  }
  const dim3 grid(static_cast<unsigned>((g.n + kSkinnyGemmWarps - 1) / kSkinnyGemmWarps));
  return LaunchKernel(f32 ? SkinnyGemmKernel<T, true, false, kConv>
                          : SkinnyGemmKernel<T, false, false, kConv>,
                      grid, block, 0, stream, /*dependent=*/true, g, conv);
}

template <typename T>
cudaError_t RunSkinnyGemm(const GemmArgs& g, cudaStream_t stream) {
  return RunSkinnyGemmVariant<T, 0>(g, CausalConv1dParams{}, stream);
}

template <typename T>
cudaError_t RunSkinnyGemmConv(const GemmArgs& g, const CausalConv1dParams& conv,
                              KernelDType state, cudaStream_t stream) {
  return state == KernelDType::kBF16 ? RunSkinnyGemmVariant<T, 2>(g, conv, stream)
                                     : RunSkinnyGemmVariant<T, 1>(g, conv, stream);
}

}  // namespace mamba::kernels
