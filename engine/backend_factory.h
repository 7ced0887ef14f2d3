// Creates the backend a server or benchmark asked for ("auto" picks CUDA when a GPU is usable and
// the model's family has CUDA layers, else the CPU).
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/backend/backend.h"
#include "engine/model/model_loader.h"

namespace mamba {

// True when this binary was built with CUDA and a GPU is visible.
bool CudaAvailable();

// Creates a backend for `model`, taking ownership of its weights (moved out of `model`).
absl::StatusOr<std::unique_ptr<backend::Backend>> CreateBackend(
    const backend::BackendOptions& options, model::LoadedModel& model);

}  // namespace mamba
