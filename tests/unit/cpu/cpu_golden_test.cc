// The CPU backend against HF transformers' MambaForCausalLM on real checkpoint files: every case
// folder under tests/data/golden/ holds config.json and model.safetensors written by
// save_pretrained, and expected.json with, for each prompt, the last-position logits HF computed
// in float64 from the same weights and the 24 tokens its greedy generation produced.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "engine/backend/backend.h"
#include "engine/cpu/cpu_backend.h"
#include "engine/model/model_loader.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace mamba {
namespace {

namespace fs = std::filesystem;

constexpr double kMaxRelativeLogitError = 1e-4;

struct GoldenPrompt {
  std::vector<int32_t> ids;
  std::vector<double> last_logits;
  std::vector<int32_t> greedy;
};

std::vector<fs::path> GoldenCases() {
  std::vector<fs::path> cases;
  const fs::path root = fs::path(MAMBA_TEST_DATA_DIR) / "golden";
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return cases;
  for (const fs::directory_entry& e : fs::directory_iterator(root, ec)) {
    if (e.is_directory() && fs::exists(e.path() / "expected.json")) cases.push_back(e.path());
  }
  std::sort(cases.begin(), cases.end());
  return cases;
}

bool ReadPrompts(const fs::path& file, std::string* dtype, std::vector<GoldenPrompt>* prompts,
                 std::string* error) {
  std::ifstream in(file);
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json j = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object() || !j.contains("prompts")) {
    *error = "not a JSON object with \"prompts\"";
    return false;
  }
  *dtype = j.value("dtype", std::string("?"));
  for (const nlohmann::json& p : j["prompts"]) {
    if (!p.contains("ids") || !p.contains("last_logits") || !p.contains("greedy")) {
      *error = "a prompt lacks ids, last_logits or greedy";
      return false;
    }
    GoldenPrompt g;
    for (const auto& v : p["ids"]) g.ids.push_back(v.get<int32_t>());
    for (const auto& v : p["last_logits"]) g.last_logits.push_back(v.get<double>());
    for (const auto& v : p["greedy"]) g.greedy.push_back(v.get<int32_t>());
    prompts->push_back(std::move(g));
  }
  return true;
}

TEST(CpuGoldenTest, MatchesTransformers) {
  const std::vector<fs::path> cases = GoldenCases();
  if (cases.empty()) GTEST_SKIP() << "no golden checkpoints under tests/data/golden yet";
  for (const fs::path& dir : cases) {
    SCOPED_TRACE(dir.filename().string());
    std::string dtype, error;
    std::vector<GoldenPrompt> prompts;
    ASSERT_TRUE(ReadPrompts(dir / "expected.json", &dtype, &prompts, &error)) << error;
    absl::StatusOr<model::LoadedModel> model = model::LoadModel(dir.string());
    ASSERT_TRUE(model.ok()) << model.status();
    const int32_t vocab = model->config.vocab_size;
    backend::BackendOptions options;
    options.kind = "cpu";
    options.num_slots = 2;
    absl::StatusOr<std::unique_ptr<backend::Backend>> backend =
        cpu::CreateCpuBackend(options, *model);
    ASSERT_TRUE(backend.ok()) << backend.status();
    backend::Backend& b = **backend;

    for (size_t p = 0; p < prompts.size(); ++p) {
      const GoldenPrompt& g = prompts[p];
      SCOPED_TRACE(::testing::Message()
                   << "prompt " << p << " (" << g.ids.size() << " tokens, " << dtype << ")");
      ASSERT_EQ(g.last_logits.size(), static_cast<size_t>(vocab));
      ASSERT_TRUE(b.ResetSlot(0).ok());
      backend::SeqWork w;
      w.slot = 0;
      w.tokens = g.ids;
      w.want_logits = true;
      w.sample = true;  // greedy
      backend::SeqResult r;
      ASSERT_TRUE(b.Step(absl::MakeConstSpan(&w, 1), absl::MakeSpan(&r, 1)).ok());
      double max_ref = 0.0, max_diff = 0.0;
      for (int32_t i = 0; i < vocab; ++i) {
        max_ref = std::max(max_ref, std::abs(g.last_logits[i]));
        max_diff = std::max(max_diff, std::abs(r.logits[i] - g.last_logits[i]));
      }
      const double rel = max_diff / std::max(max_ref, 1e-30);
      EXPECT_LE(rel, kMaxRelativeLogitError) << "max |ours - HF| / max |HF| = " << rel;
      std::cout << "[golden] " << dir.filename().string() << " prompt " << p << " (" << g.ids.size()
                << " tokens, " << dtype << "): max relative logit error " << rel << "\n";

      // Greedy continuation, one decode step per token. Accept the reference either as the new
      // tokens alone or as prompt + new tokens.
      std::vector<int32_t> expected = g.greedy;
      if (expected.size() > g.ids.size() &&
          std::equal(g.ids.begin(), g.ids.end(), expected.begin())) {
        expected.erase(expected.begin(), expected.begin() + g.ids.size());
      }
      std::vector<int32_t> generated = {r.token};
      while (generated.size() < expected.size()) {
        backend::SeqWork d;
        d.slot = 0;
        d.tokens = absl::MakeConstSpan(&generated.back(), 1);
        d.sample = true;
        backend::SeqResult dr;
        ASSERT_TRUE(b.Step(absl::MakeConstSpan(&d, 1), absl::MakeSpan(&dr, 1)).ok());
        generated.push_back(dr.token);
      }
      EXPECT_EQ(generated, expected);
    }
  }
}

}  // namespace
}  // namespace mamba
