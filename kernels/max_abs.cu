// The largest-magnitude reduction (see max_abs_params.h).
#include <algorithm>

#include "kernels/device_math.cuh"
#include "kernels/max_abs_params.h"

namespace mamba::kernels {
namespace {

constexpr int kMaxAbsThreads = 256;

template <typename T>
__global__ void __launch_bounds__(kMaxAbsThreads) MaxAbsKernel(MaxAbsParams p) {
  const int64_t n = p.rows * p.cols;
  unsigned int best = 0;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / p.cols;
    const float v = ToFloat(static_cast<const T*>(p.x)[r * p.row_stride + (i - r * p.cols)]);
    best = max(best, __float_as_uint(v) & 0x7fffffffu);
  }
  best = __reduce_max_sync(0xffffffffu, best);
  if (threadIdx.x % 32 == 0 && best != 0) {
    atomicMax(reinterpret_cast<unsigned int*>(p.out), best);
  }
}

}  // namespace

cudaError_t RunMaxAbs(const MaxAbsParams& p, KernelDType act, cudaStream_t stream) {
  const int64_t n = p.rows * p.cols;
  if (n == 0) return cudaSuccess;
  const unsigned grid =
      static_cast<unsigned>(std::min<int64_t>((n + kMaxAbsThreads - 1) / kMaxAbsThreads, 1024));
  if (act == KernelDType::kF16) {
    MaxAbsKernel<__half><<<grid, kMaxAbsThreads, 0, stream>>>(p);
  } else {
    MaxAbsKernel<__nv_bfloat16><<<grid, kMaxAbsThreads, 0, stream>>>(p);
  }
  return cudaGetLastError();
}

}  // namespace mamba::kernels
