// CUDA-only parts of mamba-bench, implemented in cuda_bench.cu when CUDA is built: the fused
// selective-scan kernel alone at PERF.md's shapes, and a per-kernel time breakdown of one decode
// step and one prefill. Each returns a JSON object (as text) and prints a small table to stdout.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "engine/backend/backend.h"

namespace mamba::bench {

// Times the prefill scan kernel at d_inner x length x batch shapes (PERF.md's table), beside the
// official kernel's published figures, with effective bandwidth.
absl::StatusOr<std::string> RunScanKernelBench();

// What one link of a chain of dependent kernels costs in a CUDA graph when the kernels do
// nothing (1, 132 and 1056 blocks; with and without programmatic dependent launch): the floor
// under a decode step made of many small kernels.
absl::StatusOr<std::string> RunLaunchProbe();

// Per-kernel breakdown (time per kernel family, share of the step) of one decode step at `batch`
// and one prefill of `prefill_tokens` tokens on a CUDA backend.
absl::StatusOr<std::string> RunCudaBreakdown(backend::Backend& backend, int batch,
                                             int prefill_tokens);

// The persistent decode kernel's own timeline (kernels/decode_step.h's trace): EnableDecodeTrace
// before the backend is created (decode graphs capture the buffer), DecodeTraceReport after the
// timed steps: per phase (in_proj, x_proj, state update, out_proj) the blocks' working time and
// the barrier's latency, averaged over the layers of the last step.
absl::Status EnableDecodeTrace(int n_layer);
// Starts (true) or stops (false) the CUDA profiler's capture range (cudaProfilerStart/Stop).
void SetProfilerCapture(bool on);
absl::StatusOr<std::string> DecodeTraceReport(int n_layer);

}  // namespace mamba::bench
