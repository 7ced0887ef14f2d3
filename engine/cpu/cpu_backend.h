// The CPU backend: the fp32 reference implementation of Mamba-1 and the oracle for every faster
// backend. Weights stay in the checkpoint's dtype and are widened in the inner loops.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "engine/backend/backend.h"
#include "engine/model/model_loader.h"

namespace mamba::cpu {

// Takes ownership of `model.weights`. num_slots 0 means 64.
absl::StatusOr<std::unique_ptr<backend::Backend>> CreateCpuBackend(
    const backend::BackendOptions& options, model::LoadedModel& model);

}  // namespace mamba::cpu
