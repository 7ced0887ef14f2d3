// D = A . W^T for few rows (decode: m <= kSkinnyGemmMaxM), where the product is a stream over W
// and cuBLAS's tiles leave most of the GPU idle.
//
// Tiling: W is read exactly once, with 16-byte loads, each lane taking every 32nd group of 8
// elements along k and keeping one partial sum per row of A (whose few rows are re-read from
// L1/L2). Wide outputs: a warp owns one output column (one row of W), 8 warps per block. Narrow
// outputs (n < kSkinnyGemmSplitN, e.g. x_proj's dt_rank + 2 * d_state): a block owns one column
// and its 8 warps split k, combining their partials in shared memory in a fixed order, so there
// are enough warps to keep the loads in flight. Needs k, lda and ldw multiples of 8 and 16-byte
// aligned A and W (SkinnyGemmSupported).
#pragma once

#include <cuda_runtime_api.h>

#include "kernels/causal_conv1d_params.h"
#include "kernels/gemm_args.h"

namespace mamba::kernels {

inline constexpr int kSkinnyGemmMaxM = 4;
inline constexpr int kSkinnyGemmWarps = 8;
inline constexpr int64_t kSkinnyGemmSplitN = 2048;
// 16-byte chunks of W per lane requested before waiting for the previous kernel (a lane's whole
// share for k <= 2048 in the one-warp-per-column variant).
inline constexpr int kSkinnyGemmPrefetch = 8;

cudaError_t RunSkinnyGemmF16(const GemmArgs& args, cudaStream_t stream);
cudaError_t RunSkinnyGemmBF16(const GemmArgs& args, cudaStream_t stream);
// in_proj with the conv decode update fused (see LaunchSkinnyGemmConv in gemm.h).
cudaError_t RunSkinnyGemmConvF16(const GemmArgs& args, const CausalConv1dParams& conv,
                                 KernelDType state, cudaStream_t stream);
cudaError_t RunSkinnyGemmConvBF16(const GemmArgs& args, const CausalConv1dParams& conv,
                                  KernelDType state, cudaStream_t stream);

}  // namespace mamba::kernels
