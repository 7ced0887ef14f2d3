// Mamba-2 kernel bodies (see mamba2_params.h). Included by the per-dtype instantiation files.
#pragma once

#include <algorithm>
#include <climits>
#include <type_traits>

#include "kernels/device_math.cuh"
#include "kernels/mamba2_params.h"
#include "kernels/ssd_chunked_kernel.cuh"

namespace mamba::kernels {

inline constexpr int kSsdChannelsPerBlock = 32;
inline constexpr int kSsdThreads = kSsdChannelsPerBlock * kSsdLanesPerChannel;
inline constexpr int kGatedNormThreads = 256;

template <typename T>
__device__ __forceinline__ float LoadF(const void* base, int64_t index) {
  return ToFloat(static_cast<const T*>(base)[index]);
}

// kN consecutive elements at p as vector accesses of 4 elements (16 bytes of fp32, 8 of 2-byte
// types); p aligned to the vector.
template <typename E, int kN>
__device__ __forceinline__ void LoadVec4s(const E* p, float (&out)[kN]) {
  static_assert(kN % 4 == 0, "whole vectors");
#pragma unroll
  for (int i = 0; i < kN; i += 4) {
    float v[4];
    if constexpr (std::is_same_v<E, float>) {
      const float4 f = *reinterpret_cast<const float4*>(p + i);
      v[0] = f.x, v[1] = f.y, v[2] = f.z, v[3] = f.w;
    } else {
      LoadVec<E, 4>(p + i, v);
    }
#pragma unroll
    for (int j = 0; j < 4; ++j) out[i + j] = v[j];
  }
}

template <typename E, int kN>
__device__ __forceinline__ void StoreVec4s(E* p, const float (&in)[kN]) {
  static_assert(kN % 4 == 0, "whole vectors");
#pragma unroll
  for (int i = 0; i < kN; i += 4) {
    const float v[4] = {in[i], in[i + 1], in[i + 2], in[i + 3]};
    if constexpr (std::is_same_v<E, float>) {
      *reinterpret_cast<float4*>(p + i) = make_float4(v[0], v[1], v[2], v[3]);
    } else {
      StoreVec<E, 4>(p + i, v);
    }
  }
}

// One block: kSsdChannelsPerBlock channels of one head of one sequence, every token in order. A
// channel's dstate elements are split over kSsdLanesPerChannel consecutive lanes, kPer each
// (lane l holds n = l * kPer .. l * kPer + kPer - 1). kVec: dstate is exactly
// kSsdLanesPerChannel * kPer and every row is aligned, so a lane's state, B and C are read (and
// its state written) as whole vectors; the arithmetic and its order are the same either way.
// Sequences of `skip_from` tokens or more are left to the chunked kernel.
template <typename T, typename S, int kPer, bool kVec>
__global__ void __launch_bounds__(kSsdThreads) SsdScanKernel(SsdScanParams p, int64_t skip_from) {
  const int64_t s = blockIdx.z;
  const int64_t h = blockIdx.y;
  const int lane = threadIdx.x % kSsdLanesPerChannel;
  const int64_t ch =
      static_cast<int64_t>(blockIdx.x) * kSsdChannelsPerBlock + threadIdx.x / kSsdLanesPerChannel;
  const bool valid = ch < p.head_dim;
  const int64_t t0 = p.cu_seqlens != nullptr ? p.cu_seqlens[s] : s;
  const int64_t t1 = p.cu_seqlens != nullptr ? p.cu_seqlens[s + 1] : s + 1;
  if (t0 >= t1 || t1 - t0 >= skip_from) return;
  const int64_t g = h / (p.n_heads / p.n_groups);
  const int64_t e = h * p.head_dim + ch;  // the channel among d_ssm
  const int64_t n0 = static_cast<int64_t>(lane) * kPer;

  S* state = static_cast<S*>(p.state) + static_cast<int64_t>(p.slots[s]) * p.state_slot_stride +
             e * p.dstate;
  float hs[kPer];
  if constexpr (kVec) {
    if (valid) {
      LoadVec4s<S, kPer>(state + n0, hs);
    } else {
#pragma unroll
      for (int i = 0; i < kPer; ++i) hs[i] = 0.0f;
    }
  } else {
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      hs[i] = valid && n0 + i < p.dstate ? ToFloat(state[n0 + i]) : 0.0f;
    }
  }
  const float a = p.a[h];
  const float bias = p.dt_bias[h] + (p.dt_in_bias != nullptr ? p.dt_in_bias[h] : 0.0f);
  const float dskip = valid ? p.d[p.d_per_channel ? e : h] : 0.0f;
  const int64_t b_off = g * p.dstate + n0;

