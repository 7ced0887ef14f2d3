// D = A . W^T for decode-sized m (5..kStreamGemmMaxM rows of A) on tensor cores, W streamed from
// memory exactly once: the decode step's wide products (in_proj, out_proj, dt_proj, lm_head),
// where W is megabytes and A a few kilobytes, so the product is a read of W at memory bandwidth.
//
// Tiling ("swap AB"): a block of 8 warps owns 128 rows of W (output columns); each warp's 16 rows
// are the 16-row operand of mma.m16n8k16 and A's rows the 8-column operand (m rounded up to 8, 16,
// 32, 64 or 128, not to a 64-row tile). W and A stream through shared memory in 64-wide k tiles,
// kStreamGemmStages deep (cp.async, XOR-swizzled rows, ldmatrix). When the grid of 128-column
// tiles leaves SMs idle, k is split over a thread block cluster of up to 8 blocks (sm_90+), whose
// fp32 partial tiles are added in distributed shared memory in rank order: deterministic, one
// launch, no workspace. As a programmatic dependent launch the first stages of W are requested
// before waiting for the previous kernel (W does not depend on it), A after.
//
// Needs 1 <= m <= kStreamGemmMaxM, k, lda and ldw multiples of 8, A and W 16-byte aligned
// (StreamGemmSupported in gemm.h). The reduction order over k depends on the split (so on n, k
// and the SM count), never on m or the data: a row's result does not change with the batch size
// as long as the kernel is the one chosen.
#pragma once

#include <cuda_runtime_api.h>

#include "kernels/gemm_args.h"

namespace mamba::kernels {

inline constexpr int kStreamGemmMaxM = 128;
inline constexpr int kStreamGemmWarps = 8;
inline constexpr int kStreamGemmTileN = 16 * kStreamGemmWarps;  // rows of W per block
inline constexpr int kStreamGemmTileK = 64;
inline constexpr int kStreamGemmStages = 4;
inline constexpr int kStreamGemmMaxSplit = 8;  // portable cluster size

// How a product is laid out over the grid (ChooseStreamGemmSplit in gemm.cc).
struct StreamGemmLayout {
  int tiles = 0;        // 128-column tiles of the output
  int split = 1;        // blocks (a cluster) sharing one tile's k range
  int k_per_split = 0;  // multiple of kStreamGemmTileK
};

cudaError_t RunStreamGemmF16(const GemmArgs& args, const StreamGemmLayout& layout,
                             cudaStream_t stream);
cudaError_t RunStreamGemmBF16(const GemmArgs& args, const StreamGemmLayout& layout,
                              cudaStream_t stream);

}  // namespace mamba::kernels
