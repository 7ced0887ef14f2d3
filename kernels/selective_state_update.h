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
// default): 4 or 8, whichever fills its last wave of blocks better. Process-wide, for A/B
// measurements; takes effect for launches (and graphs captured) after it.
absl::Status SetStateUpdateRowsPerBlock(int rows);
int StateUpdateRowsPerBlock();

// The pipelined kernel for large batches (selective_state_update_params.h): -1 off (the
// one-pass kernel of StateUpdateRowsPerBlock), 0 the default (on for bf16 states, with
// kStateUpdatePipeDefaultBlocksPerSm blocks per SM, unless rows per block are forced; off for
// fp32), 1..32 on for that many blocks per SM.
// Process-wide, for A/B measurements; takes effect for launches (and graphs captured) after it.
absl::Status SetStateUpdatePipeline(int blocks_per_sm);
int StateUpdatePipeline();

}  // namespace mamba::kernels
