// The model families the engine serves, and what a family decides that the rest of the engine
// must not compute for itself: which config.json describes it and the recurrent state a sequence
// of it carries. The scheduler, sessions, exports and state pools see only a StateLayout; each
// backend builds a family's layers behind its own mixer interface (cpu/mixer.h, cuda/mixer.h).
//
// Families (docs/models.md has the details and the references each is checked against):
//   Mamba-1      HF MambaForCausalLM, model_type "mamba"; the original state-spaces format.
//   FalconMamba  HF FalconMambaForCausalLM, model_type "falcon_mamba": Mamba-1 with a weightless
//                RMSNorm of B, C and the dt input after x_proj.
//   Mamba-2      HF Mamba2ForCausalLM, model_type "mamba2"; the state-spaces format with
//                ssm_cfg.layer "Mamba2" (Mamba-Codestral, state-spaces/mamba2-*): the SSD layer,
//                one scalar decay per head, B and C shared by a group of heads, a gated RMSNorm.
#pragma once

#include <cstdint>
#include <string_view>

#include "absl/status/statusor.h"

namespace mamba::model {

struct ModelConfig;

enum class ModelFamily : uint8_t { kMamba1, kMamba2, kFalconMamba };

// "mamba1", "mamba2", "falcon_mamba".
const char* FamilyName(ModelFamily family);
// The Hugging Face model_type of the family's config.json ("mamba", "mamba2", "falcon_mamba") and
// its class name ("MambaForCausalLM", ...).
const char* FamilyModelType(ModelFamily family);
const char* FamilyArchitecture(ModelFamily family);
// The family whose config.json says `model_type`; INVALID_ARGUMENT lists the supported ones.
absl::StatusOr<ModelFamily> FamilyFromModelType(std::string_view model_type);

// One sequence's recurrent state, per layer: a conv state (the last conv_width - 1 inputs of each
// of conv_channels channels, oldest first) and an SSM state (ssm_channels rows of ssm_state
// values). A whole state (a slot, a HostState, an export payload) holds every layer's conv state,
// then every layer's SSM state, in one dtype.
struct StateLayout {
  int32_t n_layer = 0;
  int64_t conv_channels = 0;
  int32_t conv_width = 0;
  int64_t ssm_channels = 0;
  int64_t ssm_state = 0;

  int64_t conv_history() const { return conv_width - 1; }
  int64_t conv_elements_per_layer() const { return conv_channels * conv_history(); }
  int64_t ssm_elements_per_layer() const { return ssm_channels * ssm_state; }
  // Element offsets of layer `layer`'s conv and SSM states within a whole state.
  int64_t conv_offset(int layer) const { return layer * conv_elements_per_layer(); }
  int64_t ssm_offset(int layer) const {
    return n_layer * conv_elements_per_layer() + layer * ssm_elements_per_layer();
  }
  // Elements of a whole state.
  int64_t elements() const {
    return n_layer * (conv_elements_per_layer() + ssm_elements_per_layer());
  }

  bool operator==(const StateLayout&) const = default;
};

// The state layout of `config`'s family. Mamba-1 and FalconMamba: conv and SSM over d_inner
// channels, conv width d_conv, d_state values per channel. Mamba-2: the conv over xBC (d_ssm +
// 2 * n_groups * d_state channels); the SSM state is n_heads x head_dim rows (d_ssm) of d_state
// values, head-major, as mamba_ssm and transformers hold it.
StateLayout StateLayoutOf(const ModelConfig& config);

}  // namespace mamba::model
