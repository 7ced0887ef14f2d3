// The Mamba-2 (SSD) mixer on the CPU, in fp32, as mamba_ssm's Mamba2 layer computes it: in_proj
// into [z0, x0] (a gated MLP, state-spaces checkpoints only), z, xBC and dt; the causal conv +
// silu over xBC from each sequence's conv state; per head dt = clamp(softplus(dt + dt_bias),
// time_step_limit), decay exp(dt * A) with one scalar A per head; per channel of the head the
// state update h = decay * h + (dt * x) * B and y = C . h + D * x, with B and C those of the
// head's group; the gated RMSNorm of y * silu(z) per group of d_ssm / n_groups channels (or
// y * silu(z) without the norm); silu(z0) * x0 in front; out_proj.
//
// Prefill runs the exact recurrence token by token (not SSD's chunked matrix form): the state
// after a prompt is the same either way, and each row depends only on its own sequence, so
// batches and chunks give bit-identical results, as for Mamba-1 (cpu_model.h).
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "engine/cpu/mixer.h"

namespace mamba::cpu {

// INVALID_ARGUMENT when d_conv or d_state exceed what the CPU kernels support.
absl::StatusOr<std::unique_ptr<Mixer>> MakeMamba2Mixer(const model::ModelConfig& config,
                                                       const model::ModelWeights& weights,
                                                       ThreadPool* pool);

}  // namespace mamba::cpu
