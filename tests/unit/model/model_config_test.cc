#include "engine/model/model_config.h"

#include <cmath>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "engine/model/model_loader.h"
#include "tests/unit/model/temp_checkpoint.h"

namespace mamba {
namespace {

using ::testing::HasSubstr;

model::ModelConfig MustParse(const std::string& json) {
  absl::StatusOr<model::ModelConfig> c = model::ParseHfConfig(json, "config.json");
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *c : model::ModelConfig{};
}

TEST(ModelConfigTest, EmptyObjectGetsHfDefaults) {
  const model::ModelConfig c = MustParse("{}");
  EXPECT_EQ(c.vocab_size, 50280);
  EXPECT_EQ(c.d_model, 768);
  EXPECT_EQ(c.d_state, 16);
  EXPECT_EQ(c.n_layer, 32);
  EXPECT_FLOAT_EQ(c.layer_norm_epsilon, 1e-5f);
  EXPECT_EQ(c.pad_token_id, 0);
  EXPECT_EQ(c.bos_token_id, 0);
  EXPECT_EQ(c.eos_token_id, 0);
  EXPECT_EQ(c.expand, 2);
  EXPECT_EQ(c.d_inner, 1536);
  EXPECT_EQ(c.d_conv, 4);
  EXPECT_EQ(c.dt_rank, 48);
  EXPECT_FALSE(c.use_bias);
  EXPECT_TRUE(c.use_conv_bias);
  EXPECT_TRUE(c.residual_in_fp32);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_FLOAT_EQ(c.time_step_min, 0.001f);
  EXPECT_FLOAT_EQ(c.time_step_max, 0.1f);
  EXPECT_FLOAT_EQ(c.time_step_floor, 1e-4f);
}

// The config.json of the public mamba-130m-hf checkpoint (keys as transformers writes them,
// including keys we ignore).
TEST(ModelConfigTest, PublicCheckpointConfig) {
  const model::ModelConfig c = MustParse(R"({
    "architectures": ["MambaForCausalLM"], "bos_token_id": 0, "conv_kernel": 4,
    "eos_token_id": 0, "expand": 2, "fused_add_norm": true, "hidden_act": "silu",
    "hidden_size": 768, "initializer_range": 0.1, "intermediate_size": 1536,
    "layer_norm_epsilon": 1e-05, "model_type": "mamba", "n_layer": 24, "num_hidden_layers": 24,
    "pad_token_id": 0, "pad_vocab_size_multiple": 8, "rescale_prenorm_residual": false,
    "residual_in_fp32": true, "rms_norm": true, "state_size": 16, "time_step_floor": 0.0001,
    "time_step_init_scheme": "random", "time_step_max": 0.1, "time_step_min": 0.001,
    "time_step_rank": 48, "time_step_scale": 1.0, "torch_dtype": "float32",
    "transformers_version": "4.39.0.dev0", "use_bias": false, "use_cache": true,
    "use_conv_bias": true, "vocab_size": 50280})");
  EXPECT_EQ(c.n_layer, 24);
  EXPECT_EQ(c.d_model, 768);
  EXPECT_EQ(c.d_inner, 1536);
  EXPECT_EQ(c.dt_rank, 48);
  EXPECT_EQ(c.NumParameters(), 129135360);  // what transformers reports for mamba-130m
  EXPECT_THAT(c.Summary(), HasSubstr("24 layers x 768"));
}

struct DerivedCase {
  std::string json;
  int32_t d_inner;
  int32_t dt_rank;
};

TEST(ModelConfigTest, DerivedValues) {
  const std::vector<DerivedCase> cases = {
      {R"({"hidden_size": 100})", 200, 7},  // ceil(100 / 16)
      {R"({"hidden_size": 96})", 192, 6},
      {R"({"hidden_size": 64, "expand": 3})", 192, 4},
      {R"({"hidden_size": 128, "intermediate_size": 192})", 192, 8},  // given wins
      {R"({"hidden_size": 128, "time_step_rank": 5})", 256, 5},
      {R"({"hidden_size": 128, "time_step_rank": "auto"})", 256, 8},
      {R"({"hidden_size": 128, "time_step_rank": null})", 256, 8},
      {R"({"hidden_size": 2560.0})", 5120, 160},  // integral floats are integers
  };
  for (const DerivedCase& t : cases) {
    SCOPED_TRACE(t.json);
    const model::ModelConfig c = MustParse(t.json);
    EXPECT_EQ(c.d_inner, t.d_inner);
    EXPECT_EQ(c.dt_rank, t.dt_rank);
  }
}

TEST(ModelConfigTest, TokenIds) {
  model::ModelConfig c =
      MustParse(R"({"pad_token_id": null, "bos_token_id": 1, "eos_token_id": [2, 3]})");
  EXPECT_EQ(c.pad_token_id, -1);
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_id, 2);
}

