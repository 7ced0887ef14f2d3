// The CUDA backend: weights in fp16/bf16 on one GPU, a pool of state slots in device memory,
// fused kernels and graph-captured decode steps. Only built with MAMBA_HAVE_CUDA.
//
// - Weights: matrices in the dtype of `model.weights` (f16 or bf16; f32 weights become bf16),
//   per-channel vectors in fp32. The residual stream is fp32.
// - States: options.state_dtype f32 (default) or bf16 (computed in fp32, stored in bf16); one slot
//   per sequence, allocated once: options.num_slots, or when 0 as many as gpu_memory_fraction of
//   the memory left after weights and workspaces holds (at most 4096).
// - Step: a batch where every sequence has one token runs as a CUDA graph captured per batch-size
//   bucket (1, 2, 4, ..., max_batch; padded with a scratch slot), its inputs copied in by the
//   graph itself; other batches run as packed variable-length prefill passes of up to 8192
//   tokens (longer inputs take several passes, with identical results). Sampling runs on the
//   device; only token ids, log-probabilities and (when asked) logits come back.
// - options.deterministic: every GEMM on the batch-invariant kernel, so a sequence's results do
//   not depend on the batch (bitwise, with f32 states).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/backend/backend.h"
#include "engine/model/model_loader.h"

namespace mamba::cuda {

// Number of CUDA devices usable by this process (0 when there is no driver or GPU).
int CudaDeviceCount();

// Whether this backend has layers for `config`'s family (Mamba-1 today; Mamba-2 and FalconMamba
// run on the CPU backend until they have CUDA layers).
bool CudaSupportsFamily(const model::ModelConfig& config);

// Uploads `model`'s weights (converted to fp16/bf16 as `model.weights` dtype says: f32 weights
// become bf16) and allocates the state pool, then releases the host copy of the weights (the
// backend owns the model from then on). Fails cleanly, never crashes, when the device lacks
// memory: RESOURCE_EXHAUSTED says what did not fit.
absl::StatusOr<std::unique_ptr<backend::Backend>> CreateCudaBackend(
    const backend::BackendOptions& options, model::LoadedModel& model);

// Time spent in one kernel family during a profiled step.
struct CudaKernelTime {
  std::string family;  // "gemm in_proj", "selective scan", ...
  double ms = 0.0;
  int launches = 0;
};

// Runs one step of `work` on `backend` (which must come from CreateCudaBackend) eagerly, with a
// CUDA event before every launch, and returns the time per kernel family in launch order
// ("copy in" / "copy out" are the host-device transfers). Results are those Step would give.
// For benchmarks: the events add a little time per launch, and graphs are not used.
absl::StatusOr<std::vector<CudaKernelTime>> ProfileCudaStep(backend::Backend& backend,
                                                            absl::Span<const backend::SeqWork> work,
                                                            absl::Span<backend::SeqResult> results);

}  // namespace mamba::cuda
