// Launcher for the fused decode state update; see selective_state_update_params.h.
#pragma once

#include <cuda_runtime_api.h>

#include "absl/status/status.h"
#include "kernels/kernel_types.h"
#include "kernels/selective_state_update_params.h"

namespace mamba::kernels {

// Checks shapes and dtypes on the host and launches on `stream`. Exactly one dt source must be
// given: `dt`, or `dt_low` with `dt_proj_weight`. Slots (distinct) are device data the caller
// guarantees.
absl::Status LaunchSelectiveStateUpdate(const SelectiveStateUpdateParams& params,
                                        KernelDType act_dtype, KernelDType state_dtype,
                                        cudaStream_t stream);

// Rows per block of the plain state-update kernel (large batches): 4, 8 or 16, or 0 (the
// default): by size (kStateUpdateFourRowsMinElements). Process-wide, for A/B measurements; takes
// effect for launches (and graphs captured) after it.
absl::Status SetStateUpdateRowsPerBlock(int rows);
int StateUpdateRowsPerBlock();

}  // namespace mamba::kernels