struct BadCase {
  std::string json;
  std::vector<std::string> fragments;  // all must appear in the message
};

TEST(ModelConfigTest, BadFieldsNameFileFieldAndAllowedValues) {
  const std::vector<BadCase> cases = {
      {"{", {"config.json", "not valid JSON"}},
      {"[1, 2]", {"config.json", "expected a JSON object"}},
      {R"({"hidden_size": "768"})", {"'hidden_size'", "must be an integer", "string"}},
      {R"({"hidden_size": -1})", {"'hidden_size'", "is -1", "allowed: 1.."}},
      {R"({"hidden_size": 1000000000})", {"'hidden_size'", "allowed"}},
      {R"({"num_hidden_layers": 0})", {"'num_hidden_layers'", "is 0"}},
      {R"({"state_size": 1.5})", {"'state_size'", "must be an integer"}},
      {R"({"vocab_size": 0})", {"'vocab_size'", "is 0"}},
      {R"({"conv_kernel": 0})", {"'conv_kernel'"}},
      {R"({"expand": 1.5})", {"'expand'", "must be an integer"}},
      {R"({"intermediate_size": -5})", {"'intermediate_size'", "is -5"}},
      {R"({"hidden_size": 65536, "expand": 64})", {"'expand'", "intermediate size"}},
      {R"({"use_bias": "false"})", {"'use_bias'", "must be true or false"}},
      {R"({"tie_word_embeddings": 1})", {"'tie_word_embeddings'", "must be true or false"}},
      {R"({"time_step_rank": "big"})", {"'time_step_rank'", "\"auto\""}},
      {R"({"time_step_rank": 0})", {"'time_step_rank'", "is 0"}},
      {R"({"hidden_size": 64, "intermediate_size": 32, "time_step_rank": 40})",
       {"time_step_rank", "is 40", "intermediate_size (32)"}},
      {R"({"vocab_size": 100, "eos_token_id": 100})", {"eos_token_id", "is 100", "vocab_size"}},
      {R"({"pad_token_id": -3})", {"'pad_token_id'", "is -3"}},
      {R"({"layer_norm_epsilon": 0})", {"'layer_norm_epsilon'", "> 0"}},
      {R"({"layer_norm_epsilon": "1e-5"})", {"'layer_norm_epsilon'", "must be a number"}},
      {R"({"time_step_min": 0.5, "time_step_max": 0.1})", {"time_step_min", "<="}},
      {R"({"model_type": "mamba3"})", {"'model_type'", "\"mamba3\"", "\"mamba2\"", "falcon"}},
      {R"({"model_type": 2})", {"'model_type'", "must be a string"}},
      {R"({"hidden_act": "gelu"})", {"'hidden_act'", "silu"}},
      // The original state-spaces format.
      {R"({"d_model": 64, "rms_norm": false})", {"'rms_norm'", "RMSNorm"}},
      {R"({"d_model": 64, "ssm_cfg": {"layer": "Mamba3"}})",
       {"'ssm_cfg.layer'", "\"Mamba1\"", "\"Mamba2\""}},
      {R"({"d_model": 64, "ssm_cfg": []})", {"'ssm_cfg'", "must be an object"}},
      {R"({"d_model": 64, "ssm_cfg": {"d_state": "16"}})", {"'ssm_cfg.d_state'"}},
      {R"({"d_model": 64, "attn_layer_idx": [1]})", {"'attn_layer_idx'"}},
      {R"({"d_model": 64, "d_intermediate": 128})", {"'d_intermediate'"}},
      // Mamba-2, HF format.
      {R"({"model_type": "mamba2", "hidden_size": 64, "num_heads": 3, "head_dim": 16})",
       {"'num_heads'", "48 channels", "expand * hidden_size is 128"}},
      {R"({"model_type": "mamba2", "hidden_size": 64, "num_heads": 8, "head_dim": 16,
          "n_groups": 3})",
       {"n_groups", "is 3", "divide num_heads (8)"}},
      {R"({"model_type": "mamba2", "hidden_size": 64, "num_heads": 8, "head_dim": 16,
          "norm_before_gate": true})",
       {"'norm_before_gate'", "is true"}},
      {R"({"model_type": "mamba2", "hidden_size": 64, "num_heads": 8, "head_dim": 16,
          "rms_norm": false})",
       {"'rms_norm'", "gated RMSNorm"}},
      {R"({"model_type": "mamba2", "time_step_limit": [0.5, 0.1]})",
       {"'time_step_limit'", "0 <= min <= max"}},
      {R"({"model_type": "mamba2", "time_step_limit": [0.0]})",
       {"'time_step_limit'", "pair of numbers"}},
      {R"({"model_type": "mamba2", "time_step_limit": [0.0, {"__float__": "Lots"}]})",
       {"'time_step_limit'"}},
      {R"({"model_type": "mamba2", "time_step_limit": [NaN, 1]})", {"'time_step_limit'"}},
      {R"({"model_type": "mamba2", "hidden_act": "relu"})", {"'hidden_act'", "\"silu\""}},
      {R"({"model_type": "mamba2", "layer_norm_epsilon": Infinity})", {"'layer_norm_epsilon'"}},
      // Mamba-2, state-spaces format.
      {R"({"d_model": 64, "ssm_cfg": {"layer": "Mamba2", "headdim": 48}})",
       {"'ssm_cfg.headdim'", "multiple of headdim"}},
      {R"({"d_model": 64, "ssm_cfg": {"layer": "Mamba2", "headdim": 16, "d_ssm": 256}})",
       {"ssm_cfg.d_ssm", "at most expand * d_model (128)"}},
      {R"({"d_model": 64, "ssm_cfg": {"layer": "Mamba2", "norm_before_gate": true}})",
       {"'ssm_cfg.norm_before_gate'"}},
      {R"({"d_model": 64, "ssm_cfg": {"layer": "Mamba2", "activation": "gelu"}})",
       {"'ssm_cfg.activation'"}},
      {R"({"d_model": 64, "model_type": "mamba", "ssm_cfg": {"layer": "Mamba2", "headdim": 16}})",
       {"'model_type'", "\"Mamba2\""}},
      // FalconMamba.
      {R"({"model_type": "falcon_mamba", "mixer_rms_eps": -1})", {"'mixer_rms_eps'"}},
  };
  for (const BadCase& t : cases) {
    SCOPED_TRACE(t.json);
    absl::StatusOr<model::ModelConfig> c = model::ParseHfConfig(t.json, "ckpt/config.json");
    ASSERT_FALSE(c.ok());
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
    const std::string message(c.status().message());
    EXPECT_THAT(message, HasSubstr("ckpt/config.json"));
    for (const std::string& f : t.fragments) EXPECT_THAT(message, HasSubstr(f));
  }
}