  for (int64_t t = t0; t < t1; ++t) {
    float dt = Softplus(__fadd_rn(LoadF<T>(p.dt, t * p.dt_row_stride + h), bias));
    dt = fminf(fmaxf(dt, p.dt_min), p.dt_max);
    const float decay = expf(__fmul_rn(dt, a));
    const float x = valid ? LoadF<T>(p.x, t * p.xbc_row_stride + e) : 0.0f;
    const float dtx = __fmul_rn(dt, x);
    const int64_t row = t * p.xbc_row_stride + b_off;
    float acc = 0.0f;
    if constexpr (kVec) {
      float bv[kPer], cv[kPer];
      LoadVec4s<T, kPer>(static_cast<const T*>(p.b) + row, bv);
      LoadVec4s<T, kPer>(static_cast<const T*>(p.c) + row, cv);
#pragma unroll
      for (int i = 0; i < kPer; ++i) {
        hs[i] = __fmaf_rn(decay, hs[i], __fmul_rn(dtx, bv[i]));
        acc = __fmaf_rn(hs[i], cv[i], acc);
      }
    } else {
#pragma unroll
      for (int i = 0; i < kPer; ++i) {
        if (n0 + i < p.dstate) {
          const float bv = LoadF<T>(p.b, row + i);
          const float cv = LoadF<T>(p.c, row + i);
          hs[i] = __fmaf_rn(decay, hs[i], __fmul_rn(dtx, bv));
          acc = __fmaf_rn(hs[i], cv, acc);
        }
      }
    }
    // The channel's lanes are consecutive and aligned within the warp: a fixed reduction tree.
#pragma unroll
    for (int offset = kSsdLanesPerChannel / 2; offset > 0; offset /= 2) {
      acc = __fadd_rn(acc, __shfl_xor_sync(0xffffffffu, acc, offset));
    }
    if (valid && lane == 0) p.out[t * p.out_row_stride + e] = __fmaf_rn(dskip, x, acc);
  }
  if (valid) {
    if constexpr (kVec) {
      StoreVec4s<S, kPer>(state + n0, hs);
    } else {
#pragma unroll
      for (int i = 0; i < kPer; ++i) {
        if (n0 + i < p.dstate) state[n0 + i] = FromFloat<S>(hs[i]);
      }
    }
  }
}

template <typename T, typename S>
cudaError_t RunSsdScanTyped(const SsdScanParams& p, cudaStream_t stream) {
  // Long sequences in the chunked form, when asked for and the shapes allow it; the rest below.
  int64_t skip_from = INT64_MAX;
  if (p.chunked_min_tokens > 0 && (p.max_seqlen == 0 || p.max_seqlen >= p.chunked_min_tokens) &&
      SsdChunkedSupported<T>(p)) {
    const int split = p.chunked_head_split;
    const cudaError_t err =
        p.dstate == 64 ? LaunchSsdChunked<T, S, 64>(p, p.chunked_min_tokens, split, stream)
                       : LaunchSsdChunked<T, S, 128>(p, p.chunked_min_tokens, split, stream);
    if (err != cudaSuccess) return err;
    skip_from = p.chunked_min_tokens;
  }
  const dim3 grid(
      static_cast<unsigned>((p.head_dim + kSsdChannelsPerBlock - 1) / kSsdChannelsPerBlock),
      static_cast<unsigned>(p.n_heads), static_cast<unsigned>(p.num_seqs));
  const int per = static_cast<int>((p.dstate + kSsdLanesPerChannel - 1) / kSsdLanesPerChannel);
  auto aligned = [](const void* ptr, int bytes) {
    return reinterpret_cast<uintptr_t>(ptr) % static_cast<uintptr_t>(bytes) == 0;
  };
  // Whole vectors: a lane's 4-element groups start at multiples of 4 elements of a row whose
  // start is aligned (state rows are dstate elements; B and C rows xbc_row_stride).
  const bool vec = p.dstate == int64_t{kSsdLanesPerChannel} * per && per % 4 == 0 &&
                   aligned(p.state, 16) && (p.state_slot_stride * sizeof(S)) % 16 == 0 &&
                   aligned(p.b, 8) && aligned(p.c, 8) && (p.xbc_row_stride * sizeof(T)) % 8 == 0 &&
                   (p.dstate * sizeof(T)) % 8 == 0;
  auto launch = [&](auto per_c) {
    constexpr int kPer = decltype(per_c)::value;
    if constexpr (kPer % 4 == 0) {
      if (vec) {
        SsdScanKernel<T, S, kPer, true><<<grid, kSsdThreads, 0, stream>>>(p, skip_from);
        return;
      }
    }
    SsdScanKernel<T, S, kPer, false><<<grid, kSsdThreads, 0, stream>>>(p, skip_from);
  };
  if (per <= 2) {
    launch(std::integral_constant<int, 2>{});
  } else if (per <= 4) {
    launch(std::integral_constant<int, 4>{});
  } else if (per <= 8) {
    launch(std::integral_constant<int, 8>{});
  } else if (per <= 16) {
    launch(std::integral_constant<int, 16>{});
  } else {
    launch(std::integral_constant<int, 32>{});
  }
  return cudaGetLastError();
}

