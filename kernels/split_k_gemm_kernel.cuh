// Split-k GEMM for narrow products (see split_k_gemm_params.h).
#pragma once

#include <cooperative_groups.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

#include "kernels/causal_conv1d_params.h"
#include "kernels/dependent_launch.cuh"
#include "kernels/device_math.cuh"
#include "kernels/split_k_gemm_params.h"

namespace mamba::kernels {

// c += a . b for one m16n8k16 tile (fp32 accumulation); T picks the f16 or bf16 instruction.
template <typename T>
__device__ __forceinline__ void Mma16816(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                         uint32_t a3, uint32_t b0, uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  if constexpr (std::is_same_v<T, __half>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  }
#endif
}

// grid (kSplitKGemmCluster * clusters, row tiles), clusters of kSplitKGemmCluster blocks along
// x; dynamic shared memory: the block's partial sums, [16 * n_tiles][kSplitKGemmRows + 1] floats.
// kConv: 0 a plain product; else x_proj with the conv decode update as its prologue (the conv
// state in fp32 (1) or bf16 (2)): A is not read but computed, each block running the conv for
// its rows and its 64 channels, storing it to conv.out as the conv kernel would and keeping it
// in shared memory as the block's A tile.
// kWidth: the conv width when known at compile time (4, every public checkpoint's), else 0: a
// run-time width lets the compiler index the history with it, which moves it to local memory.
template <typename T, int kConv, int kWidth>
__global__ void __launch_bounds__(kSplitKGemmWarps * 32, 1)
    SplitKGemmKernel(GemmArgs g, SplitKGemmWorkspace ws, int clusters, int per,
                     CausalConv1dParams conv) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  namespace cg = cooperative_groups;
  constexpr int kRows = kSplitKGemmRows;
  constexpr int kLd = kRows + 1;  // a row of partials, padded off the banks of the next
  constexpr int kChunks = kSplitKGemmChunks;
  constexpr int kTilesPerWarp = (kSplitKGemmMaxN / 16 + kSplitKGemmWarps - 1) / kSplitKGemmWarps;
  extern __shared__ float partial[];
  __shared__ bool last_cluster;
  cg::cluster_group cluster = cg::this_cluster();
  const int rank = static_cast<int>(cluster.block_rank());
  const int cluster_index = static_cast<int>(blockIdx.x) / kSplitKGemmCluster;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int gid = lane / 4, q = lane % 4;  // the MMA fragments' group and thread-in-group
  const int n_tiles = static_cast<int>((g.n + 15) / 16);
  const int64_t row0 = static_cast<int64_t>(blockIdx.y) * kRows;
  const int64_t k_begin = static_cast<int64_t>(blockIdx.x) * 32 * kChunks;
  const T* w = static_cast<const T*>(g.w);
  const uint4 zero = make_uint4(0, 0, 0, 0);

