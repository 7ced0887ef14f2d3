// Launcher for the fused residual add + RMSNorm (+ embedding gather); see rms_norm_params.h.
#pragma once

#include <cuda_runtime_api.h>

#include "absl/status/status.h"
#include "kernels/kernel_types.h"
#include "kernels/rms_norm_params.h"

namespace mamba::kernels {

// Checks shapes, pointers and dtype on the host, then launches on `stream`. `dtype` is the
// activation dtype T (f16 or bf16). Token ids and row indices are device data: the caller
// guarantees they are in range.
absl::Status LaunchRmsNorm(const RmsNormParams& params, KernelDType dtype, cudaStream_t stream);

}  // namespace mamba::kernels
