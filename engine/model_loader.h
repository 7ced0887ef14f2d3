// Turns a model spec into a loaded model: a Hugging Face checkpoint folder (config.json plus
// model.safetensors or a sharded model.safetensors.index.json) or "synthetic:NAME".
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/dtype.h"
#include "engine/model_config.h"
#include "engine/model_weights.h"

namespace mamba {

struct LoadedModel {
  std::string name;        // folder base name or "synthetic:130m"
  std::string source;      // the folder path, or the synthetic spec
  ModelConfig config;
  ModelWeights weights;
  std::string tokenizer_path;  // tokenizer.json beside the checkpoint, "" when there is none
  // Identifies the weights exactly (a hash of the config and tensor bytes' digest); session
  // exports carry it so that a state is never imported into a different model.
  std::string identity;
};

struct LoadOptions {
  // Convert all tensors to this dtype at load; nullopt keeps the checkpoint's dtypes.
  std::optional<DType> dtype;
  // Seed for synthetic weights.
  uint64_t seed = 0;
};

// Loads `spec`. Nothing is half-loaded: on any error the status names the file, the tensor and
// what was expected, and no model is returned.
absl::StatusOr<LoadedModel> LoadModel(const std::string& spec, const LoadOptions& options = {});

// Names accepted after "synthetic:": tiny, 130m, 370m, 790m, 1.4b, 2.8b.
std::vector<std::string> SyntheticModelNames();
// The config of synthetic model `name` (vocab 50280 except tiny).
absl::StatusOr<ModelConfig> SyntheticConfig(const std::string& name);
// Builds weights for `config` from `seed`, initialized like a real Mamba (A_log = log(1..d_state),
// dt bias from the dt range, small normal matrices), in `dtype`.
absl::StatusOr<ModelWeights> MakeSyntheticWeights(const ModelConfig& config, uint64_t seed,
                                                   DType dtype);

}  // namespace mamba
