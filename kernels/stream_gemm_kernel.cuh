// Stream GEMM kernel body (see stream_gemm_params.h).
#pragma once

#include <cooperative_groups.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "kernels/dependent_launch.cuh"
#include "kernels/device_math.cuh"
#include "kernels/stream_gemm_params.h"

namespace mamba::kernels {
namespace stream_gemm {

constexpr int kThreads = kStreamGemmWarps * 32;
constexpr int kBN = kStreamGemmTileN;
constexpr int kBK = kStreamGemmTileK;
constexpr int kStages = kStreamGemmStages;
constexpr int kChunks = kBK / 8;  // 16-byte chunks per row of a k tile
constexpr int kOutLd = kBN + 4;   // fp32 output tile row (padding spreads banks)
static_assert(kChunks == 8, "the swizzle below assumes 8 chunks per row");

template <int kMT>
struct Shape {
  static constexpr int kM = 8 * kMT;  // rows of A the block computes (m rounded up)
  static constexpr int kWElems = kBN * kBK;
  static constexpr int kAElems = kM * kBK;
  static constexpr int kStageBytes = (kWElems + kAElems) * 2;
  static constexpr int kPipeBytes = kStages * kStageBytes;
  static constexpr int kOutBytes = kM * kOutLd * 4;
  static constexpr int kSmemBytes = kPipeBytes > kOutBytes ? kPipeBytes : kOutBytes;
};

// Element offset of 16-byte chunk `chunk` of row `row` in a [rows][kBK] tile: chunks XOR-swizzled
// by the row, so the 8 rows an ldmatrix reads (one chunk each) fall in distinct banks.
__device__ __forceinline__ int Swizzle(int row, int chunk) {
  return row * kBK + ((chunk ^ (row & 7)) << 3);
}

// 16 bytes global -> shared, or 16 zero bytes when !valid (src is then not read).
__device__ __forceinline__ void CopyAsync16(void* smem, const void* global, bool valid) {
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  const int bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(global), "r"(bytes)
               : "memory");
}
__device__ __forceinline__ void Commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int kPending>
__device__ __forceinline__ void WaitGroups() {
  asm volatile("cp.async.wait_group %0;" ::"n"(kPending) : "memory");
}

__device__ __forceinline__ void LdMatrixX4(unsigned (&r)[4], const void* smem) {
  const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
}
__device__ __forceinline__ void LdMatrixX2(unsigned (&r)[2], const void* smem) {
  const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(a));
}

// c += a (16 x 16, row-major) . b (16 x 8, column-major), fp32 accumulators.
template <typename T>
__device__ __forceinline__ void Mma(float (&c)[4], const unsigned (&a)[4], unsigned b0,
                                    unsigned b1) {
  if constexpr (std::is_same_v<T, __half>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%0, %1, %2, %3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%0, %1, %2, %3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

}  // namespace stream_gemm

// Block b of the grid: output tile b / split (128 columns), k range b % split (its rank in the
// cluster of `split` blocks). kMT: 8-row tiles of A computed (m <= 8 * kMT).
template <typename T, int kMT, bool kOutF32>
__global__ void __launch_bounds__(stream_gemm::kThreads)
    StreamGemmKernel(GemmArgs g, int split, int k_per_split) {
  using namespace stream_gemm;
  using S = Shape<kMT>;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  T* smem = reinterpret_cast<T*>(smem_raw);
  const int tid = threadIdx.x;
  const int lane = tid % 32;
  const int warp = tid / 32;
  const int tile = static_cast<int>(blockIdx.x) / split;
  const int rank = static_cast<int>(blockIdx.x) % split;
  const int64_t n0 = static_cast<int64_t>(tile) * kBN;
  const int64_t k_begin = static_cast<int64_t>(rank) * k_per_split;
  const int64_t k_end = MinI64(g.k, k_begin + k_per_split);
  const int k_tiles = k_end > k_begin ? static_cast<int>((k_end - k_begin + kBK - 1) / kBK) : 0;
  const T* w = static_cast<const T*>(g.w);
  const T* a = static_cast<const T*>(g.a);

  auto load_w = [&](int kt, int buf) {
    T* dst = smem + buf * (S::kWElems + S::kAElems);
    const int64_t kb = k_begin + static_cast<int64_t>(kt) * kBK;
#pragma unroll
    for (int i = tid; i < kBN * kChunks; i += kThreads) {
      const int row = i / kChunks, chunk = i % kChunks;
      const int64_t n = n0 + row, k = kb + chunk * 8;
      const bool valid = n < g.n && k < k_end;
      CopyAsync16(dst + Swizzle(row, chunk), valid ? w + n * g.ldw + k : w, valid);
    }
  };
  auto load_a = [&](int kt, int buf) {
    T* dst = smem + buf * (S::kWElems + S::kAElems) + S::kWElems;
    const int64_t kb = k_begin + static_cast<int64_t>(kt) * kBK;
#pragma unroll
    for (int i = tid; i < S::kM * kChunks; i += kThreads) {
      const int row = i / kChunks, chunk = i % kChunks;
      const int64_t k = kb + chunk * 8;
      const bool valid = row < g.m && k < k_end;
      CopyAsync16(dst + Swizzle(row, chunk), valid ? a + row * g.lda + k : a, valid);
    }
  };

  // W does not depend on the previous kernel: its first stages are requested before waiting.
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < k_tiles) load_w(s, s);
  }
  WaitForPriorKernels();
  AllowDependentKernels();
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < k_tiles) load_a(s, s);
    Commit();  // group s: A's stage s (group 0 also holds W's early stages)
  }

  float acc[kMT][4];