// Mamba-Codestral's config.json as transformers 4 wrote it: Python's bare Infinity in
// time_step_limit, keys we ignore.
TEST(ModelConfigTest, Mamba2HfConfigOfCodestral) {
  const model::ModelConfig c = MustParse(R"({
    "architectures": ["Mamba2ForCausalLM"], "bos_token_id": 1, "chunk_size": 256,
    "conv_kernel": 4, "eos_token_id": 2, "expand": 2, "head_dim": 64, "hidden_act": "silu",
    "hidden_size": 4096, "initializer_range": 0.1, "layer_norm_epsilon": 1e-05,
    "model_type": "mamba2", "n_groups": 8, "num_heads": 128, "num_hidden_layers": 64,
    "pad_token_id": 0, "rescale_prenorm_residual": false, "residual_in_fp32": true,
    "rms_norm": true, "state_size": 128, "tie_word_embeddings": false, "time_step_floor": 0.0001,
    "time_step_limit": [0.0, Infinity], "time_step_max": 0.1, "time_step_min": 0.001,
    "time_step_rank": 256, "torch_dtype": "bfloat16", "transformers_version": "4.44.0.dev0",
    "use_bias": false, "use_cache": true, "use_conv_bias": true, "vocab_size": 32768})");
  EXPECT_EQ(c.family, model::ModelFamily::kMamba2);
  EXPECT_EQ(c.d_inner, 8192);
  EXPECT_EQ(c.n_heads, 128);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.n_groups, 8);
  EXPECT_EQ(c.d_ssm(), 8192);
  EXPECT_EQ(c.d_mlp(), 0);
  EXPECT_EQ(c.conv_dim(), 8192 + 2 * 8 * 128);
  EXPECT_EQ(c.in_proj_dim(), 18560);
  EXPECT_EQ(c.chunk_size, 256);
  EXPECT_FLOAT_EQ(c.time_step_limit_min, 0.0f);
  EXPECT_TRUE(std::isinf(c.time_step_limit_max));
  EXPECT_FLOAT_EQ(c.gated_norm_epsilon, 1e-5f);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.NumParameters(), 7285403648);  // what transformers reports for the checkpoint
  // A session of it: 64 layers of conv (3 x 10240) and SSM (8192 x 128) states.
  const model::StateLayout layout = model::StateLayoutOf(c);
  EXPECT_EQ(layout.conv_channels, 10240);
  EXPECT_EQ(layout.ssm_channels, 8192);
  EXPECT_EQ(layout.ssm_state, 128);
  EXPECT_EQ(layout.elements() * 4, 276299776);  // bytes in fp32
  EXPECT_THAT(c.Summary(), HasSubstr("mamba2: 64 layers x 4096, 128 heads of 64"));
}

