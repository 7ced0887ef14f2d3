// The shape and hyper-parameters of a model, read from a Hugging Face config.json or built in for
// the synthetic models. The family (model_family.h) says which layers the fields describe; the
// state a sequence carries comes from StateLayoutOf(config), never from the fields directly.
#pragma once

#include <cstdint>
#include <limits>
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

  // FalconMamba: epsilon of the weightless RMSNorm of dt_low, B and C after x_proj.
  float mixer_rms_eps = 1e-6f;  // mixer_rms_eps

  // Mamba-2. d_inner (out_proj's input) is d_mlp + d_ssm: the SSM runs over d_ssm = n_heads *
  // head_dim channels, a gated MLP (state-spaces checkpoints only; zero elsewhere) over d_mlp.
  int32_t n_heads = 0;    // num_heads; state-spaces: ssm_cfg.d_ssm (default d_inner) / headdim
  int32_t head_dim = 64;  // head_dim / ssm_cfg.headdim
  int32_t n_groups = 1;   // n_groups / ssm_cfg.ngroups: B and C are shared by n_heads / n_groups
  int32_t chunk_size = 256;  // chunk_size: the SSD block length (results do not depend on it)
  // dt = clamp(softplus(dt + dt_bias), min, max): time_step_limit / ssm_cfg.dt_limit.
  float time_step_limit_min = 0.0f;
  float time_step_limit_max = std::numeric_limits<float>::infinity();
  // The gated RMSNorm of y * silu(z), per group of d_ssm / n_groups channels (rms_norm /
  // ssm_cfg.rmsnorm; without it the output is y * silu(z)). Its epsilon: layer_norm_epsilon in
  // HF checkpoints, 1e-5 in state-spaces ones.
  bool gated_norm = true;
  float gated_norm_epsilon = 1e-5f;
  // D has one value per channel (d_ssm; ssm_cfg.D_has_hdim) rather than one per head.
  bool d_per_channel = false;

  bool operator==(const ModelConfig&) const = default;

  // Mamba-2 sizes (zero or meaningless for the other families).
  int64_t d_ssm() const { return int64_t{n_heads} * head_dim; }
  int64_t d_mlp() const { return d_inner - d_ssm(); }
  // Channels of the conv: x, B and C.
  int64_t conv_dim() const { return d_ssm() + int64_t{2} * n_groups * d_state; }
  // Rows of in_proj: Mamba-1 and FalconMamba x and z (2 d_inner); Mamba-2 [z0, x0] of the MLP, z,
  // xBC and dt (2 d_inner + 2 n_groups d_state + n_heads).
  int64_t in_proj_dim() const;

  // Checks internal consistency: positive sizes within sane bounds (so that tensor byte counts
  // cannot overflow), dt_rank <= d_inner, token ids in [-1, vocab_size), epsilon > 0, a valid dt
  // range. INVALID_ARGUMENT names the field and the allowed values.
  absl::Status Validate() const;

  // Parameters in the model (embedding counted once when tied).
  int64_t NumParameters() const;

  // One line, e.g. "mamba1: 24 layers x 768, d_inner 1536, d_state 16, dt_rank 48, d_conv 4,
  // vocab 50280, tied".
  std::string Summary() const;
};

// Parses the text of a Hugging Face config.json, applying the defaults of the family's config
// class in transformers to absent fields (MambaConfig, FalconMambaConfig, Mamba2Config: model_type
// "mamba", "falcon_mamba", "mamba2"; an absent model_type means "mamba"), deriving
// intermediate_size (int(expand * hidden_size) unless given; Mamba-2 always derives it) and
// time_step_rank ("auto" = ceil(hidden_size / 16)). Also accepts the original state-spaces format
// (d_model, n_layer, vocab_size rounded up to pad_vocab_size_multiple, ssm_cfg, rms_norm,
// residual_in_fp32, tie_embeddings; ssm_cfg.layer "Mamba1" or absent for Mamba-1, "Mamba2" for
// Mamba-2 with headdim, ngroups, d_ssm, rmsnorm, D_has_hdim, dt_limit, chunk_size), chosen when
// the object has d_model and no hidden_size. Non-standard JSON numbers as Python writes them
// (bare Infinity, -Infinity, NaN) and transformers 5's {"__float__": "Infinity"} are read as
// numbers. Unknown keys are ignored; what the engine does not compute (norm_before_gate true, an
// activation other than SiLU, attention or MLP layers) is refused. `source` names the file in
// error messages, which also name the field, its value and what is allowed. The config is
// validated before it is returned.
absl::StatusOr<ModelConfig> ParseHfConfig(std::string_view json_text, std::string_view source);

// Reads and parses a config.json file (NOT_FOUND when it does not exist).
absl::StatusOr<ModelConfig> LoadHfConfig(const std::string& path);

// Serializes to the Hugging Face config.json form of the family, every field explicit, keys
// sorted (a Mamba-2 config that HF's Mamba2Config cannot express, with an MLP part, per-channel D
// or no gated norm, is written in the state-spaces form). Parsing the result gives back an equal
// config. Also the canonical text hashed into a model's identity.
std::string ToHfConfigJson(const ModelConfig& config);

}  // namespace mamba::model
