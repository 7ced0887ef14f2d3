#include "engine/model/model_family.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "engine/model/model_config.h"

namespace mamba::model {

const char* FamilyName(ModelFamily family) {
  switch (family) {
    case ModelFamily::kMamba1:
      return "mamba1";
    case ModelFamily::kMamba2:
      return "mamba2";
    case ModelFamily::kFalconMamba:
      return "falcon_mamba";
  }
  return "unknown";
}

const char* FamilyModelType(ModelFamily family) {
  switch (family) {
    case ModelFamily::kMamba1:
      return "mamba";
    case ModelFamily::kMamba2:
      return "mamba2";
    case ModelFamily::kFalconMamba:
      return "falcon_mamba";
  }
  return "unknown";
}

const char* FamilyArchitecture(ModelFamily family) {
  switch (family) {
    case ModelFamily::kMamba1:
      return "MambaForCausalLM";
    case ModelFamily::kMamba2:
      return "Mamba2ForCausalLM";
    case ModelFamily::kFalconMamba:
      return "FalconMambaForCausalLM";
  }
  return "unknown";
}

absl::StatusOr<ModelFamily> FamilyFromModelType(std::string_view model_type) {
  for (ModelFamily f : {ModelFamily::kMamba1, ModelFamily::kMamba2, ModelFamily::kFalconMamba}) {
    if (model_type == FamilyModelType(f)) return f;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("model_type \"", std::string(model_type.substr(0, 64)),
                   "\" is not supported; allowed: \"mamba\" (Mamba-1), \"mamba2\" (Mamba-2), "
                   "\"falcon_mamba\" (FalconMamba)"));
}

StateLayout StateLayoutOf(const ModelConfig& config) {
  StateLayout layout;
  layout.n_layer = config.n_layer;
  layout.conv_width = config.d_conv;
  layout.ssm_state = config.d_state;
  switch (config.family) {
    case ModelFamily::kMamba1:
    case ModelFamily::kFalconMamba:
      layout.conv_channels = config.d_inner;
      layout.ssm_channels = config.d_inner;
      break;
    case ModelFamily::kMamba2:
      layout.conv_channels = config.conv_dim();
      layout.ssm_channels = config.d_ssm();
      break;
  }
  return layout;
}

}  // namespace mamba::model
