// Creates the backend a server or benchmark asked for ("auto" picks CUDA when a GPU is usable).
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/backend.h"
#include "engine/model_loader.h"

namespace mamba {

struct BackendOptions {
  std::string kind = "auto";        // auto | cpu | cuda
  int32_t device = 0;               // GPU index (cuda)
  int32_t num_slots = 0;            // 0: the backend decides (cpu: 64; cuda: from memory)
  int32_t cpu_threads = 0;          // 0: all cores (cpu)
  std::string state_dtype = "f32";  // f32 | bf16 (cuda)
  double gpu_memory_fraction = 0.9; // of free memory after the weights, for slots (cuda)
  int32_t max_batch = 256;          // largest batch the backend must step at once (cuda graphs)
  bool deterministic = false;       // batch-invariant kernels (cuda)
};

// True when this binary was built with CUDA and a GPU is visible.
bool CudaAvailable();

// Creates a backend for `model`, taking ownership of its weights (moved out of `model`).
absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(const BackendOptions& options,
                                                       LoadedModel& model);

}  // namespace mamba
