// The shape and hyper-parameters of a Mamba-1 model, read from a Hugging Face config.json
// (MambaForCausalLM) or built in for the synthetic models.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace mamba {

struct ModelConfig {
  int32_t d_model = 768;         // hidden_size
  int32_t n_layer = 32;          // num_hidden_layers
  int32_t d_state = 16;          // state_size
  int32_t expand = 2;            // expand
  int32_t d_inner = 1536;        // intermediate_size (expand * hidden_size unless given)
  int32_t d_conv = 4;            // conv_kernel
  int32_t dt_rank = 48;          // time_step_rank ("auto" = ceil(hidden_size / 16))
  int32_t vocab_size = 50280;    // vocab_size
  bool use_bias = false;         // in_proj / out_proj biases
  bool use_conv_bias = true;     // conv1d bias
  bool tie_word_embeddings = true;
  bool residual_in_fp32 = true;
  float layer_norm_epsilon = 1e-5f;
  int32_t bos_token_id = 0;
  int32_t eos_token_id = 0;
  int32_t pad_token_id = 0;
  // Initialization ranges, used only to build synthetic models like real ones.
  float time_step_min = 0.001f;
  float time_step_max = 0.1f;
  float time_step_floor = 1e-4f;

  // Checks internal consistency (positive sizes, d_inner and dt_rank in range, ...).
  absl::Status Validate() const;

  // Parameters in the model (embedding counted once when tied).
  int64_t NumParameters() const;

  // Per-sequence recurrent state, in elements: conv state is d_conv - 1 inputs per channel.
  int64_t ConvStateElementsPerLayer() const { return int64_t{d_inner} * (d_conv - 1); }
  int64_t SsmStateElementsPerLayer() const { return int64_t{d_inner} * d_state; }
  int64_t StateElements() const {
    return n_layer * (ConvStateElementsPerLayer() + SsmStateElementsPerLayer());
  }

  // One line, e.g. "24 layers x 768, d_state 16, vocab 50280".
  std::string Summary() const;
};

// Parses the text of a Hugging Face config.json for MambaForCausalLM, applying HF's defaults to
// absent fields and deriving intermediate_size and time_step_rank. `source` names the file in
// error messages. The config is validated before it is returned.
absl::StatusOr<ModelConfig> ParseHfConfig(std::string_view json_text, std::string_view source);

// Reads and parses a config.json file.
absl::StatusOr<ModelConfig> LoadHfConfig(const std::string& path);

// Serializes to the Hugging Face config.json form (used by tools and tests that write checkpoints).
std::string ToHfConfigJson(const ModelConfig& config);

}  // namespace mamba
