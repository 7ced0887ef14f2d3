// The CPU backend: the fp32 reference implementation of Mamba-1 and the oracle for every faster
// backend. Weights stay in the checkpoint's dtype and are widened in the inner loops.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "engine/backend.h"
#include "engine/backend_factory.h"
#include "engine/model_loader.h"

namespace mamba {

// Takes ownership of `model.weights`. num_slots 0 means 64.
absl::StatusOr<std::unique_ptr<Backend>> CreateCpuBackend(const BackendOptions& options,
                                                          LoadedModel& model);

}  // namespace mamba
