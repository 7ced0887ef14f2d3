// Mamba-2 kernel bodies (see mamba2_params.h). Included by the per-dtype instantiation files.
#pragma once

#include "kernels/device_math.cuh"
#include "kernels/mamba2_params.h"

namespace mamba::kernels {

inline constexpr int kSsdChannelsPerBlock = 32;
inline constexpr int kSsdThreads = kSsdChannelsPerBlock * kSsdLanesPerChannel;
inline constexpr int kGatedNormThreads = 256;

template <typename T>
__device__ __forceinline__ float LoadF(const void* base, int64_t index) {
  return ToFloat(static_cast<const T*>(base)[index]);
}

// One block: kSsdChannelsPerBlock channels of one head of one sequence, every token in order. A
// channel's dstate elements are split over kSsdLanesPerChannel consecutive lanes, kPer each
// (lane l holds n = l * kPer .. l * kPer + kPer - 1).
template <typename T, typename S, int kPer>
__global__ void __launch_bounds__(kSsdThreads) SsdScanKernel(SsdScanParams p) {
  const int64_t s = blockIdx.z;
  const int64_t h = blockIdx.y;
  const int lane = threadIdx.x % kSsdLanesPerChannel;
  const int64_t ch = static_cast<int64_t>(blockIdx.x) * kSsdChannelsPerBlock +
                     threadIdx.x / kSsdLanesPerChannel;
  const bool valid = ch < p.head_dim;
  const int64_t t0 = p.cu_seqlens != nullptr ? p.cu_seqlens[s] : s;
  const int64_t t1 = p.cu_seqlens != nullptr ? p.cu_seqlens[s + 1] : s + 1;
  if (t0 >= t1) return;
  const int64_t g = h / (p.n_heads / p.n_groups);
  const int64_t e = h * p.head_dim + ch;  // the channel among d_ssm
  const int64_t n0 = static_cast<int64_t>(lane) * kPer;

  S* state = static_cast<S*>(p.state) + static_cast<int64_t>(p.slots[s]) * p.state_slot_stride +
             e * p.dstate;
  float hs[kPer];
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    hs[i] = valid && n0 + i < p.dstate ? ToFloat(state[n0 + i]) : 0.0f;
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
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      if (n0 + i < p.dstate) {
        const float bv = LoadF<T>(p.b, row + i);
        const float cv = LoadF<T>(p.c, row + i);
        hs[i] = __fmaf_rn(decay, hs[i], __fmul_rn(dtx, bv));
        acc = __fmaf_rn(hs[i], cv, acc);
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
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      if (n0 + i < p.dstate) state[n0 + i] = FromFloat<S>(hs[i]);
    }
  }
}

template <typename T, typename S>
cudaError_t RunSsdScanTyped(const SsdScanParams& p, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((p.head_dim + kSsdChannelsPerBlock - 1) /
                                        kSsdChannelsPerBlock),
                  static_cast<unsigned>(p.n_heads), static_cast<unsigned>(p.num_seqs));
  const int per = static_cast<int>((p.dstate + kSsdLanesPerChannel - 1) / kSsdLanesPerChannel);
  if (per <= 2) {
    SsdScanKernel<T, S, 2><<<grid, kSsdThreads, 0, stream>>>(p);
  } else if (per <= 4) {
    SsdScanKernel<T, S, 4><<<grid, kSsdThreads, 0, stream>>>(p);
  } else if (per <= 8) {
    SsdScanKernel<T, S, 8><<<grid, kSsdThreads, 0, stream>>>(p);
  } else if (per <= 16) {
    SsdScanKernel<T, S, 16><<<grid, kSsdThreads, 0, stream>>>(p);
  } else {
    SsdScanKernel<T, S, 32><<<grid, kSsdThreads, 0, stream>>>(p);
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
  for (int offset = 16; offset > 0; offset /= 2) v = __fadd_rn(v, __shfl_xor_sync(0xffffffffu, v, offset));
  const int warp = threadIdx.x / 32;
  __syncthreads();  // scratch may still be read by an earlier call
  if (threadIdx.x % 32 == 0) scratch[warp] = v;
  __syncthreads();
  float total = 0.0f;
  for (int w = 0; w < kGatedNormThreads / 32; ++w) total = __fadd_rn(total, scratch[w]);
  return total;
}

template <typename T>
__global__ void __launch_bounds__(kGatedNormThreads) GatedNormKernel(GatedNormParams p) {
  __shared__ float scratch[kGatedNormThreads / 32];
  const int64_t r = blockIdx.x;
  T* out = static_cast<T*>(p.out) + r * p.out_row_stride;
  const int64_t proj = r * p.proj_row_stride;
  for (int64_t j = threadIdx.x; j < p.mlp; j += kGatedNormThreads) {
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
  for (int64_t g0 = 0; g0 < p.dim; g0 += p.group_size) {
    float scale = 1.0f;
    if (p.weight != nullptr) {
      float sq = 0.0f;
      for (int64_t j = g0 + threadIdx.x; j < g0 + p.group_size; j += kGatedNormThreads) {
        const float v = gate(j);
        sq = __fmaf_rn(v, v, sq);
      }
      const float total = BlockSum(sq, scratch);
      scale = rsqrtf(__fadd_rn(__fdiv_rn(total, static_cast<float>(p.group_size)), p.eps));
    }
    for (int64_t j = g0 + threadIdx.x; j < g0 + p.group_size; j += kGatedNormThreads) {
      float v = gate(j);
      if (p.weight != nullptr) v = __fmul_rn(__fmul_rn(v, scale), p.weight[j]);
      gated[j] = FromFloat<T>(v);
    }
  }
}

template <typename T>
cudaError_t RunGatedNorm(const GatedNormParams& p, cudaStream_t stream) {
  if (p.rows == 0) return cudaSuccess;
  GatedNormKernel<T><<<static_cast<unsigned>(p.rows), kGatedNormThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace mamba::kernels
