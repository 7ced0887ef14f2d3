// The largest magnitude of a half-precision matrix, for the CUDA backend's range probe (the
// calibration of the per-layer output scales, engine/cuda/cuda_backend.cc): folds
// max |x[r, c]| over [rows, cols] (row stride `row_stride`) into *out with an atomic max, so one
// accumulator can gather several launches. Magnitudes are compared as their fp32 bit patterns
// (non-negative floats order like unsigned integers), so +inf exceeds every finite value and a
// NaN exceeds +inf: a non-finite element leaves a non-finite result.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/kernel_types.h"

namespace mamba::kernels {

struct MaxAbsParams {
  int64_t rows = 0;
  int64_t cols = 0;
  const void* __restrict__ x = nullptr;  // [rows, row_stride] T
  int64_t row_stride = 0;
  float* __restrict__ out = nullptr;  // one fp32 accumulator, >= 0 before the first launch
};

// Defined in max_abs.cu; the caller has checked the params.
cudaError_t RunMaxAbs(const MaxAbsParams& params, KernelDType act_dtype, cudaStream_t stream);

}  // namespace mamba::kernels
