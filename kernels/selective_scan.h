// Launcher for the fused prefill selective scan; see selective_scan_params.h.
#pragma once

#include <cuda_runtime_api.h>

#include "absl/status/status.h"
#include "kernels/kernel_types.h"
#include "kernels/selective_scan_params.h"

namespace mamba::kernels {

// Checks shapes, strides and dtypes on the host, picks states_per_thread when it is 0 and the
// segments (ChooseScanSegments), and launches on `stream`. cu_seqlens (non-decreasing, every
// sequence non-empty) and slots (distinct) are device data the caller guarantees. `act_dtype` is T
// (f16/bf16), `state_dtype` f32 or bf16.
absl::Status LaunchSelectiveScan(const SelectiveScanParams& params, KernelDType act_dtype,
                                 KernelDType state_dtype, cudaStream_t stream);

// The states_per_thread the launcher picks for `params`: the process-wide override when one is
// set and exists for params.dstate; else 8 when d_state <= 16 and 8 per thread fill at least
// two thirds of a wave of their resident blocks on the current device; else 4.
int ChooseScanStatesPerThread(const SelectiveScanParams& params);

// Process-wide layout override for launches with states_per_thread 0 (benchmarks and A/B runs):
// 0 (by shape, the default), 1, 4 or 8; layouts other than 4 apply to d_state <= 16 only.
absl::Status SetScanStatesPerThread(int states_per_thread);

// Sets params.segment_len and max_segments for the current device: a time-parallel scan when
// segments are allowed and the launch has too few channels x sequences to fill the GPU (the
// longest sequence is cut into segments of at least 128 tokens, whole chunks, as many as the
// scratch holds), else 0 (sequential).
void ChooseScanSegments(SelectiveScanParams& params);

}  // namespace mamba::kernels
