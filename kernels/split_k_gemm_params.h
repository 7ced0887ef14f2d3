// D = A . W^T for narrow products (n <= kSplitKGemmMaxN) of long reductions at decode batch
// sizes: x_proj, whose n is dt_rank + 2 * d_state (80 for 130m, 160 for 1.4b) and whose k is
// d_inner (1536-5120). cuBLASLt spends 8-10 us on it at m = 64-256 on the H100 (a few tiles, a
// long k loop or a split-K pass plus a reduction kernel) for 0.2-1.3 MB of weights.
//
// Tiling (sm_90+: thread block clusters): block x owns 64 consecutive k (two chunks of 32) of
// one tile of kSplitKGemmRows rows of A, for every output column, so that each block issues all
// its loads at once (one memory round trip: a longer k loop per block is a chain of round trips,
// measured 2-4x slower than cuBLASLt for 1.4b's x_proj). It multiplies with tensor cores
// (mma.m16n8k16, W rows as the 16-row operand, A rows as the 8-column one). The fp32 partials
// are added in a fixed order in two levels: the kSplitKGemmCluster blocks of a cluster through
// distributed shared memory (block r of the cluster adding the r-th share of the outputs), then,
// when k needs several clusters, the clusters' sums through a workspace: the last cluster to
// finish a share (a counter per share, reset by that cluster) adds the clusters' sums in cluster
// order and stores them. Every output is therefore deterministic, and no atomics touch values.
// Inside a 32-element chunk each lane loads 16 contiguous bytes of a W row and of an A row and
// feeds them to the matrix instruction in a permuted k order, the same for both operands.
//
// A row's outputs depend only on that row of A and on W: never on m or on the other rows.
// Needs k, lda and ldw multiples of 8 and 16-byte aligned A and W (SplitKGemmSupported).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/causal_conv1d_params.h"
#include "kernels/gemm_args.h"

namespace mamba::kernels {

inline constexpr int kSplitKGemmCluster = 8;  // blocks per cluster (the portable maximum)
inline constexpr int kSplitKGemmWarps = 8;
inline constexpr int kSplitKGemmRows = 32;   // rows of A per tile (four 8-column MMA tiles)
inline constexpr int kSplitKGemmMaxN = 256;  // output columns (sixteen 16-row MMA tiles)
inline constexpr int kSplitKGemmChunks = 2;  // chunks of 32 k per block
// Largest m sent here: beyond it W is re-read by too many row tiles and cuBLASLt's tiles fill
// the GPU anyway.
inline constexpr int64_t kSplitKGemmMaxM = 512;

// Scratch of the second reduction level: the clusters' sums and a counter per share of a row
// tile. The counters start at zero (the caller clears them once) and every launch leaves them
// at zero; one workspace serves one stream (launches on it must not overlap).
struct SplitKGemmWorkspace {
  float* partials = nullptr;     // SplitKGemmPartialFloats(m, n, k)
  unsigned* counters = nullptr;  // SplitKGemmCounters(m)
  int64_t partial_floats = 0;    // capacity of each
  int64_t counter_count = 0;
};

// Clusters a product of depth k is split over.
inline int64_t SplitKGemmClusters(int64_t k) {
  const int64_t blocks = (k + 32 * kSplitKGemmChunks - 1) / (32 * kSplitKGemmChunks);
  return (blocks + kSplitKGemmCluster - 1) / kSplitKGemmCluster;
}
// Output columns of one share (a block's part of a cluster's outputs).
inline int64_t SplitKGemmShareColumns(int64_t n) {
  return ((n + 15) / 16 * 16 + kSplitKGemmCluster - 1) / kSplitKGemmCluster;
}
inline int64_t SplitKGemmRowTiles(int64_t m) { return (m + kSplitKGemmRows - 1) / kSplitKGemmRows; }
// Workspace sizes for products of up to m rows (0 when k fits one cluster).
inline int64_t SplitKGemmPartialFloats(int64_t m, int64_t n, int64_t k) {
  const int64_t clusters = SplitKGemmClusters(k);
  if (clusters <= 1) return 0;
  return SplitKGemmRowTiles(m) * kSplitKGemmCluster * clusters * SplitKGemmShareColumns(n) *
         kSplitKGemmRows;
}
inline int64_t SplitKGemmCounters(int64_t m) { return SplitKGemmRowTiles(m) * kSplitKGemmCluster; }

cudaError_t RunSplitKGemmF16(const GemmArgs& args, const SplitKGemmWorkspace& ws,
                             cudaStream_t stream);
cudaError_t RunSplitKGemmBF16(const GemmArgs& args, const SplitKGemmWorkspace& ws,
                              cudaStream_t stream);
// x_proj with the conv decode update as its prologue (see LaunchSplitKGemmConv in gemm.h).
cudaError_t RunSplitKGemmConvF16(const GemmArgs& args, const SplitKGemmWorkspace& ws,
                                 const CausalConv1dParams& conv, KernelDType state,
                                 cudaStream_t stream);
cudaError_t RunSplitKGemmConvBF16(const GemmArgs& args, const SplitKGemmWorkspace& ws,
                                  const CausalConv1dParams& conv, KernelDType state,
                                  cudaStream_t stream);

}  // namespace mamba::kernels