TEST(ModelConfigTest, Mamba2HfDefaultsAndTransformers5Floats) {
  model::ModelConfig c = MustParse(R"({"model_type": "mamba2"})");
  EXPECT_EQ(c.d_model, 4096);  // Mamba2Config's defaults are Codestral's shape
  EXPECT_EQ(c.n_heads, 128);
  EXPECT_EQ(c.n_groups, 8);
  EXPECT_EQ(c.d_state, 128);
  EXPECT_EQ(c.vocab_size, 32768);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.pad_token_id, 1);
  EXPECT_EQ(c.eos_token_id, 2);
  c = MustParse(R"({"model_type": "mamba2", "hidden_size": 64, "num_heads": 4,
      "head_dim": 32, "n_groups": 2, "time_step_limit": [0.01, {"__float__": "Infinity"}],
      "note": "Infinity inside a string stays a string", "layer_norm_epsilon": 1e-6})");
  EXPECT_FLOAT_EQ(c.time_step_limit_min, 0.01f);
  EXPECT_TRUE(std::isinf(c.time_step_limit_max));
  EXPECT_FLOAT_EQ(c.gated_norm_epsilon, 1e-6f);  // HF's gated norm uses layer_norm_epsilon
  c = MustParse(R"({"model_type": "mamba2", "hidden_size": 64, "num_heads": 4,
      "head_dim": 32, "n_groups": 2, "time_step_limit": [0.001, 0.5]})");
  EXPECT_FLOAT_EQ(c.time_step_limit_max, 0.5f);
}

