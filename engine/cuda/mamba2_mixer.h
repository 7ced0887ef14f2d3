// The Mamba-2 (SSD) mixer on the GPU, per layer:
//   in_proj GEMM -> [z0 | x0 | z | xBC | dt]  (z0 and x0: state-spaces checkpoints' extra MLP)
//   conv1d + silu over xBC from the slot's conv state (prefill: packed varlen; decode: by slot)
//   the multi-head state recurrence (kernels/mamba2_params.h) from the slot's SSM state -> y
//   the gated RMSNorm of y * silu(z) per group of d_ssm / n_groups channels (mamba_ssm's)
//   out_proj GEMM
// Prefill runs the exact recurrence token by token by default (the same function as SSD's chunked
// form, so the state after a prompt does not depend on how it was split), which also makes every
// result batch-invariant apart from the GEMMs (the deterministic mode's GEMM covers those).
// With SsdChunkedMinTokens() > 0, sequences of at least that many tokens in a prefill run the
// chunked matrix form on tensor cores instead (equal up to rounding; never in the deterministic
// mode).
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "engine/cuda/mixer.h"

namespace mamba::cuda {

// Process-wide (for A/B comparisons in mamba-bench, and tests): sequences of at least this many
// tokens in a prefill take the chunked SSD form; 0 (the default until measured on a GPU host)
// keeps the recurrence for every prefill.
inline constexpr int64_t kDefaultSsdChunkedMinTokens = 0;
void SetSsdChunkedMinTokens(int64_t tokens);
int64_t SsdChunkedMinTokens();

absl::StatusOr<std::unique_ptr<Mixer>> MakeMamba2Mixer(const MixerContext& context,
                                                       const model::ModelWeights& weights);

}  // namespace mamba::cuda
