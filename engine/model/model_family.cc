#include "engine/model/model_family.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "engine/model/model_config.h"

namespace mamba::model {

std::string_view FamilyName(ModelFamily family) {
  switch (family) {
    case ModelFamily::kMamba1:
      return "mamba1";
  }
  return "unknown";
}

std::string_view FamilyModelType(ModelFamily family) {
  switch (family) {
    case ModelFamily::kMamba1:
      return "mamba";
  }
  return "unknown";
}

std::string_view FamilyArchitecture(ModelFamily family) {
  switch (family) {
    case ModelFamily::kMamba1:
      return "MambaForCausalLM";
  }
  return "unknown";
}

absl::StatusOr<ModelFamily> FamilyFromModelType(std::string_view model_type) {
  if (model_type == "mamba") return ModelFamily::kMamba1;
  return absl::InvalidArgumentError(
      absl::StrCat("model_type \"", std::string(model_type.substr(0, 64)),
                   "\" is not supported; this server runs Mamba-1 models (\"mamba\")"));
}

StateLayout StateLayoutOf(const ModelConfig& config) {
  StateLayout layout;
  layout.n_layer = config.n_layer;
  switch (config.family) {
    case ModelFamily::kMamba1:
      layout.conv_channels = config.d_inner;
      layout.conv_width = config.d_conv;
      layout.ssm_channels = config.d_inner;
      layout.ssm_state = config.d_state;
      break;
  }
  return layout;
}

}  // namespace mamba::model
