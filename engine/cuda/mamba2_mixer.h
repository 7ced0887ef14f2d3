// The Mamba-2 (SSD) mixer on the GPU, per layer:
//   in_proj GEMM -> [z0 | x0 | z | xBC | dt]  (z0 and x0: state-spaces checkpoints' extra MLP)
//   conv1d + silu over xBC from the slot's conv state (prefill: packed varlen; decode: by slot)
//   the multi-head state recurrence (kernels/mamba2_params.h) from the slot's SSM state -> y
//   the gated RMSNorm of y * silu(z) per group of d_ssm / n_groups channels (mamba_ssm's)
//   out_proj GEMM
// Prefill: sequences of SsdChunkedMinTokens() tokens or more (64 by default) run SSD's chunked
// matrix form on tensor cores (1.9-2.3x the recurrence's prefill on an H100, bench/RESULTS.md),
// equal to the recurrence up to rounding, so their state depends on how a prompt was split;
// shorter ones, and every sequence in the deterministic mode, run the exact recurrence token by
// token (the state after a prompt then does not depend on the split, and every result is
// batch-invariant apart from the GEMMs, which the deterministic mode's GEMM covers).
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "engine/cuda/mixer.h"

namespace mamba::cuda {

// Process-wide (for A/B comparisons in mamba-bench, and tests): sequences of at least this many
// tokens in a prefill take the chunked SSD form; 0 keeps the recurrence for every prefill. 64:
// one chunk, from where a whole chunk's matrix products cost less than 64 dependent token steps.
inline constexpr int64_t kDefaultSsdChunkedMinTokens = 64;
void SetSsdChunkedMinTokens(int64_t tokens);
int64_t SsdChunkedMinTokens();

absl::StatusOr<std::unique_ptr<Mixer>> MakeMamba2Mixer(const MixerContext& context,
                                                       const model::ModelWeights& weights);

}  // namespace mamba::cuda
