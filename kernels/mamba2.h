// Launchers for the Mamba-2 kernels; see mamba2_params.h.
#pragma once

#include <cuda_runtime_api.h>

#include "absl/status/status.h"
#include "kernels/kernel_types.h"
#include "kernels/mamba2_params.h"

namespace mamba::kernels {

// Checks shapes and dtypes on the host and launches on `stream`. Slots (distinct) and cu_seqlens
// are device data the caller guarantees.
absl::Status LaunchSsdScan(const SsdScanParams& params, KernelDType act_dtype,
                           KernelDType state_dtype, cudaStream_t stream);
absl::Status LaunchGatedNorm(const GatedNormParams& params, KernelDType act_dtype,
                             cudaStream_t stream);

}  // namespace mamba::kernels
