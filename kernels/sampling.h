// Launcher for device sampling; see sampling_params.h.
#pragma once

#include <cuda_runtime_api.h>

#include "absl/status/status.h"
#include "kernels/sampling_params.h"

namespace mamba::kernels {

// Checks the launch's sizes and pointers on the host and launches one block per row. Row
// parameters and penalty lists are device data: the caller has validated them
// (engine/sampling/sampler.h's ValidateSamplingParams; penalty ids in [0, vocab), additive penalty
// ids distinct per row). Each sampled row's SamplingResult::status says whether its logits could be
// sampled.
absl::Status LaunchSampling(const SamplingLaunch& launch, cudaStream_t stream);

// out[i] = SampleUniform(seeds[i], positions[i]) computed on the device.
absl::Status LaunchSampleUniformValues(const uint64_t* seeds, const uint64_t* positions,
                                       double* out, int64_t n, cudaStream_t stream);

}  // namespace mamba::kernels
