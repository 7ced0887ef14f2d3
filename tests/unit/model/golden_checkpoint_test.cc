// Loads the golden checkpoints made by tools/make_golden_checkpoints.py with HF transformers
// (tests/data/golden/<case>/) and checks that the loader reads them as transformers wrote them:
// the config fields, the dtypes and every tensor's shape. The logits themselves are checked by
// the CPU backend's golden test. Skips when the fixtures have not been generated.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "engine/model/model_loader.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace mamba {
namespace {

namespace fs = std::filesystem;

std::vector<fs::path> GoldenCases() {
  std::vector<fs::path> cases;
  const fs::path root = fs::path(MAMBA_TEST_DATA_DIR) / "golden";
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return cases;
  for (const auto& e : fs::directory_iterator(root)) {
    if (e.is_directory() && fs::exists(e.path() / "expected.json")) cases.push_back(e.path());
  }
  std::sort(cases.begin(), cases.end());
  return cases;
}

TEST(GoldenCheckpointTest, LoadsEveryCase) {
  const std::vector<fs::path> cases = GoldenCases();
  if (cases.empty()) {
    GTEST_SKIP() << "no tests/data/golden/*/expected.json (run tools/make_golden_checkpoints.py "
                    "on a host with torch and transformers)";
  }
  for (const fs::path& dir : cases) {
    SCOPED_TRACE(dir.string());
    std::ifstream in(dir / "expected.json");
    const nlohmann::json expected = nlohmann::json::parse(in, nullptr, false);
    ASSERT_TRUE(expected.is_object());

    absl::StatusOr<model::LoadedModel> m = model::LoadModel(dir.string());
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_TRUE(m->warnings.empty()) << m->warnings.front();
    EXPECT_TRUE(m->tokenizer_path.empty()) << "golden checkpoints have no tokenizer";
    const model::ModelConfig& c = m->config;

    const nlohmann::json& hf = expected.at("config");  // as transformers saw it
    EXPECT_EQ(c.vocab_size, hf.at("vocab_size").get<int>());
    EXPECT_EQ(c.d_model, hf.at("hidden_size").get<int>());
    EXPECT_EQ(c.n_layer, hf.at("num_hidden_layers").get<int>());
    EXPECT_EQ(c.d_state, hf.at("state_size").get<int>());
    EXPECT_EQ(c.d_inner, hf.at("intermediate_size").get<int>());
    EXPECT_EQ(c.d_conv, hf.at("conv_kernel").get<int>());
    const std::string family = hf.value("family", std::string("mamba"));
    EXPECT_EQ(model::FamilyModelType(c.family), family);
    if (hf.contains("time_step_rank")) {
      EXPECT_EQ(c.dt_rank, hf.at("time_step_rank").get<int>());
    }
    if (hf.contains("mixer_rms_eps")) {
      EXPECT_FLOAT_EQ(c.mixer_rms_eps, hf.at("mixer_rms_eps").get<float>());
    }
    if (family == "mamba2") {
      EXPECT_EQ(c.n_heads, hf.at("num_heads").get<int>());
      EXPECT_EQ(c.head_dim, hf.at("head_dim").get<int>());
      EXPECT_EQ(c.n_groups, hf.at("n_groups").get<int>());
      EXPECT_EQ(c.chunk_size, hf.at("chunk_size").get<int>());
      EXPECT_EQ(c.d_ssm(), hf.at("d_ssm").get<int>());
      EXPECT_FLOAT_EQ(c.gated_norm_epsilon, hf.at("gated_norm_epsilon").get<float>());
      const nlohmann::json& limit = hf.at("time_step_limit");
      EXPECT_FLOAT_EQ(c.time_step_limit_min, limit[0].get<float>());
      if (limit[1].is_string()) {
        EXPECT_TRUE(std::isinf(c.time_step_limit_max));
      } else {
        EXPECT_FLOAT_EQ(c.time_step_limit_max, limit[1].get<float>());
      }
    }
    EXPECT_EQ(c.use_bias, hf.at("use_bias").get<bool>());
    EXPECT_EQ(c.use_conv_bias, hf.at("use_conv_bias").get<bool>());
    EXPECT_EQ(c.tie_word_embeddings, hf.at("tie_word_embeddings").get<bool>());

    absl::StatusOr<model::DType> dtype = model::ParseDType(expected.at("dtype").get<std::string>());
    ASSERT_TRUE(dtype.ok());
    EXPECT_EQ(m->weights.MatrixDType(), *dtype);
    EXPECT_EQ(m->weights.embedding.dtype, *dtype);
    EXPECT_EQ(m->weights.lm_head_tied, c.tie_word_embeddings);
    ASSERT_TRUE(m->weights.Validate(c, dir.string()).ok());
    m->weights.ForEachTensor(c, [&](const model::TensorSpec& spec, const model::TensorView& v) {
      EXPECT_EQ(v.shape, spec.shape) << spec.name;
    });

    ASSERT_GE(expected.at("prompts").size(), 3u);
    for (const nlohmann::json& p : expected.at("prompts")) {
      EXPECT_EQ(p.at("last_logits").size(), static_cast<size_t>(c.vocab_size));
      EXPECT_EQ(p.at("greedy").size(), 24u);
      for (const nlohmann::json& id : p.at("ids")) {
        EXPECT_GE(id.get<int>(), 0);
        EXPECT_LT(id.get<int>(), c.vocab_size);
      }
    }
    absl::StatusOr<model::LoadedModel> again = model::LoadModel(dir.string());
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(again->identity, m->identity);
  }
}

}  // namespace
}  // namespace mamba
