// The shape and hyper-parameters of a model, read from a Hugging Face config.json or built in for
// the synthetic models. The family (model_family.h) says which layers the fields describe; the
// state a sequence carries comes from StateLayoutOf(config), never from the fields directly.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/model/model_family.h"

namespace mamba::model {

struct ModelConfig {
  ModelFamily family = ModelFamily::kMamba1;  // model_type
  int32_t d_model = 768;                      // hidden_size
  int32_t n_layer = 32;                       // num_hidden_layers
  int32_t d_state = 16;                       // state_size
  int32_t expand = 2;                         // expand
  int32_t d_inner = 1536;      // intermediate_size (expand * hidden_size unless given)
  int32_t d_conv = 4;          // conv_kernel
  int32_t dt_rank = 48;        // time_step_rank ("auto" = ceil(hidden_size / 16))
  int32_t vocab_size = 50280;  // vocab_size
  bool use_bias = false;       // in_proj / out_proj biases
  bool use_conv_bias = true;   // conv1d bias
  bool tie_word_embeddings = true;
  bool residual_in_fp32 = true;
  float layer_norm_epsilon = 1e-5f;
  // Special token ids; -1 when the config sets them to null (no such token).
  int32_t bos_token_id = 0;
  int32_t eos_token_id = 0;
  int32_t pad_token_id = 0;
  // Initialization ranges, used only to build synthetic models like real ones.
  float time_step_min = 0.001f;
  float time_step_max = 0.1f;
  float time_step_floor = 1e-4f;

  bool operator==(const ModelConfig&) const = default;

  // Checks internal consistency: positive sizes within sane bounds (so that tensor byte counts
  // cannot overflow), dt_rank <= d_inner, token ids in [-1, vocab_size), epsilon > 0, a valid dt
  // range. INVALID_ARGUMENT names the field and the allowed values.
  absl::Status Validate() const;

  // Parameters in the model (embedding counted once when tied).
  int64_t NumParameters() const;

  // One line, e.g. "24 layers x 768, d_inner 1536, d_state 16, dt_rank 48, d_conv 4, vocab 50280,
  // tied".
  std::string Summary() const;
};

// Parses the text of a Hugging Face config.json for MambaForCausalLM, applying HF's MambaConfig
// defaults to absent fields and deriving intermediate_size (int(expand * hidden_size)) and
// time_step_rank ("auto" = ceil(hidden_size / 16)). Also accepts the original state-spaces
// format (d_model, n_layer, vocab_size rounded up to pad_vocab_size_multiple, ssm_cfg{d_state,
// d_conv, expand, dt_rank, conv_bias, bias}, rms_norm, residual_in_fp32, tie_embeddings), chosen
// when the object has d_model and no hidden_size. Unknown keys are ignored; a model_type other
// than "mamba" (e.g. "mamba2") is rejected. `source` names the file in error messages, which
// also name the field and what is allowed. The config is validated before it is returned.
absl::StatusOr<ModelConfig> ParseHfConfig(std::string_view json_text, std::string_view source);

// Reads and parses a config.json file (NOT_FOUND when it does not exist).
absl::StatusOr<ModelConfig> LoadHfConfig(const std::string& path);

// Serializes to the Hugging Face config.json form, every field explicit, keys sorted. Parsing the
// result gives back an equal config. Also the canonical text hashed into a model's identity.
std::string ToHfConfigJson(const ModelConfig& config);

}  // namespace mamba::model
