// The CUDA backend against the CPU backend (the oracle) on synthetic models and on the golden HF
// checkpoints, and DESIGN.md's invariants on the CUDA backend: chunked prefill equals one
// prefill, prefill then decode equals a longer prefill, a sequence's output does not depend on
// its batch (bitwise in the batch-invariant mode, >= 99% greedy agreement otherwise), slot
// save/load/copy round trips, graph replay equals eager execution. Skips without a GPU.
#include "engine/cuda/cuda_backend.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/backend/backend.h"
#include "engine/cpu/cpu_backend.h"
#include "engine/cuda/mamba2_mixer.h"
#include "engine/model/dtype.h"
#include "engine/model/model_loader.h"
#include "engine/sampling/sampler.h"
#include "gtest/gtest.h"
#include "kernels/decode_step.h"
#include "nlohmann/json.hpp"

namespace mamba {
namespace {

namespace fs = std::filesystem;

bool HaveGpu() { return cuda::CudaDeviceCount() > 0; }
#define SKIP_WITHOUT_GPU() \
  if (!HaveGpu()) GTEST_SKIP() << "no CUDA device visible"

// Half precision logits against the fp32 CPU backend on the same (half) weights.
constexpr double kF16LogitTolerance = 1e-2;
constexpr double kBF16LogitTolerance = 3e-2;
constexpr double kGreedyAgreement = 0.95;
constexpr double kBatchAgreement = 0.99;

model::ModelConfig TinyConfig() { return model::SyntheticConfig("tiny").value(); }

// Sizes that leave tails everywhere (d_inner 100, d_state 12, dt_rank 5, d_model 50), a conv of
// width 3, in/out biases and an untied head: the kernels' scalar fallbacks.
model::ModelConfig OddConfig() {
  model::ModelConfig c;
  c.d_model = 50;
  c.n_layer = 2;
  c.d_state = 12;
  c.expand = 2;
  c.d_inner = 100;
  c.d_conv = 3;
  c.dt_rank = 5;
  c.vocab_size = 301;
  c.use_bias = true;
  c.use_conv_bias = false;
  c.tie_word_embeddings = false;
  c.bos_token_id = c.eos_token_id = c.pad_token_id = 0;
  return c;
}

// The 130m widths with 4 layers.
model::ModelConfig Small130mConfig() {
  model::ModelConfig c = model::SyntheticConfig("130m").value();
  c.n_layer = 4;
  return c;
}

model::LoadedModel MakeModel(const model::ModelConfig& config, model::DType dtype,
                             uint64_t seed = 11) {
  model::LoadedModel m;
  m.name = "test";
  m.source = "test";
  m.config = config;
  absl::StatusOr<model::ModelWeights> w = model::MakeSyntheticWeights(config, seed, dtype);
  EXPECT_TRUE(w.ok()) << w.status();
  m.weights = std::move(w).value();
  return m;
}

struct CudaOptions {
  int32_t slots = 24;
  bool deterministic = false;
  std::string state_dtype = "f32";
  int32_t max_batch = 64;
};

std::unique_ptr<backend::Backend> MakeCuda(model::LoadedModel model, const CudaOptions& o = {}) {
  backend::BackendOptions options;
  options.kind = "cuda";
  options.num_slots = o.slots;
  options.deterministic = o.deterministic;
  options.state_dtype = o.state_dtype;
  options.max_batch = o.max_batch;
  absl::StatusOr<std::unique_ptr<backend::Backend>> b = cuda::CreateCudaBackend(options, model);
  EXPECT_TRUE(b.ok()) << b.status();
  return b.ok() ? std::move(b).value() : nullptr;
}

std::unique_ptr<backend::Backend> MakeCpu(model::LoadedModel model, int32_t slots = 24) {
  backend::BackendOptions options;
  options.kind = "cpu";
  options.num_slots = slots;
  absl::StatusOr<std::unique_ptr<backend::Backend>> b = cpu::CreateCpuBackend(options, model);
  EXPECT_TRUE(b.ok()) << b.status();
  return b.ok() ? std::move(b).value() : nullptr;
}

std::vector<int32_t> RandomTokens(int n, int32_t vocab, uint64_t seed) {
  std::vector<int32_t> t(n);
  uint64_t x = seed * 6364136223846793005ull + 1442695040888963407ull;
  for (int i = 0; i < n; ++i) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    t[i] = static_cast<int32_t>((x >> 33) % static_cast<uint64_t>(vocab));
  }
  return t;
}

// Feeds `tokens` to `slot` in one step and returns the last logits.
std::vector<float> Feed(backend::Backend& b, int32_t slot, absl::Span<const int32_t> tokens) {
  backend::SeqWork w;
  w.slot = slot;
  w.tokens = tokens;
  w.want_logits = true;
  backend::SeqResult r;
  absl::Status s = b.Step(absl::MakeConstSpan(&w, 1), absl::MakeSpan(&r, 1));
  EXPECT_TRUE(s.ok()) << s;
  return r.logits;
}

std::vector<float> FeedChunked(backend::Backend& b, int32_t slot,
                               const std::vector<int32_t>& tokens, size_t chunk) {
  std::vector<float> logits;
  for (size_t i = 0; i < tokens.size(); i += chunk) {
    logits =
        Feed(b, slot, absl::MakeConstSpan(tokens.data() + i, std::min(chunk, tokens.size() - i)));
  }
  return logits;
}

// Steps every sequence of `work` once (all in one batch) and returns each one's logits.
std::vector<std::vector<float>> StepAll(backend::Backend& b, std::vector<backend::SeqWork> work) {
  for (backend::SeqWork& w : work) w.want_logits = true;
  std::vector<backend::SeqResult> r(work.size());
  absl::Status s = b.Step(work, absl::MakeSpan(r));
  EXPECT_TRUE(s.ok()) << s;
  std::vector<std::vector<float>> out;
  for (backend::SeqResult& x : r) out.push_back(std::move(x.logits));
  return out;
}

int32_t Argmax(const std::vector<float>& v) {
  return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

// max |a - b| / max |b|.
double MaxRelative(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size() || b.empty()) return INFINITY;
  double max_ref = 0.0, max_diff = 0.0;
  for (size_t i = 0; i < b.size(); ++i) {
    if (std::isnan(a[i])) return INFINITY;
    max_ref = std::max(max_ref, std::abs(static_cast<double>(b[i])));
    max_diff = std::max(max_diff, std::abs(static_cast<double>(a[i]) - b[i]));
  }
  return max_diff / std::max(max_ref, 1e-30);
}

bool BitEqual(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// A line on stderr per milestone, so a log shows how far a test got.
void Progress(const std::string& what) {
  std::fprintf(stderr, "  .. %s\n", what.c_str());
  std::fflush(stderr);
}

// Teacher-forced comparison: the CPU generates greedily from `prompt`; both backends are fed the
// same tokens; returns the fraction of positions where the CUDA argmax equals the CPU's, and the
// worst relative logit error.
struct Agreement {
  double fraction = 0.0;
  double worst_error = 0.0;
};
Agreement CompareGreedy(backend::Backend& cpu, backend::Backend& cuda, int32_t slot,
                        const std::vector<int32_t>& prompt, int steps) {
  std::vector<float> lc = Feed(cpu, slot, prompt);
  std::vector<float> lg = Feed(cuda, slot, prompt);
  Agreement a;
  int agree = 0;
  for (int i = 0; i <= steps; ++i) {
    if (i % 8 == 0) Progress(absl::StrCat("   step ", i));
    a.worst_error = std::max(a.worst_error, MaxRelative(lg, lc));
    const int32_t next = Argmax(lc);
    agree += Argmax(lg) == next;
    if (i == steps) break;
    const std::vector<int32_t> t = {next};
    lc = Feed(cpu, slot, t);
    lg = Feed(cuda, slot, t);
  }
  a.fraction = static_cast<double>(agree) / (steps + 1);
  return a;
}

struct ModelCase {
  std::string name;
  model::ModelConfig config;
  model::DType dtype;
  double tolerance;
  // Multiplies every projection matrix (in_proj, x_proj, out_proj; a power of two, exact in
  // half precision): activations grow like the checkpoints transformers initializes (std 0.1
  // where the synthetic models take 0.02), whose SSM outputs exceed f16's range.
  float matrix_scale = 1.0f;
};

model::LoadedModel MakeCaseModel(const ModelCase& c) {
  model::LoadedModel m = MakeModel(c.config, c.dtype);
  if (c.matrix_scale == 1.0f) return m;
  m.weights.ForEachMutableTensor(
      c.config, [&](const model::TensorSpec& spec, model::TensorView& view) {
        if (!absl::EndsWith(spec.name, "in_proj.weight") &&
            !absl::EndsWith(spec.name, "x_proj.weight") &&
            !absl::EndsWith(spec.name, "out_proj.weight")) {
          return;
        }
        const size_t n = static_cast<size_t>(view.numel());
        std::vector<float> values(n);
        model::ConvertToFloat(view.dtype, view.data, values.data(), n);
        for (float& v : values) v *= c.matrix_scale;
        model::ConvertFromFloat(view.dtype, values.data(), const_cast<void*>(view.data), n);
      });
  return m;
}

void ExpectMatchesCpu(const ModelCase& c) {
  SCOPED_TRACE(c.name);
  Progress(absl::StrCat(c.name, ": creating backends"));
  std::unique_ptr<backend::Backend> cpu = MakeCpu(MakeCaseModel(c));
  std::unique_ptr<backend::Backend> cuda = MakeCuda(MakeCaseModel(c));
  ASSERT_NE(cpu, nullptr);
  ASSERT_NE(cuda, nullptr);
  EXPECT_EQ(cuda->name(), "cuda");
  EXPECT_EQ(cuda->weight_dtype(), c.dtype);
  EXPECT_EQ(cuda->state_bytes(), cpu->state_bytes());
  int32_t slot = 0;
  for (int len : {1, 13, 77}) {
    SCOPED_TRACE(absl::StrCat("prompt of ", len));
    Progress(absl::StrCat(c.name, ": prompt of ", len));
    const std::vector<int32_t> prompt = RandomTokens(len, c.config.vocab_size, 100 + len);
    const Agreement a = CompareGreedy(*cpu, *cuda, slot++, prompt, 24);
    EXPECT_LE(a.worst_error, c.tolerance);
    EXPECT_GE(a.fraction, kGreedyAgreement);
  }
}

TEST(CudaBackendTest, MatchesCpuBackendTinyF16) {
  SKIP_WITHOUT_GPU();
  ExpectMatchesCpu({"tiny f16", TinyConfig(), model::DType::kF16, kF16LogitTolerance});
}

TEST(CudaBackendTest, MatchesCpuBackendTinyBF16) {
  SKIP_WITHOUT_GPU();
  ExpectMatchesCpu({"tiny bf16", TinyConfig(), model::DType::kBF16, kBF16LogitTolerance});
}

TEST(CudaBackendTest, MatchesCpuBackendOddShapesF16) {
  SKIP_WITHOUT_GPU();
  ExpectMatchesCpu({"odd f16", OddConfig(), model::DType::kF16, kF16LogitTolerance});
}

TEST(CudaBackendTest, MatchesCpuBackend130mWidthsF16) {
  SKIP_WITHOUT_GPU();
  ExpectMatchesCpu(
      {"130m x 4 layers f16", Small130mConfig(), model::DType::kF16, kF16LogitTolerance});
}

// Mamba-2 (two groups of heads; then the 130m widths: 24 heads of 64, d_state 128) and
// FalconMamba (dt_low, B and C normalized after x_proj) against the CPU reference.
model::ModelConfig Synthetic(const std::string& name, int n_layer = 0) {
  model::ModelConfig c = model::SyntheticConfig(name).value();
  if (n_layer > 0) c.n_layer = n_layer;
  return c;
}

TEST(CudaBackendTest, MatchesCpuBackendMamba2) {
  SKIP_WITHOUT_GPU();
  ExpectMatchesCpu(
      {"mamba2-tiny f16", Synthetic("mamba2-tiny"), model::DType::kF16, kF16LogitTolerance});
  ExpectMatchesCpu(
      {"mamba2-tiny bf16", Synthetic("mamba2-tiny"), model::DType::kBF16, kBF16LogitTolerance});
  ExpectMatchesCpu({"mamba2-130m x 2 layers f16", Synthetic("mamba2-130m", 2), model::DType::kF16,
                    kF16LogitTolerance});
}

// Mamba-2 prefill through SSD's chunked matrix form (sequences of 16 tokens or more; the 130m
// head shape it serves): still the CPU reference's logits and greedy tokens, a prompt split over
// steps (inside a 64-token chunk) ends where one step ends up to rounding, and the deterministic
// mode ignores the setting (its bits equal the recurrence's).
TEST(CudaBackendTest, Mamba2ChunkedPrefillMatchesCpu) {
  SKIP_WITHOUT_GPU();
  struct Restore {
    int64_t was = cuda::SsdChunkedMinTokens();
    ~Restore() { cuda::SetSsdChunkedMinTokens(was); }
  } restore;
  cuda::SetSsdChunkedMinTokens(16);
  ExpectMatchesCpu({"mamba2-130m x 2 layers f16, chunked", Synthetic("mamba2-130m", 2),
                    model::DType::kF16, kF16LogitTolerance});
  ExpectMatchesCpu({"mamba2-130m x 2 layers bf16, chunked", Synthetic("mamba2-130m", 2),
                    model::DType::kBF16, kBF16LogitTolerance});

  const model::ModelConfig config = Synthetic("mamba2-130m", 2);
  std::unique_ptr<backend::Backend> cpu = MakeCpu(MakeModel(config, model::DType::kF16));
  std::unique_ptr<backend::Backend> chunked = MakeCuda(MakeModel(config, model::DType::kF16));
  ASSERT_NE(cpu, nullptr);
  ASSERT_NE(chunked, nullptr);
  const std::vector<int32_t> prompt = RandomTokens(300, config.vocab_size, 5);
  const std::vector<float> reference = Feed(*cpu, 0, prompt);
  const std::vector<float> whole = Feed(*chunked, 0, prompt);
  const std::vector<float> split = FeedChunked(*chunked, 1, prompt, 100);
  EXPECT_LE(MaxRelative(whole, reference), kF16LogitTolerance);
  EXPECT_LE(MaxRelative(split, reference), kF16LogitTolerance);
  EXPECT_EQ(Argmax(whole), Argmax(reference));
  EXPECT_EQ(Argmax(split), Argmax(reference));

  CudaOptions det;
  det.deterministic = true;
  std::unique_ptr<backend::Backend> deterministic =
      MakeCuda(MakeModel(config, model::DType::kF16), det);
  ASSERT_NE(deterministic, nullptr);
  const std::vector<float> a = Feed(*deterministic, 0, prompt);  // asked for the chunked form
  cuda::SetSsdChunkedMinTokens(0);
  const std::vector<float> b = Feed(*deterministic, 1, prompt);
  EXPECT_TRUE(BitEqual(a, b));
}

TEST(CudaBackendTest, MatchesCpuBackendFalconMamba) {
  SKIP_WITHOUT_GPU();
  ExpectMatchesCpu({"falcon-mamba-tiny f16", Synthetic("falcon-mamba-tiny"), model::DType::kF16,
                    kF16LogitTolerance});
  ExpectMatchesCpu({"falcon-mamba-tiny bf16", Synthetic("falcon-mamba-tiny"), model::DType::kBF16,
                    kBF16LogitTolerance});
}

// Large activations: with every projection 4x and 8x (the initialization scale of transformers'
// random checkpoints and twice it), Mamba-1's y = (C.h + D x) silu(z) reaches 1e4 and 1e6 and
// would overflow f16 (the CUDA backend refused such a model: "the logits ... are not finite");
// the backend's calibrated output shifts keep it in range, with and without the persistent decode
// kernel (which steps aside for a shifted model) and in the deterministic mode.
TEST(CudaBackendTest, LargeActivationsServeLikeTheCpu) {
  SKIP_WITHOUT_GPU();
  model::ModelConfig c = model::SyntheticConfig("130m").value();
  c.n_layer = 2;
  for (float scale : {4.0f, 8.0f}) {
    ExpectMatchesCpu({absl::StrCat("130m widths x 2 layers f16, matrices x", scale), c,
                      model::DType::kF16, kF16LogitTolerance, scale});
  }
  model::ModelConfig odd = OddConfig();  // biases, untied head
  ExpectMatchesCpu(
      {"odd shapes f16, matrices x8", odd, model::DType::kF16, kF16LogitTolerance, 8.0f});
  ExpectMatchesCpu({"falcon-mamba-tiny f16, matrices x8", Synthetic("falcon-mamba-tiny"),
                    model::DType::kF16, kF16LogitTolerance, 8.0f});
  kernels::SetPersistentDecode(kernels::PersistentDecode::kAlways);
  ExpectMatchesCpu({"130m widths x 2 layers f16, matrices x8, persistent decode asked", c,
                    model::DType::kF16, kF16LogitTolerance, 8.0f});
  kernels::SetPersistentDecode(kernels::PersistentDecode::kAuto);
}

// The CPU comparisons with every decode step of <= 4 rows on the persistent decode kernel (by
// default it runs only where it is faster: one row).
TEST(CudaBackendTest, MatchesCpuBackendWithPersistentDecode) {
  SKIP_WITHOUT_GPU();
  kernels::SetPersistentDecode(kernels::PersistentDecode::kAlways);
  ExpectMatchesCpu({"130m widths f16", Small130mConfig(), model::DType::kF16, kF16LogitTolerance});
  ExpectMatchesCpu({"tiny bf16", TinyConfig(), model::DType::kBF16, kBF16LogitTolerance});
  kernels::SetPersistentDecode(kernels::PersistentDecode::kAuto);
}

// The golden checkpoint folders (those with an expected.json), sorted.
std::vector<fs::path> GoldenDirs() {
  const fs::path root = fs::path(MAMBA_TEST_DATA_DIR) / "golden";
  std::vector<fs::path> dirs;
  std::error_code ec;
  if (fs::is_directory(root, ec)) {
    for (const fs::directory_entry& e : fs::directory_iterator(root, ec)) {
      if (e.is_directory() && fs::exists(e.path() / "expected.json")) dirs.push_back(e.path());
    }
  }
  std::sort(dirs.begin(), dirs.end());
  return dirs;
}

// A golden folder's expected.json (discarded when it does not parse).
nlohmann::json ReadExpected(const fs::path& dir) {
  std::ifstream in(dir / "expected.json");
  std::stringstream text;
  text << in.rdbuf();
  return nlohmann::json::parse(text.str(), nullptr, false);
}

// The golden HF checkpoints (tests/data/golden/*, made by tools/make_golden_checkpoints.py):
// last-position logits against HF's float64 ones, and greedy tokens, teacher-forced.
TEST(CudaBackendTest, MatchesTransformersGoldenCheckpoints) {
  SKIP_WITHOUT_GPU();
  const std::vector<fs::path> dirs = GoldenDirs();
  if (dirs.empty()) GTEST_SKIP() << "no golden checkpoints under tests/data/golden";
  for (const fs::path& dir : dirs) {
    SCOPED_TRACE(dir.filename().string());
    const nlohmann::json j = ReadExpected(dir);
    ASSERT_FALSE(j.is_discarded());
    model::LoadOptions load;
    load.dtype =
        model::DType::kF16;  // half precision on the GPU; the error includes the weight rounding
    absl::StatusOr<model::LoadedModel> model = model::LoadModel(dir.string(), load);
    ASSERT_TRUE(model.ok()) << model.status();
    std::unique_ptr<backend::Backend> cuda = MakeCuda(std::move(model).value());
    ASSERT_NE(cuda, nullptr);
    int32_t slot = 0;
    for (const nlohmann::json& p : j["prompts"]) {
      std::vector<int32_t> ids, greedy;
      std::vector<float> expected;
      for (const auto& v : p["ids"]) ids.push_back(v.get<int32_t>());
      for (const auto& v : p["last_logits"])
        expected.push_back(static_cast<float>(v.get<double>()));
      for (const auto& v : p["greedy"]) greedy.push_back(v.get<int32_t>());
      SCOPED_TRACE(absl::StrCat("prompt of ", ids.size()));
      std::vector<float> logits = Feed(*cuda, slot, ids);
      EXPECT_LE(MaxRelative(logits, expected), kF16LogitTolerance);
      int agree = 0;
      for (size_t i = 0; i < greedy.size(); ++i) {
        agree += Argmax(logits) == greedy[i];
        const std::vector<int32_t> t = {greedy[i]};
        logits = Feed(*cuda, slot, t);
      }
      EXPECT_GE(static_cast<double>(agree) / greedy.size(), kGreedyAgreement);
      ++slot;
    }
  }
}

// Batch-invariant mode: chunked prefill, prefill + decode, batch neighbours, mixed prefill and
// decode rows and prefill passes longer than the workspace change no bit.
TEST(CudaBackendTest, DeterministicModeIsBatchInvariantBitwise) {
  SKIP_WITHOUT_GPU();
  for (const ModelCase& c :
       {ModelCase{"tiny f16", TinyConfig(), model::DType::kF16, 0},
        ModelCase{"odd bf16", OddConfig(), model::DType::kBF16, 0},
        ModelCase{"mamba2-tiny f16", Synthetic("mamba2-tiny"), model::DType::kF16, 0},
        ModelCase{"falcon-mamba-tiny bf16", Synthetic("falcon-mamba-tiny"), model::DType::kBF16,
                  0}}) {
    SCOPED_TRACE(c.name);
    CudaOptions o;
    o.deterministic = true;
    std::unique_ptr<backend::Backend> b = MakeCuda(MakeModel(c.config, c.dtype), o);
    ASSERT_NE(b, nullptr);
    const int32_t v = c.config.vocab_size;
    const std::vector<int32_t> tokens = RandomTokens(60, v, 5);
    const std::vector<float> whole = Feed(*b, 0, tokens);
    for (size_t chunk : {1, 3, 17}) {
      SCOPED_TRACE(absl::StrCat("chunks of ", chunk));
      EXPECT_TRUE(BitEqual(FeedChunked(*b, 1, tokens, chunk), whole));
      ASSERT_TRUE(b->ResetSlot(1).ok());
    }
    // Prefill 59 then decode the 60th.
    Feed(*b, 2, absl::MakeConstSpan(tokens.data(), 59));
    EXPECT_TRUE(BitEqual(Feed(*b, 2, absl::MakeConstSpan(tokens.data() + 59, 1)), whole));

    // In a batch of 12 with other sequences, decode and prefill rows mixed.
    std::vector<std::vector<int32_t>> prompts;
    for (int i = 0; i < 12; ++i) prompts.push_back(RandomTokens(1 + 7 * i, v, 40 + i));
    std::vector<std::vector<float>> alone;
    for (int i = 0; i < 12; ++i) alone.push_back(Feed(*b, 10 + i, prompts[i]));
    for (int i = 0; i < 12; ++i) ASSERT_TRUE(b->ResetSlot(10 + i).ok());
    std::vector<backend::SeqWork> work(12);
    for (int i = 0; i < 12; ++i) {
      work[i].slot = 10 + i;
      work[i].tokens = prompts[i];
    }
    std::vector<std::vector<float>> batched = StepAll(*b, work);
    for (int i = 0; i < 12; ++i) EXPECT_TRUE(BitEqual(batched[i], alone[i])) << i;
    // One more token each, as a decode batch (graph path) and alone.
    const std::vector<int32_t> next = RandomTokens(12, v, 77);
    for (int i = 0; i < 12; ++i) work[i].tokens = absl::MakeConstSpan(&next[i], 1);
    batched = StepAll(*b, work);
    for (int i = 0; i < 12; ++i) {
      ASSERT_TRUE(b->ResetSlot(10 + i).ok());
      Feed(*b, 10 + i, prompts[i]);
      EXPECT_TRUE(BitEqual(Feed(*b, 10 + i, absl::MakeConstSpan(&next[i], 1)), batched[i])) << i;
    }
  }
}

// Without the batch-invariant mode GEMMs round differently per batch size: outputs stay within
// tolerance and greedy tokens agree at >= 99% of positions.
TEST(CudaBackendTest, BatchCompositionBarelyMattersWithoutDeterministicMode) {
  SKIP_WITHOUT_GPU();
  const model::ModelConfig config = Small130mConfig();
  std::unique_ptr<backend::Backend> b =
      MakeCuda(MakeModel(config, model::DType::kF16), {48, false, "f32", 64});
  ASSERT_NE(b, nullptr);
  const int n = 16, steps = 24;
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < n; ++i)
    prompts.push_back(RandomTokens(3 + 5 * i, config.vocab_size, 900 + i));
  // Alone: slots 0..15, generating greedily.
  std::vector<std::vector<int32_t>> alone(n);
  for (int i = 0; i < n; ++i) {
    std::vector<float> l = Feed(*b, i, prompts[i]);
    for (int s = 0; s < steps; ++s) {
      alone[i].push_back(Argmax(l));
      l = Feed(*b, i, absl::MakeConstSpan(&alone[i].back(), 1));
    }
  }
  // Together: slots 16..31, one batch per step.
  std::vector<backend::SeqWork> work(n);
  for (int i = 0; i < n; ++i) {
    work[i].slot = 16 + i;
    work[i].tokens = prompts[i];
  }
  std::vector<std::vector<float>> logits = StepAll(*b, work);
  std::vector<std::vector<int32_t>> together(n);
  std::vector<int32_t> last(n);
  for (int s = 0; s < steps; ++s) {
    for (int i = 0; i < n; ++i) {
      together[i].push_back(Argmax(logits[i]));
      last[i] = alone[i][s];  // teacher-forced on the alone run, so one flip does not cascade
      work[i].tokens = absl::MakeConstSpan(&last[i], 1);
    }
    logits = StepAll(*b, work);
  }
  int agree = 0;
  for (int i = 0; i < n; ++i) {
    for (int s = 0; s < steps; ++s) agree += together[i][s] == alone[i][s];
  }
  EXPECT_GE(static_cast<double>(agree) / (n * steps), kBatchAgreement);

  // Chunked prefill and prefill + decode stay within the half-precision tolerance.
  const std::vector<int32_t> tokens = RandomTokens(70, config.vocab_size, 3);
  const std::vector<float> whole = Feed(*b, 40, tokens);
  EXPECT_LE(MaxRelative(FeedChunked(*b, 41, tokens, 17), whole), kF16LogitTolerance);
  Feed(*b, 42, absl::MakeConstSpan(tokens.data(), 69));
  EXPECT_LE(MaxRelative(Feed(*b, 42, absl::MakeConstSpan(tokens.data() + 69, 1)), whole),
            kF16LogitTolerance);
}

TEST(CudaBackendTest, SlotSaveLoadCopyResetRoundTrips) {
  SKIP_WITHOUT_GPU();
  const model::ModelConfig config = TinyConfig();
  for (const std::string& state : {std::string("f32"), std::string("bf16")}) {
    SCOPED_TRACE(state);
    CudaOptions o;
    o.state_dtype = state;
    std::unique_ptr<backend::Backend> b = MakeCuda(MakeModel(config, model::DType::kF16), o);
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(b->state_dtype(), state == "f32" ? model::DType::kF32 : model::DType::kBF16);
    const std::vector<int32_t> prompt = RandomTokens(40, config.vocab_size, 8);
    const std::vector<int32_t> more = RandomTokens(5, config.vocab_size, 9);
    Feed(*b, 0, prompt);
    std::unique_ptr<backend::HostState> saved = b->AllocateHostState();
    ASSERT_EQ(saved->size(), b->state_bytes());
    ASSERT_TRUE(b->SaveSlot(0, saved.get()).ok());
    ASSERT_TRUE(b->LoadSlot(3, *saved).ok());
    ASSERT_TRUE(b->CopySlot(0, 4).ok());
    const std::vector<float> a = Feed(*b, 0, more);
    EXPECT_TRUE(BitEqual(Feed(*b, 3, more), a));
    EXPECT_TRUE(BitEqual(Feed(*b, 4, more), a));
    // The original evolves independently of its copies.
    std::unique_ptr<backend::HostState> after = b->AllocateHostState();
    ASSERT_TRUE(b->SaveSlot(3, after.get()).ok());
    EXPECT_NE(std::memcmp(after->data(), saved->data(), saved->size()), 0);
    // Reset gives a fresh sequence.
    ASSERT_TRUE(b->ResetSlot(0).ok());
    EXPECT_TRUE(BitEqual(Feed(*b, 0, prompt), Feed(*b, 5, prompt)));
    // Mismatched host states are refused.
    backend::HeapHostState wrong(model::DType::kF16, b->state_bytes());
    EXPECT_EQ(b->LoadSlot(1, wrong).code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(b->SaveSlot(99, saved.get()).code(), absl::StatusCode::kInvalidArgument);
  }
}

// States have the CPU backend's layout (f32): a state moves between backends and continues.
TEST(CudaBackendTest, StatesMoveBetweenCpuAndCuda) {
  SKIP_WITHOUT_GPU();
  const model::ModelConfig config = TinyConfig();
  std::unique_ptr<backend::Backend> cpu = MakeCpu(MakeModel(config, model::DType::kF16));
  std::unique_ptr<backend::Backend> cuda = MakeCuda(MakeModel(config, model::DType::kF16));
  const std::vector<int32_t> prompt = RandomTokens(30, config.vocab_size, 12);
  const std::vector<int32_t> more = RandomTokens(4, config.vocab_size, 13);
  Feed(*cpu, 0, prompt);
  std::unique_ptr<backend::HostState> h = cpu->AllocateHostState();
  ASSERT_TRUE(cpu->SaveSlot(0, h.get()).ok());
  std::unique_ptr<backend::HostState> g = cuda->AllocateHostState();
  ASSERT_EQ(g->size(), h->size());
  std::memcpy(g->data(), h->data(), h->size());
  ASSERT_TRUE(cuda->LoadSlot(0, *g).ok());
  EXPECT_LE(MaxRelative(Feed(*cuda, 0, more), Feed(*cpu, 0, more)), kF16LogitTolerance);
}

// A graph replay computes exactly what the same step run eagerly computes.
TEST(CudaBackendTest, GraphReplayEqualsEagerRun) {
  SKIP_WITHOUT_GPU();
  const model::ModelConfig config = TinyConfig();
  std::unique_ptr<backend::Backend> b = MakeCuda(MakeModel(config, model::DType::kF16));
  ASSERT_NE(b, nullptr);
  const int n = 5;  // padded to the bucket of 8
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < n; ++i) {
    prompts.push_back(RandomTokens(10 + i, config.vocab_size, 60 + i));
    Feed(*b, i, prompts[i]);
    Feed(*b, 8 + i, prompts[i]);
  }
  const std::vector<int32_t> next = RandomTokens(n, config.vocab_size, 61);
  std::vector<backend::SeqWork> graph_work(n), eager_work(n);
  for (int i = 0; i < n; ++i) {
    graph_work[i].slot = i;
    eager_work[i].slot = 8 + i;
    graph_work[i].tokens = eager_work[i].tokens = absl::MakeConstSpan(&next[i], 1);
    graph_work[i].want_logits = eager_work[i].want_logits = true;
    graph_work[i].sample = eager_work[i].sample = true;
    graph_work[i].sampling.temperature = eager_work[i].sampling.temperature = 0.9f;
    graph_work[i].sampling.seed = eager_work[i].sampling.seed = 1000 + i;
    graph_work[i].top_logprobs = eager_work[i].top_logprobs = 3;
  }
  std::vector<backend::SeqResult> graph_results(n), eager_results(n);
  ASSERT_TRUE(b->Step(graph_work, absl::MakeSpan(graph_results)).ok());
  absl::StatusOr<std::vector<cuda::CudaKernelTime>> times =
      cuda::ProfileCudaStep(*b, eager_work, absl::MakeSpan(eager_results));
  ASSERT_TRUE(times.ok()) << times.status();
  EXPECT_FALSE(times->empty());
  for (int i = 0; i < n; ++i) {
    EXPECT_TRUE(BitEqual(graph_results[i].logits, eager_results[i].logits)) << i;
    EXPECT_EQ(graph_results[i].token, eager_results[i].token);
    EXPECT_EQ(graph_results[i].top.size(), 3u);
  }
}

// Tokens sampled on the device are the ones the host sampler draws from the same logits.
TEST(CudaBackendTest, DeviceSamplingMatchesHostSamplerOnItsLogits) {
  SKIP_WITHOUT_GPU();
  const model::ModelConfig config = Small130mConfig();
  std::unique_ptr<backend::Backend> b = MakeCuda(MakeModel(config, model::DType::kF16));
  ASSERT_NE(b, nullptr);
  const std::vector<int32_t> penalty = RandomTokens(20, config.vocab_size, 1);
  // Generated tokens for the additive penalties: repeats, and ids shared with `penalty`.
  std::vector<int32_t> output = RandomTokens(30, config.vocab_size, 2);
  output.insert(output.end(), {output[0], output[0], output[3], penalty[0], penalty[0]});
  std::vector<backend::SeqWork> work(6);
  std::vector<std::vector<int32_t>> prompts(6);
  for (int i = 0; i < 6; ++i) {
    prompts[i] = RandomTokens(5 + i, config.vocab_size, 300 + i);
    work[i].slot = i;
    work[i].tokens = prompts[i];
    work[i].sample = true;
    work[i].want_logits = true;
    work[i].sampling.temperature = 0.7f + 0.1f * i;
    work[i].sampling.top_k = i % 2 == 0 ? 50 : 0;
    work[i].sampling.top_p = i >= 3 ? 0.9f : 1.0f;
    work[i].sampling.min_p = i == 5 ? 0.05f : 0.0f;
    work[i].sampling.repetition_penalty = i == 4 || i == 5 ? 1.3f : 1.0f;
    work[i].sampling.frequency_penalty = i == 1 || i == 5 ? 0.7f : (i == 2 ? -1.5f : 0.0f);
    work[i].sampling.presence_penalty = i == 1 || i == 3 ? 2.0f : 0.0f;
    work[i].sampling.seed = 42 + i;
    work[i].sample_position = 3;
    work[i].penalty_tokens = penalty;
    work[i].output_tokens = output;
    work[i].top_logprobs = 4;
  }
  // And greedy with every penalty.
  work[0].sampling.temperature = 0.0f;
  work[0].sampling.repetition_penalty = 1.2f;
  work[0].sampling.frequency_penalty = 1.0f;
  work[0].sampling.presence_penalty = 0.5f;
  std::vector<backend::SeqResult> results(6);
  ASSERT_TRUE(b->Step(work, absl::MakeSpan(results)).ok());
  sampling::Sampler sampler;
  for (int i = 0; i < 6; ++i) {
    sampling::SampleOutput want;
    ASSERT_TRUE(sampler
                    .Sample(results[i].logits, work[i].sampling, work[i].sample_position,
                            work[i].penalty_tokens, work[i].output_tokens, 4, &want)
                    .ok());
    EXPECT_EQ(results[i].token, want.token) << i;
    EXPECT_NEAR(results[i].logprob, want.logprob, 1e-5);
    ASSERT_EQ(results[i].top.size(), want.top.size());
    for (size_t k = 0; k < want.top.size(); ++k)
      EXPECT_EQ(results[i].top[k].token, want.top[k].token);
  }
}

// Graph-captured decode steps with every penalty: the device draws what the host sampler draws
// from the same logits, also after the penalty lists outgrow their first buffer (the graphs that
// captured its address are dropped and captured again).
TEST(CudaBackendTest, DecodeWithPenaltiesMatchesHostSampler) {
  SKIP_WITHOUT_GPU();
  const model::ModelConfig config = Small130mConfig();
  std::unique_ptr<backend::Backend> b = MakeCuda(MakeModel(config, model::DType::kF16));
  ASSERT_NE(b, nullptr);
  constexpr int kRows = 3;
  std::vector<std::vector<int32_t>> history(kRows), output(kRows);
  std::vector<int32_t> next(kRows);
  std::vector<backend::SeqWork> work(kRows);
  for (int i = 0; i < kRows; ++i) {
    history[i] = RandomTokens(12 + i, config.vocab_size, 500 + i);
    next[i] = history[i].back();
    Feed(*b, i, absl::MakeConstSpan(history[i]).first(history[i].size() - 1));
    work[i].slot = i;
    work[i].sample = true;
    work[i].want_logits = true;
    work[i].top_logprobs = 2;
    work[i].sampling.seed = 7 + i;
  }
  work[0].sampling.frequency_penalty = 0.5f;  // greedy
  work[0].sampling.presence_penalty = 0.5f;
  work[1].sampling.temperature = 0.8f;
  work[1].sampling.top_p = 0.9f;
  work[1].sampling.repetition_penalty = 1.2f;
  work[1].sampling.frequency_penalty = 1.0f;
  work[2].sampling.temperature = 1.0f;
  work[2].sampling.top_k = 40;
  work[2].sampling.presence_penalty = -2.0f;
  sampling::Sampler sampler;
  for (int step = 0; step < 10; ++step) {
    SCOPED_TRACE(absl::StrCat("step ", step));
    if (step == 5) {
      // 6000 earlier generated ids: 12000 words of (id, amount) pairs, past the first buffer.
      const std::vector<int32_t> earlier = RandomTokens(6000, config.vocab_size, 77);
      output[2].insert(output[2].begin(), earlier.begin(), earlier.end());
    }
    for (int i = 0; i < kRows; ++i) {
      work[i].tokens = absl::MakeConstSpan(&next[i], 1);
      work[i].sample_position = static_cast<uint64_t>(step);
      work[i].penalty_tokens = history[i];
      work[i].output_tokens = output[i];
    }
    std::vector<backend::SeqResult> results(kRows);
    ASSERT_TRUE(b->Step(work, absl::MakeSpan(results)).ok());
    for (int i = 0; i < kRows; ++i) {
      SCOPED_TRACE(absl::StrCat("row ", i));
      ASSERT_TRUE(results[i].status.ok()) << results[i].status;
      sampling::SampleOutput want;
      ASSERT_TRUE(sampler
                      .Sample(results[i].logits, work[i].sampling, work[i].sample_position,
                              work[i].penalty_tokens, work[i].output_tokens, 2, &want)
                      .ok());
      EXPECT_EQ(results[i].token, want.token);
      EXPECT_NEAR(results[i].logprob, want.logprob, 1e-5);
      next[i] = results[i].token;
      history[i].push_back(next[i]);
      output[i].push_back(next[i]);
    }
  }
}

// A prompt longer than one prefill pass (8192 tokens) is processed in several passes.
TEST(CudaBackendTest, PromptsLongerThanOnePass) {
  SKIP_WITHOUT_GPU();
  const model::ModelConfig config = TinyConfig();
  std::unique_ptr<backend::Backend> cpu = MakeCpu(MakeModel(config, model::DType::kF16));
  std::unique_ptr<backend::Backend> cuda = MakeCuda(MakeModel(config, model::DType::kF16));
  const std::vector<int32_t> prompt = RandomTokens(9000, config.vocab_size, 21);
  EXPECT_LE(MaxRelative(Feed(*cuda, 0, prompt), Feed(*cpu, 0, prompt)), kF16LogitTolerance);
}

TEST(CudaBackendTest, Bf16StatesStayClose) {
  SKIP_WITHOUT_GPU();
  const model::ModelConfig config = Small130mConfig();
  CudaOptions bf;
  bf.state_dtype = "bf16";
  std::unique_ptr<backend::Backend> f32 = MakeCuda(MakeModel(config, model::DType::kF16));
  std::unique_ptr<backend::Backend> b16 = MakeCuda(MakeModel(config, model::DType::kF16), bf);
  ASSERT_NE(b16, nullptr);
  EXPECT_EQ(b16->state_bytes() * 2, f32->state_bytes());
  const std::vector<int32_t> prompt = RandomTokens(50, config.vocab_size, 31);
  const std::vector<int32_t> more = RandomTokens(8, config.vocab_size, 32);
  Feed(*f32, 0, prompt);
  Feed(*b16, 0, prompt);
  for (int32_t t : more) {
    const std::vector<int32_t> one = {t};
    EXPECT_LE(MaxRelative(Feed(*b16, 0, one), Feed(*f32, 0, one)), kBF16LogitTolerance);
  }
}

// Issue 25's accuracy report for bf16 states: every golden checkpoint (both families' reference
// prompts, teacher-forced along the float64 reference's greedy tokens) and two synthetic models
// at the 130m widths decoding 256 tokens, with fp32 and with bf16 states. Prints per case the
// greedy agreement with the reference (or with the fp32 run for the synthetic models) and the
// chosen tokens' log-probability differences between the two state dtypes; fails past loose
// bounds (bf16 agreement >= 0.9 and within 0.05 of fp32's, |dlogprob| <= 0.25). Disabled (run on
// demand: scripts/gpu/run_cuda_checks.sh bf16report) until a GPU run has set those bounds from
// data; then it joins the suite.
double LogSoftmaxAt(const std::vector<float>& logits, int32_t id) {
  const double mx = *std::max_element(logits.begin(), logits.end());
  double sum = 0.0;
  for (float v : logits) sum += std::exp(static_cast<double>(v) - mx);
  return static_cast<double>(logits[id]) - mx - std::log(sum);
}

struct StateDtypeReport {
  int positions = 0;
  int agree_f32 = 0, agree_bf16 = 0;
  double max_dlogprob = 0.0, sum_dlogprob = 0.0;
  void Add(const std::vector<float>& f32, const std::vector<float>& b16, int32_t expected) {
    ++positions;
    agree_f32 += Argmax(f32) == expected;
    agree_bf16 += Argmax(b16) == expected;
    const double d = std::abs(LogSoftmaxAt(b16, expected) - LogSoftmaxAt(f32, expected));
    max_dlogprob = std::max(max_dlogprob, d);
    sum_dlogprob += d;
  }
  void Print(const std::string& name) const {
    std::fprintf(stderr,
                 "bf16-state report | %-28s | %4d positions | greedy agreement f32 %.3f, bf16 "
                 "%.3f | |dlogprob| max %.4f, mean %.5f\n",
                 name.c_str(), positions, static_cast<double>(agree_f32) / positions,
                 static_cast<double>(agree_bf16) / positions, max_dlogprob,
                 sum_dlogprob / positions);
  }
  void Check() const {
    ASSERT_GT(positions, 0);
    const double f = static_cast<double>(agree_f32) / positions;
    const double b = static_cast<double>(agree_bf16) / positions;
    EXPECT_GE(b, 0.9);
    EXPECT_GE(b, f - 0.05);
    EXPECT_LE(max_dlogprob, 0.25);
  }
};

TEST(CudaBackendTest, DISABLED_Bf16StateAccuracyReport) {
  SKIP_WITHOUT_GPU();
  CudaOptions bf;
  bf.state_dtype = "bf16";
  // The golden checkpoints, against the reference's greedy tokens.
  for (const fs::path& dir : GoldenDirs()) {
    SCOPED_TRACE(dir.filename().string());
    const nlohmann::json j = ReadExpected(dir);
    ASSERT_FALSE(j.is_discarded());
    model::LoadOptions load;
    load.dtype = model::DType::kF16;
    absl::StatusOr<model::LoadedModel> m1 = model::LoadModel(dir.string(), load);
    absl::StatusOr<model::LoadedModel> m2 = model::LoadModel(dir.string(), load);
    ASSERT_TRUE(m1.ok() && m2.ok());
    std::unique_ptr<backend::Backend> f32 = MakeCuda(std::move(m1).value());
    std::unique_ptr<backend::Backend> b16 = MakeCuda(std::move(m2).value(), bf);
    ASSERT_TRUE(f32 != nullptr && b16 != nullptr);
    StateDtypeReport report;
    int32_t slot = 0;
    for (const nlohmann::json& p : j["prompts"]) {
      std::vector<int32_t> ids, greedy;
      for (const auto& v : p["ids"]) ids.push_back(v.get<int32_t>());
      for (const auto& v : p["greedy"]) greedy.push_back(v.get<int32_t>());
      std::vector<float> lf = Feed(*f32, slot, ids), lb = Feed(*b16, slot, ids);
      for (int32_t next : greedy) {
        report.Add(lf, lb, next);
        const std::vector<int32_t> t = {next};
        lf = Feed(*f32, slot, t);
        lb = Feed(*b16, slot, t);
      }
      ++slot;
    }
    report.Print(dir.filename().string());
    report.Check();
  }
  // Long decodes at the 130m widths (two layers), along the fp32 run's greedy tokens.
  for (const char* name : {"130m", "mamba2-130m"}) {
    SCOPED_TRACE(name);
    const model::ModelConfig config = Synthetic(name, 2);
    std::unique_ptr<backend::Backend> f32 = MakeCuda(MakeModel(config, model::DType::kF16));
    std::unique_ptr<backend::Backend> b16 = MakeCuda(MakeModel(config, model::DType::kF16), bf);
    ASSERT_TRUE(f32 != nullptr && b16 != nullptr);
    const std::vector<int32_t> prompt = RandomTokens(64, config.vocab_size, 41);
    std::vector<float> lf = Feed(*f32, 0, prompt), lb = Feed(*b16, 0, prompt);
    StateDtypeReport report;
    for (int i = 0; i < 256; ++i) {
      const int32_t next = Argmax(lf);
      report.Add(lf, lb, next);
      const std::vector<int32_t> t = {next};
      lf = Feed(*f32, 0, t);
      lb = Feed(*b16, 0, t);
    }
    report.Print(absl::StrCat("synthetic ", name, " x 2 layers"));
    report.Check();
  }
}

// Decode steps of <= 4 rows run every layer in one persistent kernel; it must compute what the
// layered kernels compute (same math and rounding points; only summation orders differ), for
// every row count, both state dtypes, and leave the same states behind.
// On demand (scripts/gpu/run_cuda_checks.sh numerics): where the half-precision CUDA path's
// first-token logprob leaves the CPU's, layer by layer. Each model is cut to its first L layers
// (L = 1..n_layer) and a 70-token prompt is fed to the CPU backend and to the CUDA backend as one
// prefill, as one prefill in the deterministic mode (no time-parallel scan segments, the
// batch-invariant GEMMs), and as a 69-token prefill followed by the last token through the decode
// kernels. Printed: |dlogprob| of the CPU's greedy token and the largest relative logit error.
// Storage in f16 alone accounts for at most ~0.01 on such models (bench/RESULTS.md, the CPU
// emulation); the checkpoint showed 0.054. Fails when the full model's prefill is
// further than 1e-2 from the CPU. MAMBA_NUMERICS_CHECKPOINT=DIR adds a checkpoint folder.
model::LoadedModel FirstLayers(model::LoadedModel m, int layers) {
  m.config.n_layer = layers;
  m.weights.layers.resize(static_cast<size_t>(layers));
  return m;
}

TEST(CudaBackendTest, DISABLED_LayerByLayerNumericsReport) {
  SKIP_WITHOUT_GPU();
  struct Source {
    std::string name;
    std::function<model::LoadedModel()> make;
  };
  std::vector<Source> sources;
  for (float scale : {4.0f, 8.0f}) {
    model::ModelConfig c = Synthetic("130m", 5);
    c.use_bias = true;
    const ModelCase mc{absl::StrCat("130m x 5 layers, biases, projections x", scale), c,
                       model::DType::kF16, 0.0, scale};
    sources.push_back({mc.name, [mc] { return MakeCaseModel(mc); }});
  }
  std::vector<std::string> dirs;
  for (const fs::path& dir : GoldenDirs()) {
    if (dir.filename() == "b_f16_untied_bias") dirs.push_back(dir.string());
  }
  if (const char* extra = std::getenv("MAMBA_NUMERICS_CHECKPOINT")) dirs.push_back(extra);
  for (const std::string& dir : dirs) {
    sources.push_back({fs::path(dir).filename().string(), [dir] {
                         absl::StatusOr<model::LoadedModel> m = model::LoadModel(dir);
                         EXPECT_TRUE(m.ok()) << m.status();
                         return m.ok() ? std::move(m).value() : model::LoadedModel();
                       }});
  }
  CudaOptions det;
  det.deterministic = true;
  for (const Source& src : sources) {
    SCOPED_TRACE(src.name);
    const int n_layer = src.make().config.n_layer;
    ASSERT_GT(n_layer, 0);
    double full_prefill = 0.0;
    for (int layers = 1; layers <= n_layer; ++layers) {
      std::unique_ptr<backend::Backend> cpu = MakeCpu(FirstLayers(src.make(), layers));
      std::unique_ptr<backend::Backend> cuda = MakeCuda(FirstLayers(src.make(), layers));
      std::unique_ptr<backend::Backend> cuda_det = MakeCuda(FirstLayers(src.make(), layers), det);
      ASSERT_TRUE(cpu != nullptr && cuda != nullptr && cuda_det != nullptr);
      const std::vector<int32_t> prompt = RandomTokens(70, cpu->config().vocab_size, 3);
      const std::vector<int32_t> head(prompt.begin(), prompt.end() - 1);
      const std::vector<int32_t> last = {prompt.back()};
      const std::vector<float> ref = Feed(*cpu, 0, prompt);
      const std::vector<float> prefill = Feed(*cuda, 0, prompt);
      const std::vector<float> prefill_det = Feed(*cuda_det, 0, prompt);
      Feed(*cuda, 1, head);
      const std::vector<float> decoded = Feed(*cuda, 1, last);
      const int32_t greedy = Argmax(ref);
      auto dlogprob = [&](const std::vector<float>& v) {
        return std::abs(LogSoftmaxAt(v, greedy) - LogSoftmaxAt(ref, greedy));
      };
      std::fprintf(stderr,
                   "numerics report | %-44s | %d layers | |dlogprob| prefill %.4f, "
                   "deterministic %.4f, last token decoded %.4f | max rel logit %.4f\n",
                   src.name.c_str(), layers, dlogprob(prefill), dlogprob(prefill_det),
                   dlogprob(decoded), MaxRelative(prefill, ref));
      EXPECT_TRUE(std::isfinite(dlogprob(prefill)) && std::isfinite(dlogprob(decoded)));
      if (layers == n_layer) full_prefill = dlogprob(prefill);
    }
    EXPECT_LE(full_prefill, 1e-2);
  }
}

TEST(CudaBackendTest, PersistentDecodeMatchesLayeredKernels) {
  SKIP_WITHOUT_GPU();
  struct Case {
    std::string name;
    model::ModelConfig config;
    model::DType dtype;
    std::string state;
  };
  const Case cases[] = {
      {"130m widths, f16, f32 states", Small130mConfig(), model::DType::kF16, "f32"},
      {"tiny, bf16, bf16 states", TinyConfig(), model::DType::kBF16, "bf16"}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Progress(c.name);
    CudaOptions o;
    o.state_dtype = c.state;
    o.max_batch = 8;
    // Decode graphs are captured when the backend is created, under the policy of that moment.
    kernels::SetPersistentDecode(kernels::PersistentDecode::kOff);
    std::unique_ptr<backend::Backend> layered = MakeCuda(MakeModel(c.config, c.dtype), o);
    kernels::SetPersistentDecode(kernels::PersistentDecode::kAlways);
    std::unique_ptr<backend::Backend> persistent = MakeCuda(MakeModel(c.config, c.dtype), o);
    ASSERT_NE(layered, nullptr);
    ASSERT_NE(persistent, nullptr);
    const double tolerance =
        c.dtype == model::DType::kF16 ? kF16LogitTolerance : kBF16LogitTolerance;
    int32_t slot = 0;
    for (int rows = 1; rows <= 4; ++rows) {
      SCOPED_TRACE(absl::StrCat(rows, " rows"));
      std::vector<int32_t> slots;
      std::vector<int32_t> next(rows);
      for (int r = 0; r < rows; ++r) {
        slots.push_back(slot++);
        const std::vector<int32_t> prompt =
            RandomTokens(9 + 5 * r, c.config.vocab_size, 300 + 10 * rows + r);
        next[r] = Argmax(Feed(*layered, slots[r], prompt));
        Feed(*persistent, slots[r], prompt);
      }
      int agree = 0, total = 0;
      double worst = 0.0;
      for (int step = 0; step < 12; ++step) {
        std::vector<backend::SeqWork> work(rows);
        for (int r = 0; r < rows; ++r) {
          work[r].slot = slots[r];
          work[r].tokens = absl::MakeConstSpan(&next[r], 1);
        }
        const std::vector<std::vector<float>> want = StepAll(*layered, work);
        const std::vector<std::vector<float>> got = StepAll(*persistent, work);
        for (int r = 0; r < rows; ++r) {
          worst = std::max(worst, MaxRelative(got[r], want[r]));
          agree += Argmax(got[r]) == Argmax(want[r]);
          ++total;
          next[r] = Argmax(want[r]);  // both continue with the layered path's token
        }
      }
      EXPECT_LE(worst, tolerance);
      EXPECT_GE(static_cast<double>(agree) / total, kGreedyAgreement);
      // The states left behind (conv and SSM, every layer) agree as closely.
      for (int32_t s : slots) {
        std::unique_ptr<backend::HostState> a = layered->AllocateHostState();
        std::unique_ptr<backend::HostState> b = persistent->AllocateHostState();
        ASSERT_TRUE(layered->SaveSlot(s, a.get()).ok());
        ASSERT_TRUE(persistent->SaveSlot(s, b.get()).ok());
        std::vector<float> fa(a->size() / model::DTypeSize(a->dtype()));
        std::vector<float> fb(fa.size());
        model::ConvertToFloat(a->dtype(), a->data(), fa.data(), fa.size());
        model::ConvertToFloat(b->dtype(), b->data(), fb.data(), fb.size());
        EXPECT_LE(MaxRelative(fb, fa), tolerance) << "slot " << s;
      }
    }
  }
  kernels::SetPersistentDecode(kernels::PersistentDecode::kAuto);
}

TEST(CudaBackendTest, BadInputsAreRefusedWithReasons) {
  SKIP_WITHOUT_GPU();
  const model::ModelConfig config = TinyConfig();
  std::unique_ptr<backend::Backend> b =
      MakeCuda(MakeModel(config, model::DType::kF16), {4, false, "f32", 8});
  ASSERT_NE(b, nullptr);
  const std::vector<int32_t> ok = {1, 2, 3};
  const std::vector<int32_t> bad = {1, config.vocab_size};
  const std::vector<int32_t> none;
  // A refused sequence fails alone (its status says why); the one beside it runs.
  auto refused = [&](backend::SeqWork w) {
    backend::SeqWork good;
    good.slot = 3;
    good.tokens = ok;
    good.sample = true;
    // The good one first: of two items naming one slot, the second is the one refused.
    std::vector<backend::SeqWork> work = {good, w};
    std::vector<backend::SeqResult> r(work.size());
    EXPECT_TRUE(b->Step(work, absl::MakeSpan(r)).ok());
    EXPECT_TRUE(r[0].status.ok()) << r[0].status;
    EXPECT_GE(r[0].token, 0);
    return r[1].status.code();
  };
  backend::SeqWork w;
  w.slot = 4;
  w.tokens = ok;
  EXPECT_EQ(refused(w), absl::StatusCode::kInvalidArgument);  // slot out of range
  w.slot = 3;
  EXPECT_EQ(refused(w), absl::StatusCode::kInvalidArgument);  // slot twice
  w.slot = 0;
  w.tokens = bad;
  EXPECT_EQ(refused(w), absl::StatusCode::kInvalidArgument);  // token out of range
  w.tokens = none;
  EXPECT_EQ(refused(w), absl::StatusCode::kInvalidArgument);  // no tokens
  w.tokens = ok;
  w.sample = true;
  const std::vector<int32_t> bad_output = {2, config.vocab_size};
  w.output_tokens = bad_output;
  w.sampling.frequency_penalty = 1.0f;
  EXPECT_EQ(refused(w), absl::StatusCode::kInvalidArgument);  // generated token out of range
  w.output_tokens = {};
  w.sampling.frequency_penalty = 0.0f;
  auto step = [&](std::vector<backend::SeqWork> work) {
    std::vector<backend::SeqResult> r(work.size());
    return b->Step(work, absl::MakeSpan(r));
  };
  std::vector<backend::SeqWork> many(9, w);
  for (int i = 0; i < 9; ++i) many[i].slot = i % 4;
  EXPECT_EQ(step(many).code(), absl::StatusCode::kInvalidArgument);  // beyond max_batch
  EXPECT_TRUE(step({w}).ok());

  // Out of device memory at startup is a clear error, not a crash.
  backend::BackendOptions options;
  options.kind = "cuda";
  options.num_slots = 1 << 30;
  model::LoadedModel m = MakeModel(model::SyntheticConfig("130m").value(), model::DType::kF16);
  absl::StatusOr<std::unique_ptr<backend::Backend>> huge = cuda::CreateCudaBackend(options, m);
  EXPECT_EQ(huge.status().code(), absl::StatusCode::kResourceExhausted) << huge.status();
  options.num_slots = 0;
  options.device = cuda::CudaDeviceCount();
  model::LoadedModel m2 = MakeModel(config, model::DType::kF16);
  EXPECT_EQ(cuda::CreateCudaBackend(options, m2).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// A state poisoned with NaN fails its own sequence in a decode step (graph-captured) and in a
// prefill step; the sequences beside it sample exactly what they sample beside a healthy one.
TEST(CudaBackendTest, ANonFiniteSequenceFailsAloneInItsStep) {
  SKIP_WITHOUT_GPU();
  std::unique_ptr<backend::Backend> b = MakeCuda(MakeModel(TinyConfig(), model::DType::kF16));
  ASSERT_NE(b, nullptr);
  const std::vector<int32_t> prompt = RandomTokens(6, 257, 31);
  std::unique_ptr<backend::HostState> poisoned = b->AllocateHostState();
  const size_t width = model::DTypeSize(poisoned->dtype());
  for (size_t i = 0; i + width <= poisoned->size(); i += width) {
    std::memset(poisoned->data() + i, 0xff, width);  // all-ones: NaN in f32 and bf16 alike
  }
  for (const std::vector<int32_t>& tokens : {std::vector<int32_t>{9}, prompt}) {
    SCOPED_TRACE(tokens.size() == 1 ? "decode" : "prefill");
    // The same batch shape both times (4 sequences, slot 3 healthy first), so that every kernel
    // takes the same path and the healthy rows compare bitwise.
    std::vector<std::unique_ptr<backend::HostState>> healthy;
    for (int32_t slot = 0; slot < 4; ++slot) {
      ASSERT_TRUE(b->ResetSlot(slot).ok());
      Feed(*b, slot, RandomTokens(4 + slot, 257, 40 + slot));
      healthy.push_back(b->AllocateHostState());
      ASSERT_TRUE(b->SaveSlot(slot, healthy.back().get()).ok());
    }
    std::vector<backend::SeqWork> work(4);
    for (int32_t slot = 0; slot < 4; ++slot) {
      work[slot].slot = slot;
      work[slot].tokens = tokens;
      work[slot].sample = true;
    }
    std::vector<backend::SeqResult> alone(4);
    ASSERT_TRUE(b->Step(work, absl::MakeSpan(alone)).ok());
    for (int32_t slot = 0; slot < 3; ++slot) ASSERT_TRUE(b->LoadSlot(slot, *healthy[slot]).ok());
    ASSERT_TRUE(b->LoadSlot(3, *poisoned).ok());
    std::vector<backend::SeqResult> results(4);
    ASSERT_TRUE(b->Step(work, absl::MakeSpan(results)).ok());
    EXPECT_EQ(results[3].status.code(), absl::StatusCode::kInternal) << results[3].status;
    EXPECT_EQ(std::string(results[3].status.message()).find("slot"), std::string::npos);
    for (int32_t slot = 0; slot < 3; ++slot) {
      SCOPED_TRACE(slot);
      ASSERT_TRUE(results[slot].status.ok()) << results[slot].status;
      EXPECT_EQ(results[slot].token, alone[slot].token);
    }
  }
}

TEST(CudaBackendTest, SlotCountComesFromFreeMemory) {
  SKIP_WITHOUT_GPU();
  backend::BackendOptions options;
  options.kind = "cuda";
  options.num_slots = 0;
  options.gpu_memory_fraction = 0.01;
  model::LoadedModel m = MakeModel(model::SyntheticConfig("130m").value(), model::DType::kF16);
  absl::StatusOr<std::unique_ptr<backend::Backend>> b = cuda::CreateCudaBackend(options, m);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_GE((*b)->num_slots(), 1);
  EXPECT_LE((*b)->num_slots(), 4096);
}

}  // namespace
}  // namespace mamba
