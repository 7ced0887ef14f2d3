// Batch-invariant tensor-core GEMM (see batch_invariant_gemm_params.h).
#pragma once

#include <mma.h>

#include <cstring>

#include "kernels/batch_invariant_gemm_params.h"
#include "kernels/device_math.cuh"

namespace mamba::kernels {

template <typename T, bool kOutF32>
struct InvariantGemmTraits {
  static constexpr int kM = kInvariantGemmTileM;
  static constexpr int kN = kInvariantGemmTileN;
  static constexpr int kK = kInvariantGemmTileK;
  static constexpr int kThreads = kInvariantGemmThreads;
  static constexpr int kPad = 8;  // keeps rows 16-byte aligned and spreads banks
  static constexpr int kLd = kK + kPad;
  static constexpr int kVecsPerRow = kK / 8;
  static constexpr int kAVecsPerThread = kM * kVecsPerRow / kThreads;
  static constexpr int kWVecsPerThread = kN * kVecsPerRow / kThreads;
  static_assert(kAVecsPerThread * kThreads == kM * kVecsPerRow, "A tile must split evenly");
  static_assert(kWVecsPerThread * kThreads == kN * kVecsPerRow, "W tile must split evenly");
  struct alignas(128) SharedStorage {
    union {
      struct {
        T a[kM][kLd];
        T w[kN][kLd];
      } in;
      float out[kM][kN + 4];
    };
  };
};

template <typename T>
__device__ __forceinline__ uint4 LoadGemmVec(const T* row, int64_t k0, int64_t k, bool vec) {
  const int64_t valid = k - k0;
  if (vec && valid >= 8) return *reinterpret_cast<const uint4*>(row + k0);
  Vec8<T> v;
#pragma unroll
  for (int i = 0; i < 8; ++i) v.v[i] = i < valid ? row[k0 + i] : FromFloat<T>(0.0f);
  uint4 u;
  memcpy(&u, &v, sizeof u);
  return u;
}

template <typename T, bool kOutF32>
__global__ void __launch_bounds__(kInvariantGemmThreads)
    BatchInvariantGemmKernel(GemmArgs args, bool vec) {
  using Traits = InvariantGemmTraits<T, kOutF32>;
  using namespace nvcuda;
  __shared__ typename Traits::SharedStorage sm;
  const int tid = threadIdx.x;
  const int warp = tid / 32;
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * Traits::kM;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * Traits::kN;
  const T* a = static_cast<const T*>(args.a);
  const T* w = static_cast<const T*>(args.w);

  uint4 ra[Traits::kAVecsPerThread], rw[Traits::kWVecsPerThread];
  auto load = [&](int64_t k0) {
#pragma unroll
    for (int i = 0; i < Traits::kAVecsPerThread; ++i) {
      const int v = tid + i * Traits::kThreads;
      const int64_t row = m0 + v / Traits::kVecsPerRow;
      const int64_t kk = k0 + (v % Traits::kVecsPerRow) * 8;
      ra[i] =
          row < args.m ? LoadGemmVec(a + row * args.lda, kk, args.k, vec) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int i = 0; i < Traits::kWVecsPerThread; ++i) {
      const int v = tid + i * Traits::kThreads;
      const int64_t row = n0 + v / Traits::kVecsPerRow;
      const int64_t kk = k0 + (v % Traits::kVecsPerRow) * 8;
      rw[i] =
          row < args.n ? LoadGemmVec(w + row * args.ldw, kk, args.k, vec) : make_uint4(0, 0, 0, 0);
    }
  };

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);
  }
  const int wm = (warp / 2) * 32;  // this warp's 32 x 32 quarter of the tile
  const int wn = (warp % 2) * 32;

  load(0);
  for (int64_t k0 = 0; k0 < args.k; k0 += Traits::kK) {
#pragma unroll
    for (int i = 0; i < Traits::kAVecsPerThread; ++i) {
      const int v = tid + i * Traits::kThreads;
      *reinterpret_cast<uint4*>(&sm.in.a[v / Traits::kVecsPerRow][(v % Traits::kVecsPerRow) * 8]) =
          ra[i];
    }
#pragma unroll
    for (int i = 0; i < Traits::kWVecsPerThread; ++i) {
      const int v = tid + i * Traits::kThreads;
      *reinterpret_cast<uint4*>(&sm.in.w[v / Traits::kVecsPerRow][(v % Traits::kVecsPerRow) * 8]) =
          rw[i];
    }
    __syncthreads();
    if (k0 + Traits::kK < args.k) load(k0 + Traits::kK);
#pragma unroll
    for (int kk = 0; kk < Traits::kK; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa[2];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> fb[2];
#pragma unroll
      for (int i = 0; i < 2; ++i)
        wmma::load_matrix_sync(fa[i], &sm.in.a[wm + 16 * i][kk], Traits::kLd);
#pragma unroll
      for (int j = 0; j < 2; ++j)
        wmma::load_matrix_sync(fb[j], &sm.in.w[wn + 16 * j][kk], Traits::kLd);
#pragma unroll
      for (int i = 0; i < 2; ++i) {
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
      }
    }
    __syncthreads();
  }

#pragma unroll
  for (int i = 0; i < 2; ++i) {
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      wmma::store_matrix_sync(&sm.out[wm + 16 * i][wn + 16 * j], acc[i][j], Traits::kN + 4,
                              wmma::mem_row_major);
    }
  }
  __syncthreads();
  for (int idx = tid; idx < Traits::kM * Traits::kN; idx += Traits::kThreads) {
    const int r = idx / Traits::kN;
    const int c = idx % Traits::kN;
    const int64_t row = m0 + r;
    const int64_t col = n0 + c;
    if (row < args.m && col < args.n) {
      if constexpr (kOutF32) {
        static_cast<float*>(args.d)[row * args.ldd + col] = sm.out[r][c];
      } else {
        static_cast<T*>(args.d)[row * args.ldd + col] = FromFloat<T>(sm.out[r][c]);
      }
    }
  }
}

template <typename T>
cudaError_t RunBatchInvariantGemm(const GemmArgs& args, cudaStream_t stream) {
  if (args.m == 0 || args.n == 0) return cudaSuccess;
  auto aligned16 = [](const void* q) { return reinterpret_cast<uintptr_t>(q) % 16 == 0; };
  const bool vec = args.lda % 8 == 0 && args.ldw % 8 == 0 && aligned16(args.a) && aligned16(args.w);
  const dim3 grid(static_cast<unsigned>((args.n + kInvariantGemmTileN - 1) / kInvariantGemmTileN),
                  static_cast<unsigned>((args.m + kInvariantGemmTileM - 1) / kInvariantGemmTileM));
  if (args.d_dtype == KernelDType::kF32) {
    BatchInvariantGemmKernel<T, true><<<grid, kInvariantGemmThreads, 0, stream>>>(args, vec);
  } else {
    BatchInvariantGemmKernel<T, false><<<grid, kInvariantGemmThreads, 0, stream>>>(args, vec);
  }
  return cudaGetLastError();
}

}  // namespace mamba::kernels
