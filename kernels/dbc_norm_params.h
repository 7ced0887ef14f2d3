// FalconMamba's weightless RMS normalization of x_proj's output: per row, each of the segments
// [0, dt_rank), [dt_rank, dt_rank + dstate) and [dt_rank + dstate, dt_rank + 2 * dstate) (dt_low,
// B and C) becomes v * rsqrt(mean(v^2) + eps), computed in fp32 and stored back in place in the
// activation dtype (transformers' rms_forward). One warp per segment, a fixed reduction order.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/kernel_types.h"

namespace mamba::kernels {

struct DbcNormParams {
  int64_t rows = 0;
  int64_t dt_rank = 0;
  int64_t dstate = 0;
  void* __restrict__ dbc = nullptr;  // [rows, row_stride] T, normalized in place
  int64_t row_stride = 0;
  float eps = 1e-6f;
};

// Defined in dbc_norm.cu; the caller has checked the params.
cudaError_t RunDbcNorm(const DbcNormParams& params, KernelDType act_dtype, cudaStream_t stream);

}  // namespace mamba::kernels