  // Every load of the block is issued before any is used. W does not depend on the previous
  // kernel: this lane's rows (gid and gid + 8 of each of the warp's tiles) are requested before
  // waiting for it; A after.
  uint4 w_lo[kTilesPerWarp][kChunks], w_hi[kTilesPerWarp][kChunks];
#pragma unroll
  for (int t = 0; t < kTilesPerWarp; ++t) {
    const int64_t n_lo = (warp + t * kSplitKGemmWarps) * 16 + gid, n_hi = n_lo + 8;
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      const int64_t k = k_begin + c * 32 + 8 * q;
      const bool k_ok = k < g.k;
      w_lo[t][c] =
          k_ok && n_lo < g.n ? *reinterpret_cast<const uint4*>(w + n_lo * g.ldw + k) : zero;
      w_hi[t][c] =
          k_ok && n_hi < g.n ? *reinterpret_cast<const uint4*>(w + n_hi * g.ldw + k) : zero;
    }
  }
  WaitForPriorKernels();
  AllowDependentKernels();
  uint4 xa[kChunks][4];  // A rows j * 8 + gid, 16 bytes at k_begin + c * 32 + 8q
  if constexpr (kConv == 0) {
    const T* a = static_cast<const T*>(g.a);
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      const int64_t k = k_begin + c * 32 + 8 * q;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int64_t r = row0 + j * 8 + gid;
        xa[c][j] = k < g.k && r < g.m ? *reinterpret_cast<const uint4*>(a + r * g.lda + k) : zero;
      }
    }
  } else {
    // Thread t runs the conv of row t / 8 for 8 consecutive channels (of the block's 64) into
    // the A tile, whose rows are 48 words apart: the fragment loads below (8 threads per phase:
    // two rows, four 16-byte columns) then touch 32 different banks.
    using ConvState = std::conditional_t<kConv == 2, __nv_bfloat16, float>;
    constexpr int kTileLd = 96;  // elements of T per tile row
    static_assert(kRows * 8 == kSplitKGemmWarps * 32, "one thread per row and 8 channels");
    __shared__ __align__(16) T tile[kRows][kTileLd];
    const int r = threadIdx.x / 8, cb = (threadIdx.x % 8) * 8;
    const int64_t row = row0 + r;
    // Every channel's loads first (the stores would otherwise keep the compiler from moving the
    // next channel's loads above them: eight round trips instead of one). The math is
    // ConvDecodeChannel's, written over arrays: an array of those structs lands in local memory.
    const int width = kWidth > 0 ? kWidth : conv.width;
    const int w1 = width - 1, pad = kConvTaps - width;
    const bool row_ok = row < g.m;
    ConvState* state =
        row_ok ? static_cast<ConvState*>(conv.state) + conv.slots[row] * conv.state_slot_stride
               : nullptr;
    float hist[8][kConvMaxWidth - 1], taps[8][kConvTaps], bias[8], x[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int64_t e = k_begin + cb + i;
      const bool ok = row_ok && e < g.k;
#pragma unroll
      for (int j = 0; j < kConvMaxWidth - 1; ++j) {
        hist[i][j] = ok && j < w1 ? ToFloat(state[e * w1 + j]) : 0.0f;
      }
#pragma unroll
      for (int k = 0; k < kConvTaps; ++k) {
        taps[i][k] = ok && k >= pad ? conv.weight[e * width + (k - pad)] : 0.0f;
      }
      bias[i] = ok && conv.bias != nullptr ? conv.bias[e] : 0.0f;
      x[i] = ok ? ToFloat(static_cast<const T*>(conv.x)[row * conv.x_row_stride + e]) : 0.0f;
      if (ok && conv.x_bias != nullptr) x[i] = __fadd_rn(x[i], conv.x_bias[e]);
    }
    Vec8<T> v;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int64_t e = k_begin + cb + i;
      v.v[i] = FromFloat<T>(0.0f);
      if (!row_ok || e >= g.k) continue;
      float in[kConvTaps];
#pragma unroll
      for (int k = 0; k < kConvTaps - 1; ++k) {
        const int d = kConvTaps - 1 - k;  // steps before the current token
        float h = 0.0f;
#pragma unroll
        for (int j = 0; j < kConvMaxWidth - 1; ++j) {
          if (d <= w1 && j == w1 - d) h = hist[i][j];
        }
        in[k] = h;
      }
      in[kConvTaps - 1] = x[i];
      v.v[i] = FromFloat<T>(Silu(ConvAccumulate(bias[i], taps[i], in)));
      static_cast<T*>(conv.out)[row * conv.out_row_stride + e] = v.v[i];
#pragma unroll
      for (int j = 0; j < kConvMaxWidth - 1; ++j) {
        float next = x[i];
        if (j + 1 < kConvMaxWidth - 1 && j + 1 < w1) {
          next = hist[i][j + 1 < kConvMaxWidth - 1 ? j + 1 : 0];  // in range at compile time
        }
        if (j < w1) state[e * w1 + j] = FromFloat<ConvState>(next);
      }
    }
    *reinterpret_cast<Vec8<T>*>(&tile[r][cb]) = v;
    __syncthreads();
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        xa[c][j] = *reinterpret_cast<const uint4*>(&tile[j * 8 + gid][c * 32 + 8 * q]);
      }
    }
  }
  // Logical k (2q, 2q+1 | 2q+8, 2q+9) of step s is physical 8q + 4s + (0, 1 | 2, 3) of the
  // chunk, in both operands. Accumulator c of tile j: W row gid (+ 8 for c >= 2), A row
  // j * 8 + 2q (+ 1 for odd c).
#pragma unroll
  for (int t = 0; t < kTilesPerWarp; ++t) {
    const int nt = warp + t * kSplitKGemmWarps;
    if (nt >= n_tiles) break;  // uniform over the warp
    float acc[4][4];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[j][e] = 0.0f;
    }
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      const uint4& lo = w_lo[t][c];
      const uint4& hi = w_hi[t][c];
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        Mma16816<T>(acc[j], lo.x, hi.x, lo.y, hi.y, xa[c][j].x, xa[c][j].y);
        Mma16816<T>(acc[j], lo.z, hi.z, lo.w, hi.w, xa[c][j].z, xa[c][j].w);
      }
    }
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      float* p = partial + (nt * 16 + gid) * kLd + j * 8 + 2 * q;
      p[0] = acc[j][0];
      p[1] = acc[j][1];
      p[8 * kLd] = acc[j][2];
      p[8 * kLd + 1] = acc[j][3];
    }
  }
  cluster.sync();  // every block's partials are written and visible to the cluster

  // Level 1: block `rank` adds up its share of the output columns over the cluster's blocks, in
  // rank order (consecutive threads take consecutive columns of a row). A share is `per` columns
  // (SplitKGemmShareColumns) of the tile's rows.
  constexpr int kThreads = kSplitKGemmWarps * 32;
  constexpr int kMaxPerThread =
      (kSplitKGemmMaxN / kSplitKGemmCluster * kRows + kThreads - 1) / kThreads;
  float sums[kMaxPerThread];
