// FalconMamba's normalization of dt_low, B and C (see dbc_norm.h).
#include "kernels/dbc_norm_params.h"
#include "kernels/device_math.cuh"

namespace mamba::kernels {
namespace {

template <typename T>
__global__ void __launch_bounds__(96) DbcNormKernel(DbcNormParams p) {
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int64_t begin = warp == 0 ? 0 : warp == 1 ? p.dt_rank : p.dt_rank + p.dstate;
  const int64_t size = warp == 0 ? p.dt_rank : p.dstate;
  T* row = static_cast<T*>(p.dbc) + static_cast<int64_t>(blockIdx.x) * p.row_stride + begin;
  float sq = 0.0f;
  for (int64_t j = lane; j < size; j += 32) {
    const float v = ToFloat(row[j]);
    sq = __fmaf_rn(v, v, sq);
  }
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) {
    sq = __fadd_rn(sq, __shfl_xor_sync(0xffffffffu, sq, offset));
  }
  const float scale = rsqrtf(__fadd_rn(__fdiv_rn(sq, static_cast<float>(size)), p.eps));
  for (int64_t j = lane; j < size; j += 32) {
    row[j] = FromFloat<T>(__fmul_rn(ToFloat(row[j]), scale));
  }
}

}  // namespace

cudaError_t RunDbcNorm(const DbcNormParams& p, KernelDType act, cudaStream_t stream) {
  if (p.rows == 0) return cudaSuccess;
  const unsigned grid = static_cast<unsigned>(p.rows);
  if (act == KernelDType::kF16) {
    DbcNormKernel<__half><<<grid, 96, 0, stream>>>(p);
  } else {
    DbcNormKernel<__nv_bfloat16><<<grid, 96, 0, stream>>>(p);
  }
  return cudaGetLastError();
}

}  // namespace mamba::kernels
