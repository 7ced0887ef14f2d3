// The Mamba-1 mixer on the CPU (DESIGN.md, "The model"): in_proj, causal conv + silu from each
// sequence's conv state, x_proj, dt_proj + softplus, the selective scan from each SSM state, the
// D skip, the silu(z) gate and out_proj, in fp32. Also FalconMamba's, which differs only in a
// weightless RMSNorm of dt_low, B and C after x_proj.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "engine/cpu/mixer.h"

namespace mamba::cpu {

// For the Mamba-1 and FalconMamba families. INVALID_ARGUMENT when d_conv or d_state exceed what
// the CPU kernels hold in registers.
absl::StatusOr<std::unique_ptr<Mixer>> MakeMamba1Mixer(const model::ModelConfig& config,
                                                       const model::ModelWeights& weights,
                                                       ThreadPool* pool);

}  // namespace mamba::cpu
