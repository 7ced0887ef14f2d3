// Launcher for FalconMamba's normalization of dt_low, B and C; see dbc_norm_params.h.
#pragma once

#include <cuda_runtime_api.h>

#include "absl/status/status.h"
#include "kernels/dbc_norm_params.h"
#include "kernels/kernel_types.h"

namespace mamba::kernels {

absl::Status LaunchDbcNorm(const DbcNormParams& params, KernelDType act_dtype,
                           cudaStream_t stream);

}  // namespace mamba::kernels