// state-spaces/mamba2-130m's config.json.
TEST(ModelConfigTest, Mamba2StateSpacesFormat) {
  model::ModelConfig c = MustParse(R"({"d_model": 768, "d_intermediate": 0, "n_layer": 24,
      "vocab_size": 50277, "ssm_cfg": {"layer": "Mamba2"}, "attn_layer_idx": [],
      "attn_cfg": {}, "rms_norm": true, "residual_in_fp32": true, "fused_add_norm": true,
      "pad_vocab_size_multiple": 16, "tie_embeddings": true})");
  EXPECT_EQ(c.family, model::ModelFamily::kMamba2);
  EXPECT_EQ(c.vocab_size, 50288);
  EXPECT_EQ(c.d_inner, 1536);
  EXPECT_EQ(c.n_heads, 24);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.n_groups, 1);
  EXPECT_EQ(c.d_state, 128);
  EXPECT_TRUE(c.gated_norm);
  EXPECT_FLOAT_EQ(c.gated_norm_epsilon, 1e-5f);
  EXPECT_TRUE(c.tie_word_embeddings);
  // About 19 MB of state per sequence in fp32.
  EXPECT_EQ(model::StateLayoutOf(c).elements() * 4, 24 * (1792 * 3 + 1536 * 128) * 4);
  // What HF's format cannot say: an MLP part, D per channel, no gated norm.
  c = MustParse(R"({"d_model": 64, "n_layer": 2, "vocab_size": 100,
      "ssm_cfg": {"layer": "Mamba2", "d_state": 16, "headdim": 16, "ngroups": 2, "d_ssm": 96,
                  "D_has_hdim": true, "rmsnorm": false, "dt_limit": [0.0, 0.3],
                  "chunk_size": 32, "bias": true, "conv_bias": false}})");
  EXPECT_EQ(c.d_inner, 128);
  EXPECT_EQ(c.d_ssm(), 96);
  EXPECT_EQ(c.d_mlp(), 32);
  EXPECT_EQ(c.n_heads, 6);
  EXPECT_TRUE(c.d_per_channel);
  EXPECT_FALSE(c.gated_norm);
  EXPECT_FLOAT_EQ(c.time_step_limit_max, 0.3f);
  EXPECT_EQ(c.in_proj_dim(), 2 * 128 + 2 * 2 * 16 + 6);
  EXPECT_TRUE(c.use_bias);
  EXPECT_FALSE(c.use_conv_bias);
  EXPECT_EQ(MustParse(model::ToHfConfigJson(c)), c) << model::ToHfConfigJson(c);
}

// tiiuae/falcon-mamba-7b's config.json: its expand (16) disagrees with intermediate_size (8192).
TEST(ModelConfigTest, FalconMambaConfig) {
  const model::ModelConfig c = MustParse(R"({
    "architectures": ["FalconMambaForCausalLM"], "bos_token_id": 0, "conv_kernel": 4,
    "eos_token_id": 11, "expand": 16, "hidden_act": "silu", "hidden_size": 4096,
    "initializer_range": 0.1, "intermediate_size": 8192, "layer_norm_epsilon": 1e-05,
    "mixer_rms_eps": 1e-06, "model_type": "falcon_mamba", "num_hidden_layers": 64,
    "pad_token_id": 11, "rescale_prenorm_residual": false, "residual_in_fp32": true,
    "state_size": 16, "tie_word_embeddings": false, "time_step_floor": 0.0001,
    "time_step_init_scheme": "random", "time_step_max": 0.1, "time_step_min": 0.001,
    "time_step_rank": 256, "time_step_scale": 1.0, "torch_dtype": "bfloat16",
    "use_bias": false, "use_cache": true, "use_conv_bias": true, "use_mambapy": false,
    "vocab_size": 65024})");
  EXPECT_EQ(c.family, model::ModelFamily::kFalconMamba);
  EXPECT_EQ(c.d_inner, 8192);  // intermediate_size wins over expand * hidden_size
  EXPECT_EQ(c.dt_rank, 256);
  EXPECT_FLOAT_EQ(c.mixer_rms_eps, 1e-6f);
  EXPECT_EQ(c.NumParameters(), 7272665088);  // what transformers reports for the checkpoint
  EXPECT_EQ(model::StateLayoutOf(c).elements(), 64 * (8192 * 3 + 8192 * 16));
  EXPECT_THAT(c.Summary(), HasSubstr("falcon_mamba: 64 layers x 4096, d_inner 8192"));
}

TEST(ModelConfigTest, EverySyntheticConfigRoundTrips) {
  for (const std::string& name : model::SyntheticModelNames()) {
    SCOPED_TRACE(name);
    absl::StatusOr<model::ModelConfig> c = model::SyntheticConfig(name);
    ASSERT_TRUE(c.ok()) << c.status();
    const std::string json = model::ToHfConfigJson(*c);
    EXPECT_EQ(MustParse(json), *c) << json;
    EXPECT_THAT(json, HasSubstr(model::FamilyModelType(c->family)));
  }
}