template <typename T>
cudaError_t RunSsdScan(const SsdScanParams& p, KernelDType state_dtype, cudaStream_t stream) {
  if (p.num_seqs == 0 || p.total_tokens == 0) return cudaSuccess;
  return state_dtype == KernelDType::kF32 ? RunSsdScanTyped<T, float>(p, stream)
                                          : RunSsdScanTyped<T, __nv_bfloat16>(p, stream);
}

// The sum of `v` over the block, the same on every thread, in a fixed order.
__device__ __forceinline__ float BlockSum(float v, float* scratch) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) {
    v = __fadd_rn(v, __shfl_xor_sync(0xffffffffu, v, offset));
  }
  const int warp = threadIdx.x / 32;
  __syncthreads();  // scratch may still be read by an earlier call
  if (threadIdx.x % 32 == 0) scratch[warp] = v;
  __syncthreads();
  float total = 0.0f;
  for (int w = 0; w < kGatedNormThreads / 32; ++w) total = __fadd_rn(total, scratch[w]);
  return total;
}

// Gate values a thread keeps in registers between the sum of squares and the store (group_size up
// to kGatedNormThreads * kGatedNormCached; larger groups recompute the rest).
inline constexpr int kGatedNormCached = 16;

// One block per (row, group): the groups of a row normalize in parallel (Codestral's 8 groups of
// 1024 channels were 8 sequential block reductions in one block per row: 27 us a layer at 64 rows
// on an H100). Thread t handles channels g0 + t + k * kGatedNormThreads, k increasing, as the
// per-row kernel did, so sums and outputs keep their bits.
template <typename T>
__global__ void __launch_bounds__(kGatedNormThreads) GatedNormKernel(GatedNormParams p) {
  __shared__ float scratch[kGatedNormThreads / 32];
  const int64_t r = blockIdx.x;
  const int64_t groups = gridDim.y;
  T* out = static_cast<T*>(p.out) + r * p.out_row_stride;
  const int64_t proj = r * p.proj_row_stride;
  // The MLP channels (state-spaces checkpoints), spread over the row's blocks.
  for (int64_t j = static_cast<int64_t>(blockIdx.y) * kGatedNormThreads + threadIdx.x; j < p.mlp;
       j += groups * kGatedNormThreads) {
    float z0 = LoadF<T>(p.z0, proj + j);
    float x0 = LoadF<T>(p.x0, proj + j);
    if (p.z0_bias != nullptr) z0 = __fadd_rn(z0, p.z0_bias[j]);
    if (p.x0_bias != nullptr) x0 = __fadd_rn(x0, p.x0_bias[j]);
    out[j] = FromFloat<T>(__fmul_rn(Silu(z0), x0));
  }
  const float* y = p.y + r * p.y_row_stride;
  T* gated = out + p.mlp;
  auto gate = [&](int64_t j) {
    float z = LoadF<T>(p.z, proj + j);
    if (p.z_bias != nullptr) z = __fadd_rn(z, p.z_bias[j]);
    return __fmul_rn(y[j], Silu(z));
  };
  const int64_t g0 = static_cast<int64_t>(blockIdx.y) * p.group_size;
  const int64_t end = g0 + p.group_size;
  const int64_t first = g0 + threadIdx.x;
  constexpr int64_t kCachedSpan = int64_t{kGatedNormCached} * kGatedNormThreads;
  float cached[kGatedNormCached];
  float sq = 0.0f;
#pragma unroll
  for (int k = 0; k < kGatedNormCached; ++k) {
    const int64_t j = first + int64_t{k} * kGatedNormThreads;
    cached[k] = j < end ? gate(j) : 0.0f;
    if (j < end) sq = __fmaf_rn(cached[k], cached[k], sq);
  }
  for (int64_t j = first + kCachedSpan; j < end; j += kGatedNormThreads) {
    const float v = gate(j);
    sq = __fmaf_rn(v, v, sq);
  }
  float scale = 1.0f;
  if (p.weight != nullptr) {
    const float total = BlockSum(sq, scratch);
    scale = rsqrtf(__fadd_rn(__fdiv_rn(total, static_cast<float>(p.group_size)), p.eps));
  }
  auto store = [&](int64_t j, float v) {
    if (p.weight != nullptr) v = __fmul_rn(__fmul_rn(v, scale), p.weight[j]);
    gated[j] = FromFloat<T>(v);
  };
#pragma unroll
  for (int k = 0; k < kGatedNormCached; ++k) {
    const int64_t j = first + int64_t{k} * kGatedNormThreads;
    if (j < end) store(j, cached[k]);
  }
  for (int64_t j = first + kCachedSpan; j < end; j += kGatedNormThreads) store(j, gate(j));
}

template <typename T>
cudaError_t RunGatedNorm(const GatedNormParams& p, cudaStream_t stream) {
  if (p.rows == 0) return cudaSuccess;
  const dim3 grid(static_cast<unsigned>(p.rows), static_cast<unsigned>(p.dim / p.group_size));
  GatedNormKernel<T><<<grid, kGatedNormThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace mamba::kernels
