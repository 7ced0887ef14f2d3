// The CUDA backend: weights in fp16/bf16 on one GPU, a pool of state slots in device memory,
// fused kernels and graph-captured decode steps. Only built with MAMBA_HAVE_CUDA.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "engine/backend.h"
#include "engine/backend_factory.h"
#include "engine/model_loader.h"

namespace mamba {

// Number of CUDA devices usable by this process (0 when there is no driver or GPU).
int CudaDeviceCount();

// Uploads `model`'s weights (converted to fp16/bf16 as `model.weights` dtype says: f32 weights
// become bf16) and allocates the state pool. Fails cleanly, never crashes, when the device lacks
// memory.
absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(const BackendOptions& options,
                                                           LoadedModel& model);

}  // namespace mamba
