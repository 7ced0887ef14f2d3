// Launcher for the largest-magnitude reduction; see max_abs_params.h.
#pragma once

#include <cuda_runtime_api.h>

#include "absl/status/status.h"
#include "kernels/kernel_types.h"
#include "kernels/max_abs_params.h"

namespace mamba::kernels {

absl::Status LaunchMaxAbs(const MaxAbsParams& params, KernelDType act_dtype, cudaStream_t stream);

}  // namespace mamba::kernels