#pragma unroll
  for (int i = 0; i < kMaxPerThread; ++i) {
    const int idx = threadIdx.x + i * kThreads;
    sums[i] = 0.0f;
    if (idx < per * kRows) {
      const int64_t n = static_cast<int64_t>(rank) * per + idx % per;
      const int row = idx / per;
#pragma unroll
      for (int b = 0; b < kSplitKGemmCluster; ++b) {
        const float v = cluster.map_shared_rank(partial, b)[n * kLd + row];
        sums[i] = b == 0 ? v : __fadd_rn(sums[i], v);
      }
    }
  }
  cluster.sync();  // no block goes on (or leaves) while another still reads its shared memory

  auto store = [&](int idx, float v) {
    const int64_t n = static_cast<int64_t>(rank) * per + idx % per;
    const int64_t row = row0 + idx / per;
    if (n < g.n && row < g.m) static_cast<T*>(g.d)[row * g.ldd + n] = FromFloat<T>(v);
  };
  if (clusters == 1) {
#pragma unroll
    for (int i = 0; i < kMaxPerThread; ++i) {
      const int idx = threadIdx.x + i * kThreads;
      if (idx < per * kRows) store(idx, sums[i]);
    }
    return;
  }
  // Level 2: this cluster's sums of the share go to the workspace; the last cluster to finish the
  // share adds every cluster's in cluster order.
  const int64_t share = static_cast<int64_t>(blockIdx.y) * kSplitKGemmCluster + rank;
  float* share_sums = ws.partials + share * clusters * per * kRows;
#pragma unroll
  for (int i = 0; i < kMaxPerThread; ++i) {
    const int idx = threadIdx.x + i * kThreads;
    if (idx < per * kRows)
      share_sums[static_cast<int64_t>(cluster_index) * per * kRows + idx] = sums[i];
  }
  __threadfence();  // the sums are visible device-wide before the counter moves
  __syncthreads();
  if (threadIdx.x == 0) {
    last_cluster = atomicAdd(ws.counters + share, 1u) == static_cast<unsigned>(clusters - 1);
  }
  __syncthreads();
  if (!last_cluster) return;
  __threadfence();
#pragma unroll
  for (int i = 0; i < kMaxPerThread; ++i) {
    const int idx = threadIdx.x + i * kThreads;
    if (idx >= per * kRows) continue;
    float v = __ldcg(share_sums + idx);
    for (int c = 1; c < clusters; ++c) {
      v = __fadd_rn(v, __ldcg(share_sums + static_cast<int64_t>(c) * per * kRows + idx));
    }
    store(idx, v);
  }
  if (threadIdx.x == 0) ws.counters[share] = 0;  // every cluster has counted: ready for the next
#endif
}

template <typename T, int kConv>
cudaError_t RunSplitKGemmVariant(const GemmArgs& g, const SplitKGemmWorkspace& ws,
                                 const CausalConv1dParams& conv, cudaStream_t stream) {
  if (g.m == 0) return cudaSuccess;
  const int64_t clusters = SplitKGemmClusters(g.k);
  const int n_tiles = static_cast<int>((g.n + 15) / 16);
  const size_t smem = sizeof(float) * n_tiles * 16 * (kSplitKGemmRows + 1);
  const dim3 grid(static_cast<unsigned>(clusters * kSplitKGemmCluster),
                  static_cast<unsigned>(SplitKGemmRowTiles(g.m)));
  auto kernel =
      kConv != 0 && conv.width == 4 ? SplitKGemmKernel<T, kConv, 4> : SplitKGemmKernel<T, kConv, 0>;
  return LaunchKernelInCluster(kernel, grid, dim3(kSplitKGemmWarps * 32), smem, stream,
                               /*dependent=*/true, kSplitKGemmCluster, g, ws,
                               static_cast<int>(clusters),
                               static_cast<int>(SplitKGemmShareColumns(g.n)), conv);
}

template <typename T>
cudaError_t RunSplitKGemm(const GemmArgs& g, const SplitKGemmWorkspace& ws, cudaStream_t stream) {
  return RunSplitKGemmVariant<T, 0>(g, ws, CausalConv1dParams{}, stream);
}

template <typename T>
cudaError_t RunSplitKGemmConv(const GemmArgs& g, const SplitKGemmWorkspace& ws,
                              const CausalConv1dParams& conv, KernelDType state,
                              cudaStream_t stream) {
  return state == KernelDType::kBF16 ? RunSplitKGemmVariant<T, 2>(g, ws, conv, stream)
                                     : RunSplitKGemmVariant<T, 1>(g, ws, conv, stream);
}

}  // namespace mamba::kernels
