// A matrix product whose every output element is reduced in one fixed order, whatever m is and
// wherever the element's row sits: the batch-invariant mode's GEMM (a sequence's logits must not
// depend on what else is in the batch; cuBLAS picks kernels, tiles and split-k by shape, so its
// rounding moves with the batch size).
//
// Tiling: 64 x 64 output tiles, 4 warps of 32 x 32 each, tensor-core (WMMA 16x16x16) products with
// fp32 accumulators, k walked in 32-wide tiles from 0 upwards; the next k tile is loaded into
// registers (16-byte loads) while the current one is multiplied. Nothing in the reduction depends
// on m, on the tile's position or on the grid. Rows past m and columns past n are computed on
// zeros and never stored.
#pragma once

#include <cuda_runtime_api.h>

#include "kernels/gemm_args.h"

namespace mamba::kernels {

inline constexpr int kInvariantGemmTileM = 64;
inline constexpr int kInvariantGemmTileN = 64;
inline constexpr int kInvariantGemmTileK = 32;
inline constexpr int kInvariantGemmThreads = 128;

// Per input dtype (the caller has checked `args`).
cudaError_t RunBatchInvariantGemmF16(const GemmArgs& args, cudaStream_t stream);
cudaError_t RunBatchInvariantGemmBF16(const GemmArgs& args, cudaStream_t stream);

}  // namespace mamba::kernels