#pragma unroll
  for (int j = 0; j < kMT; ++j) {
#pragma unroll
    for (int i = 0; i < 4; ++i) acc[j][i] = 0.0f;
  }
  for (int kt = 0; kt < k_tiles; ++kt) {
    WaitGroups<kStages - 2>();  // stage kt has landed (this thread's copies) ...
    __syncthreads();            // ... and every thread's; the buffer refilled below is free
    const int next = kt + kStages - 1;
    if (next < k_tiles) {
      load_w(next, next % kStages);
      load_a(next, next % kStages);
    }
    Commit();
    const T* ws = smem + (kt % kStages) * (S::kWElems + S::kAElems);
    const T* as = ws + S::kWElems;
#pragma unroll
    for (int kk = 0; kk < kBK / 16; ++kk) {
      unsigned wf[4];
      LdMatrixX4(wf, ws + Swizzle(warp * 16 + (lane & 15), kk * 2 + (lane >> 4)));
      if constexpr (kMT == 1) {
        unsigned bf[2];
        LdMatrixX2(bf, as + Swizzle(lane & 7, kk * 2 + ((lane >> 3) & 1)));
        Mma<T>(acc[0], wf, bf[0], bf[1]);
      } else {
#pragma unroll
        for (int j = 0; j < kMT; j += 2) {
          unsigned bf[4];
          LdMatrixX4(bf, as + Swizzle(j * 8 + (lane & 7) + ((lane >> 4) << 3),
                                      kk * 2 + ((lane >> 3) & 1)));
          Mma<T>(acc[j], wf, bf[0], bf[1]);
          Mma<T>(acc[j + 1], wf, bf[2], bf[3]);
        }
      }
    }
  }
  WaitGroups<0>();
  __syncthreads();  // the pipeline's shared memory becomes the output tile

  // acc[j]: W rows warp * 16 + lane / 4 (+ 8), A rows 8 j + 2 (lane % 4) (+ 1).
  float* out = reinterpret_cast<float*>(smem_raw);
  const int nl = warp * 16 + lane / 4;
#pragma unroll
  for (int j = 0; j < kMT; ++j) {
    const int m = j * 8 + (lane % 4) * 2;
    out[m * kOutLd + nl] = acc[j][0];
    out[(m + 1) * kOutLd + nl] = acc[j][1];
    out[m * kOutLd + nl + 8] = acc[j][2];
    out[(m + 1) * kOutLd + nl + 8] = acc[j][3];
  }

  // Block `rank` adds up its share of the tile's elements over the cluster's blocks in rank order.
  const int rows = static_cast<int>(MinI64(S::kM, g.m));
  const int total = rows * kBN;
  auto store = [&](int idx, float v) {
    const int m = idx / kBN, c = idx % kBN;
    const int64_t n = n0 + c;
    if (n >= g.n) return;
    if constexpr (kOutF32) {
      static_cast<float*>(g.d)[m * g.ldd + n] = v;
    } else {
      static_cast<T*>(g.d)[m * g.ldd + n] = FromFloat<T>(v);
    }
  };
  if (split == 1) {
    __syncthreads();
    for (int idx = tid; idx < total; idx += kThreads) {
      store(idx, out[(idx / kBN) * kOutLd + idx % kBN]);
    }
    return;
  }
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  namespace cg = cooperative_groups;
  cg::cluster_group cluster = cg::this_cluster();
  cluster.sync();  // every block's partial tile is written and visible to the cluster
  const int per = (total + split - 1) / split;
  const int first = rank * per;
  const int last = total < first + per ? total : first + per;
  for (int idx = first + tid; idx < last; idx += kThreads) {
    const int off = (idx / kBN) * kOutLd + idx % kBN;
    float v = cluster.map_shared_rank(out, 0)[off];
    for (int q = 1; q < split; ++q) v = __fadd_rn(v, cluster.map_shared_rank(out, q)[off]);
    store(idx, v);
  }
  cluster.sync();  // no block leaves while another still reads its shared memory
#else
  __trap();  // clusters need sm_90; the launcher never splits below it
#endif
}

template <typename T, int kMT>
cudaError_t LaunchStreamGemmRows(const GemmArgs& g, const StreamGemmLayout& layout,
                                 cudaStream_t stream) {
  using S = stream_gemm::Shape<kMT>;
  auto kernel = g.d_dtype == KernelDType::kF32 ? StreamGemmKernel<T, kMT, true>
                                               : StreamGemmKernel<T, kMT, false>;
  const cudaError_t err =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, S::kSmemBytes);
  if (err != cudaSuccess) return err;
  const dim3 grid(static_cast<unsigned>(layout.tiles * layout.split));
  return LaunchKernelInCluster(kernel, grid, dim3(stream_gemm::kThreads), S::kSmemBytes, stream,
                               /*dependent=*/true, static_cast<unsigned>(layout.split), g,
                               layout.split, layout.k_per_split);
}

template <typename T>
cudaError_t RunStreamGemm(const GemmArgs& g, const StreamGemmLayout& layout, cudaStream_t stream) {
  if (g.m == 0) return cudaSuccess;
  if (g.m <= 8) return LaunchStreamGemmRows<T, 1>(g, layout, stream);
  if (g.m <= 16) return LaunchStreamGemmRows<T, 2>(g, layout, stream);
  if (g.m <= 32) return LaunchStreamGemmRows<T, 4>(g, layout, stream);
  if (g.m <= 64) return LaunchStreamGemmRows<T, 8>(g, layout, stream);
  return LaunchStreamGemmRows<T, 16>(g, layout, stream);
}

}  // namespace mamba::kernels
