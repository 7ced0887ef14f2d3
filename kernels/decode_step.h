// Launcher of the persistent decode kernel (see decode_step_params.h for what it computes).
#pragma once

#include <cuda_runtime_api.h>

#include "absl/status/status.h"
#include "kernels/decode_step_params.h"
#include "kernels/kernel_types.h"

namespace mamba::kernels {

// When decode steps run on the persistent kernel (process-wide; kAuto by default).
//   kAuto:   where it measured faster than the layered kernels on the H100: steps of one row
//            (130m to 1.4b: 4-16% faster), on sm_90+. At 2-4 rows it is slower (each row adds
//            work to the latency-bound phases between barriers; bench/RESULTS.md has the table).
//   kAlways: every step it supports (tests, measurements; any GPU with cooperative launch).
//   kOff:    never.
enum class PersistentDecode { kOff, kAuto, kAlways };

// Whether a decode step of these shapes (p.rows, the model dimensions; pointers are not looked at)
// runs as one persistent kernel: the policy chooses it and the current device can run it.
// Callers run the layered kernels otherwise.
bool DecodeStepSupported(const DecodeStepParams& p, KernelDType act, KernelDType state);

// Launches the whole decode step of p.rows rows (every pointer of `p` set; see the params header).
absl::Status LaunchDecodeStep(const DecodeStepParams& p, KernelDType act, KernelDType state,
                              cudaStream_t stream);

// Diagnostics: while set, launches (and graph captures) made afterwards record per-block
// timestamps into `device_buffer` (see DecodeStepParams::trace) when it holds at least
// blocks x kDecodeStepTracePerLayer x n_layer entries; the buffer then holds the latest step's.
// Null to stop.
void SetDecodeStepTrace(unsigned long long* device_buffer, int64_t entries);

// The process-wide policy: for A/B measurements and as an escape hatch. Takes effect for forward
// passes and graph captures made after the call.
PersistentDecode PersistentDecodePolicy();
void SetPersistentDecode(PersistentDecode policy);

}  // namespace mamba::kernels