TEST(ModelConfigTest, StateSpacesFormat) {
  model::ModelConfig c = MustParse(R"({"d_model": 768, "n_layer": 24, "vocab_size": 50277,
      "ssm_cfg": {}, "rms_norm": true, "residual_in_fp32": true, "fused_add_norm": true,
      "pad_vocab_size_multiple": 8})");
  EXPECT_EQ(c.d_model, 768);
  EXPECT_EQ(c.n_layer, 24);
  EXPECT_EQ(c.vocab_size, 50280);  // padded to a multiple of 8
  EXPECT_EQ(c.d_inner, 1536);
  EXPECT_EQ(c.dt_rank, 48);
  EXPECT_TRUE(c.tie_word_embeddings);

  c = MustParse(R"({"d_model": 64, "n_layer": 2, "vocab_size": 100, "pad_vocab_size_multiple": 16,
      "tie_embeddings": false, "ssm_cfg": {"d_state": 8, "d_conv": 3, "expand": 3, "dt_rank": 10,
      "conv_bias": false, "bias": true}})");
  EXPECT_EQ(c.vocab_size, 112);
  EXPECT_EQ(c.d_state, 8);
  EXPECT_EQ(c.d_conv, 3);
  EXPECT_EQ(c.d_inner, 192);
  EXPECT_EQ(c.dt_rank, 10);
  EXPECT_FALSE(c.use_conv_bias);
  EXPECT_TRUE(c.use_bias);
  EXPECT_FALSE(c.tie_word_embeddings);
}

TEST(ModelConfigTest, SerializationRoundTrips) {
  model::ModelConfig a;
  model::ModelConfig b = MustParse(R"({"hidden_size": 96, "num_hidden_layers": 3, "state_size": 8,
      "intermediate_size": 160, "time_step_rank": 5, "conv_kernel": 3, "use_bias": true,
      "use_conv_bias": false, "tie_word_embeddings": false, "vocab_size": 1000,
      "layer_norm_epsilon": 1e-6, "pad_token_id": null, "eos_token_id": 7,
      "time_step_min": 0.002, "time_step_max": 0.2, "time_step_floor": 0})");
  for (const model::ModelConfig& c : {a, b}) {
    const std::string json = model::ToHfConfigJson(c);
    EXPECT_EQ(MustParse(json), c) << json;
  }
  EXPECT_THAT(model::ToHfConfigJson(a), HasSubstr("\"layer_norm_epsilon\": 1e-05"));
}

TEST(ModelConfigTest, ValidateRejectsInconsistentStructs) {
  model::ModelConfig c;
  EXPECT_TRUE(c.Validate().ok());
  c.dt_rank = c.d_inner + 1;
  EXPECT_THAT(std::string(c.Validate().message()), HasSubstr("time_step_rank"));
  c = model::ModelConfig();
  c.d_state = 0;
  EXPECT_THAT(std::string(c.Validate().message()), HasSubstr("state_size"));
  c = model::ModelConfig();
  c.eos_token_id = c.vocab_size;
  EXPECT_EQ(c.Validate().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ModelConfigTest, LoadFromFile) {
  testing::TempDir dir;
  EXPECT_EQ(model::LoadHfConfig(dir.File("config.json")).status().code(),
            absl::StatusCode::kNotFound);
  testing::WriteText(dir.File("config.json"), R"({"hidden_size": 64, "num_hidden_layers": 2})");
  absl::StatusOr<model::ModelConfig> c = model::LoadHfConfig(dir.File("config.json"));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->d_model, 64);
  testing::WriteText(dir.File("config.json"), R"({"hidden_size": true})");
  c = model::LoadHfConfig(dir.File("config.json"));
  EXPECT_THAT(std::string(c.status().message()), HasSubstr(dir.File("config.json")));
}

// Random edits of a real config give a config or INVALID_ARGUMENT, never a crash or another code.
TEST(ModelConfigTest, RandomEditsNeverCrash) {
  const std::string good = model::ToHfConfigJson(model::ModelConfig());
  const std::string alphabet = "{}[]\",:0123456789.-eE truefalsn\\";
  uint64_t x = 7;
  auto next = [&x] {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    return x >> 33;
  };
  int parsed = 0;
  for (int trial = 0; trial < 2000; ++trial) {
    std::string text = good;
    for (int e = 0, n = 1 + static_cast<int>(next() % 3); e < n; ++e) {
      text[next() % text.size()] = alphabet[next() % alphabet.size()];
    }
    absl::StatusOr<model::ModelConfig> c = model::ParseHfConfig(text, "config.json");
    if (c.ok()) {
      ++parsed;
      EXPECT_TRUE(c->Validate().ok());
    } else {
      EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << c.status();
    }
  }
  EXPECT_GT(parsed, 0);
}

}  // namespace
}  // namespace mamba
