// The CPU backend against an independent double-precision reference, and the invariants the
// scheduler and sessions rely on: chunked prefill, prefill + decode, copied states, batching.
//
// Equality claims are bitwise: every value a sequence computes depends only on its own tokens and
// state through a fixed order of floating-point operations (see engine/cpu/cpu_model.h), so a
// chunk boundary, a batch neighbour, or the thread count cannot change a single bit.
#include "engine/cpu/cpu_backend.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "engine/backend/backend.h"
#include "engine/cpu/cpu_model.h"
#include "engine/model/model_loader.h"
#include "gtest/gtest.h"
#include "tests/unit/cpu/reference_mamba.h"

namespace mamba {
namespace {

using ::mamba::testing::ReferenceMamba;

struct ModelCase {
  std::string name;
  model::ModelConfig config;
  model::DType dtype;
};

model::ModelConfig TinyConfig() { return model::SyntheticConfig("tiny").value(); }

// Sizes that are not multiples of the vector width anywhere: d_inner, d_state, dt_rank and
// d_model leave tails, the conv kernel is 3, biases are on, the head is untied.
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

// The 130m shapes (24 x 768, vocab 50280) with only two layers: the AVX paths at real sizes.
model::ModelConfig Big2LayerConfig() {
  model::ModelConfig c = model::SyntheticConfig("130m").value();
  c.n_layer = 2;
  return c;
}

model::ModelConfig Mamba2TinyConfig() { return model::SyntheticConfig("mamba2-tiny").value(); }
model::ModelConfig FalconTinyConfig() {
  return model::SyntheticConfig("falcon-mamba-tiny").value();
}

// Mamba-2 with everything the state-spaces format allows and odd sizes: an MLP part (d_mlp 20),
// D per channel, three heads per group, a dt limit, biases, conv kernel 3, d_state 12.
model::ModelConfig OddMamba2Config() {
  model::ModelConfig c;
  c.family = model::ModelFamily::kMamba2;
  c.d_model = 50;
  c.n_layer = 2;
  c.expand = 2;
  c.d_inner = 100;
  c.head_dim = 10;
  c.n_heads = 8;  // d_ssm 80
  c.n_groups = 2;
  c.d_state = 12;
  c.d_conv = 3;
  c.vocab_size = 301;
  c.use_bias = true;
  c.use_conv_bias = true;
  c.d_per_channel = true;
  c.time_step_limit_min = 0.01f;
  c.time_step_limit_max = 0.08f;
  c.gated_norm_epsilon = 1e-5f;
  c.tie_word_embeddings = false;
  c.bos_token_id = c.eos_token_id = c.pad_token_id = 0;
  return c;
}

// The same without the gated norm (y * silu(z) goes to out_proj) and without conv bias.
model::ModelConfig OddMamba2NoNormConfig() {
  model::ModelConfig c = OddMamba2Config();
  c.gated_norm = false;
  c.use_conv_bias = false;
  c.n_groups = 4;
  return c;
}

// FalconMamba at the odd sizes.
model::ModelConfig OddFalconConfig() {
  model::ModelConfig c = OddConfig();
  c.family = model::ModelFamily::kFalconMamba;
  c.mixer_rms_eps = 1e-3f;  // large enough to matter
  return c;
}

model::LoadedModel MakeModel(const model::ModelConfig& config, model::DType dtype,
                             uint64_t seed = 7) {
  model::LoadedModel m;
  m.name = "test";
  m.source = "test";
  m.config = config;
  absl::StatusOr<model::ModelWeights> w = model::MakeSyntheticWeights(config, seed, dtype);
  EXPECT_TRUE(w.ok()) << w.status();
  m.weights = std::move(w).value();
  return m;
}

std::unique_ptr<backend::Backend> MakeBackend(const model::ModelConfig& config, model::DType dtype,
                                              int threads = 0, int slots = 8) {
  model::LoadedModel m = MakeModel(config, dtype);
  backend::BackendOptions options;
  options.kind = "cpu";
  options.num_slots = slots;
  options.cpu_threads = threads;
  absl::StatusOr<std::unique_ptr<backend::Backend>> b = cpu::CreateCpuBackend(options, m);
  EXPECT_TRUE(b.ok()) << b.status();
  return std::move(b).value();
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

// Feeds `tokens` in chunks of `chunk` and returns the last logits.
std::vector<float> FeedChunked(backend::Backend& b, int32_t slot,
                               const std::vector<int32_t>& tokens, size_t chunk) {
  std::vector<float> logits;
  for (size_t i = 0; i < tokens.size(); i += chunk) {
    const size_t n = std::min(chunk, tokens.size() - i);
    logits = Feed(b, slot, absl::MakeConstSpan(tokens.data() + i, n));
  }
  return logits;
}

std::vector<uint8_t> SaveState(backend::Backend& b, int32_t slot) {
  std::unique_ptr<backend::HostState> h = b.AllocateHostState();
  EXPECT_TRUE(b.SaveSlot(slot, h.get()).ok());
  return std::vector<uint8_t>(h->data(), h->data() + h->size());
}

double MaxRelativeError(const std::vector<float>& ours, const std::vector<double>& ref) {
  double max_ref = 0.0, max_diff = 0.0;
  for (size_t i = 0; i < ref.size(); ++i) {
    max_ref = std::max(max_ref, std::abs(ref[i]));
    max_diff = std::max(max_diff, std::abs(static_cast<double>(ours[i]) - ref[i]));
  }
  return max_diff / std::max(max_ref, 1e-30);
}

double MaxRelativeError(absl::Span<const float> ours, const std::vector<double>& ref) {
  return MaxRelativeError(std::vector<float>(ours.begin(), ours.end()), ref);
}

std::vector<ModelCase> ReferenceCases() {
  return {
      {"tiny f32", TinyConfig(), model::DType::kF32},
      {"tiny f16", TinyConfig(), model::DType::kF16},
      {"odd f32", OddConfig(), model::DType::kF32},
      {"odd f16", OddConfig(), model::DType::kF16},
      {"odd bf16", OddConfig(), model::DType::kBF16},
      {"mamba2 tiny f32", Mamba2TinyConfig(), model::DType::kF32},
      {"mamba2 tiny bf16", Mamba2TinyConfig(), model::DType::kBF16},
      {"mamba2 odd f32", OddMamba2Config(), model::DType::kF32},
      {"mamba2 odd f16", OddMamba2Config(), model::DType::kF16},
      {"mamba2 odd, no gated norm", OddMamba2NoNormConfig(), model::DType::kF32},
      {"falcon tiny f32", FalconTinyConfig(), model::DType::kF32},
      {"falcon odd f16", OddFalconConfig(), model::DType::kF16},
  };
}

TEST(CpuBackendTest, MatchesNaiveReference) {
  for (const ModelCase& mc : ReferenceCases()) {
    SCOPED_TRACE(mc.name);
    model::LoadedModel ref_model = MakeModel(mc.config, mc.dtype);
    ReferenceMamba ref(mc.config, ref_model.weights);
    std::unique_ptr<backend::Backend> backend = MakeBackend(mc.config, mc.dtype);
    const std::vector<int32_t> tokens = RandomTokens(40, mc.config.vocab_size, 1);

    // A prompt of 1, then 6 more, then 33 more: prefill from a fresh and from a used state.
    ReferenceMamba::State state = ref.NewState();
    const size_t cuts[] = {0, 1, 7, 40};
    for (int i = 0; i < 3; ++i) {
      const std::vector<int32_t> part(tokens.begin() + cuts[i], tokens.begin() + cuts[i + 1]);
      const std::vector<double> expected = ref.Forward(state, part);
      const std::vector<float> got = Feed(*backend, 3, part);
      ASSERT_EQ(got.size(), expected.size());
      EXPECT_LE(MaxRelativeError(got, expected), 1e-5) << "after " << cuts[i + 1] << " tokens";
    }
    // The states match too, in HostState's documented layout.
    const std::vector<uint8_t> saved = SaveState(*backend, 3);
    std::vector<float> values(saved.size() / sizeof(float));
    std::memcpy(values.data(), saved.data(), saved.size());
    ASSERT_EQ(values.size(), state.conv.size() + state.ssm.size());
    const absl::Span<const float> conv = absl::MakeConstSpan(values).subspan(0, state.conv.size());
    const absl::Span<const float> ssm = absl::MakeConstSpan(values).subspan(state.conv.size());
    EXPECT_LE(MaxRelativeError(conv, state.conv), 1e-5);
    EXPECT_LE(MaxRelativeError(ssm, state.ssm), 1e-5);
  }
}

TEST(CpuBackendTest, MatchesNaiveReferenceAtRealSizes) {
  for (const char* name : {"130m", "mamba2-130m"}) {
  SCOPED_TRACE(name);
  model::ModelConfig config = model::SyntheticConfig(name).value();
  config.n_layer = 2;
  model::LoadedModel ref_model = MakeModel(config, model::DType::kF16);
  ReferenceMamba ref(config, ref_model.weights);
  std::unique_ptr<backend::Backend> backend = MakeBackend(config, model::DType::kF16);
  const std::vector<int32_t> tokens = RandomTokens(5, config.vocab_size, 2);
  ReferenceMamba::State state = ref.NewState();
  const std::vector<double> expected = ref.Forward(state, tokens);
  const std::vector<float> got = Feed(*backend, 0, tokens);
  EXPECT_LE(MaxRelativeError(got, expected), 1e-5);
  }
}

std::vector<ModelCase> InvarianceCases() {
  return {
      {"tiny f32", TinyConfig(), model::DType::kF32},
      {"odd bf16", OddConfig(), model::DType::kBF16},
      {"130m shapes, 2 layers, f16", Big2LayerConfig(), model::DType::kF16},
      {"mamba2 tiny f32", Mamba2TinyConfig(), model::DType::kF32},
      {"mamba2 odd bf16", OddMamba2Config(), model::DType::kBF16},
      {"falcon odd f32", OddFalconConfig(), model::DType::kF32},
  };
}

TEST(CpuBackendTest, ChunkedPrefillIsBitwiseEqualToOnePrefill) {
  for (const ModelCase& mc : InvarianceCases()) {
    SCOPED_TRACE(mc.name);
    std::unique_ptr<backend::Backend> b = MakeBackend(mc.config, mc.dtype);
    const std::vector<int32_t> tokens = RandomTokens(60, mc.config.vocab_size, 3);
    const std::vector<float> whole = Feed(*b, 0, tokens);
    const std::vector<uint8_t> whole_state = SaveState(*b, 0);
    for (size_t chunk : {1, 3, 17}) {
      SCOPED_TRACE(chunk);
      ASSERT_TRUE(b->ResetSlot(1).ok());
      EXPECT_EQ(FeedChunked(*b, 1, tokens, chunk), whole);
      EXPECT_EQ(SaveState(*b, 1), whole_state);
    }
  }
}

TEST(CpuBackendTest, PrefillLongerThanOnePassEqualsChunks) {
  // 1100 tokens cross the model's internal pass size (512) twice.
  std::unique_ptr<backend::Backend> b = MakeBackend(TinyConfig(), model::DType::kF32);
  const std::vector<int32_t> tokens = RandomTokens(1100, 257, 4);
  const std::vector<float> whole = Feed(*b, 0, tokens);
  EXPECT_EQ(FeedChunked(*b, 1, tokens, 100), whole);
  EXPECT_EQ(SaveState(*b, 1), SaveState(*b, 0));
}

TEST(CpuBackendTest, PrefillThenDecodeEqualsLongerPrefill) {
  for (const ModelCase& mc : InvarianceCases()) {
    SCOPED_TRACE(mc.name);
    std::unique_ptr<backend::Backend> b = MakeBackend(mc.config, mc.dtype);
    const std::vector<int32_t> tokens = RandomTokens(30, mc.config.vocab_size, 5);
    Feed(*b, 0, absl::MakeConstSpan(tokens).subspan(0, 20));
    for (size_t n = 21; n <= tokens.size(); ++n) {
      const std::vector<float> decoded = Feed(*b, 0, absl::MakeConstSpan(&tokens[n - 1], 1));
      ASSERT_TRUE(b->ResetSlot(1).ok());
      EXPECT_EQ(decoded, Feed(*b, 1, absl::MakeConstSpan(tokens).subspan(0, n))) << n;
    }
  }
}

TEST(CpuBackendTest, CopiedSlotEvolvesIndependently) {
  std::unique_ptr<backend::Backend> b = MakeBackend(TinyConfig(), model::DType::kF32);
  const std::vector<int32_t> prefix = RandomTokens(12, 257, 6);
  const std::vector<int32_t> a_more = RandomTokens(5, 257, 7);
  const std::vector<int32_t> b_more = RandomTokens(9, 257, 8);
  Feed(*b, 0, prefix);
  ASSERT_TRUE(b->CopySlot(0, 1).ok());
  EXPECT_EQ(SaveState(*b, 0), SaveState(*b, 1));
  const std::vector<float> b_logits = Feed(*b, 1, b_more);
  const std::vector<float> a_logits = Feed(*b, 0, a_more);

  // Each equals a from-scratch run of its own history.
  std::vector<int32_t> a_all = prefix, b_all = prefix;
  a_all.insert(a_all.end(), a_more.begin(), a_more.end());
  b_all.insert(b_all.end(), b_more.begin(), b_more.end());
  ASSERT_TRUE(b->ResetSlot(2).ok());
  EXPECT_EQ(Feed(*b, 2, a_all), a_logits);
  ASSERT_TRUE(b->ResetSlot(2).ok());
  EXPECT_EQ(Feed(*b, 2, b_all), b_logits);
  EXPECT_NE(a_logits, b_logits);
}

TEST(CpuBackendTest, CopiedSequenceStateEvolvesIndependently) {
  const model::ModelConfig config = TinyConfig();
  model::LoadedModel m = MakeModel(config, model::DType::kF32);
  absl::StatusOr<std::unique_ptr<cpu::CpuModel>> model =
      cpu::CpuModel::Create(config, std::move(m.weights), 2);
  ASSERT_TRUE(model.ok()) << model.status();
  cpu::SequenceState original(config);
  const std::vector<int32_t> prefix = RandomTokens(8, 257, 9);
  std::vector<float> logits(config.vocab_size);
  ASSERT_TRUE((*model)->Forward({{&original, prefix, nullptr}}).ok());
  cpu::SequenceState copy = original;
  const std::vector<float> snapshot(original.values().begin(), original.values().end());
  const std::vector<int32_t> more = RandomTokens(3, 257, 10);
  ASSERT_TRUE((*model)->Forward({{&copy, more, logits.data()}}).ok());
  // Advancing the copy left the original untouched.
  EXPECT_TRUE(std::equal(snapshot.begin(), snapshot.end(), original.values().begin()));
  EXPECT_FALSE(std::equal(snapshot.begin(), snapshot.end(), copy.values().begin()));
  // And the original, advanced the same way, lands on the same state and logits.
  std::vector<float> logits2(config.vocab_size);
  ASSERT_TRUE((*model)->Forward({{&original, more, logits2.data()}}).ok());
  EXPECT_EQ(logits, logits2);
  EXPECT_TRUE(std::equal(copy.values().begin(), copy.values().end(), original.values().begin()));
}

TEST(CpuBackendTest, BatchGivesEachSequenceExactlyWhatItGetsAlone) {
  for (const ModelCase& mc : InvarianceCases()) {
    SCOPED_TRACE(mc.name);
    for (int threads : {1, 2}) {
      SCOPED_TRACE(threads);
      std::unique_ptr<backend::Backend> b = MakeBackend(mc.config, mc.dtype, threads, 16);
      // Five sequences: different histories, then one step that mixes prefill chunks of several
      // lengths with single-token decodes (tiles of 3 and 2 rows, and a lone row).
      const int lengths[] = {1, 7, 1, 20, 1};
      std::vector<std::vector<int32_t>> histories, steps;
      for (int i = 0; i < 5; ++i) {
        histories.push_back(RandomTokens(5 + 3 * i, mc.config.vocab_size, 20 + i));
        steps.push_back(RandomTokens(lengths[i], mc.config.vocab_size, 40 + i));
      }
      std::vector<std::vector<float>> alone;
      std::vector<std::vector<uint8_t>> alone_states;
      for (int i = 0; i < 5; ++i) {
        Feed(*b, i, histories[i]);
        alone.push_back(Feed(*b, i, steps[i]));
        alone_states.push_back(SaveState(*b, i));
      }
      std::vector<backend::SeqWork> work(5);
      std::vector<backend::SeqResult> results(5);
      for (int i = 0; i < 5; ++i) {
        const int slot = 10 + i;
        Feed(*b, slot, histories[i]);
        work[i].slot = slot;
        work[i].tokens = steps[i];
        work[i].want_logits = true;
      }
      ASSERT_TRUE(b->Step(work, absl::MakeSpan(results)).ok());
      for (int i = 0; i < 5; ++i) {
        EXPECT_EQ(results[i].logits, alone[i]) << "sequence " << i;
        EXPECT_EQ(SaveState(*b, 10 + i), alone_states[i]) << "sequence " << i;
      }
    }
  }
}

TEST(CpuBackendTest, ThreadCountDoesNotChangeResults) {
  const model::ModelConfig config = Big2LayerConfig();
  const std::vector<int32_t> tokens = RandomTokens(9, config.vocab_size, 11);
  std::unique_ptr<backend::Backend> one = MakeBackend(config, model::DType::kF16, 1);
  std::unique_ptr<backend::Backend> two = MakeBackend(config, model::DType::kF16, 2);
  EXPECT_EQ(Feed(*one, 0, tokens), Feed(*two, 0, tokens));
}

TEST(CpuBackendTest, GreedySampleIsArgmaxWithItsLogprob) {
  std::unique_ptr<backend::Backend> b = MakeBackend(TinyConfig(), model::DType::kF32);
  const std::vector<int32_t> tokens = RandomTokens(6, 257, 12);
  backend::SeqWork w;
  w.slot = 0;
  w.tokens = tokens;
  w.sample = true;
  w.want_logits = true;
  w.top_logprobs = 3;
  backend::SeqResult r;
  ASSERT_TRUE(b->Step(absl::MakeConstSpan(&w, 1), absl::MakeSpan(&r, 1)).ok());
  ASSERT_EQ(r.logits.size(), 257u);
  const int32_t argmax =
      static_cast<int32_t>(std::max_element(r.logits.begin(), r.logits.end()) - r.logits.begin());
  EXPECT_EQ(r.token, argmax);
  double sum = 0.0;
  for (float l : r.logits) sum += std::exp(static_cast<double>(l) - r.logits[argmax]);
  EXPECT_NEAR(r.logprob, -std::log(sum), 1e-5);
  ASSERT_EQ(r.top.size(), 3u);
  EXPECT_EQ(r.top[0].token, argmax);
  EXPECT_FLOAT_EQ(r.top[0].logprob, r.logprob);
  EXPECT_GE(r.top[1].logprob, r.top[2].logprob);

  // Without want_logits the same token comes back and no logits are returned.
  ASSERT_TRUE(b->ResetSlot(0).ok());
  w.want_logits = false;
  backend::SeqResult r2;
  ASSERT_TRUE(b->Step(absl::MakeConstSpan(&w, 1), absl::MakeSpan(&r2, 1)).ok());
  EXPECT_EQ(r2.token, argmax);
  EXPECT_TRUE(r2.logits.empty());
}

TEST(CpuBackendTest, SamplingIsReproducibleAcrossBatching) {
  std::unique_ptr<backend::Backend> b = MakeBackend(TinyConfig(), model::DType::kF32, 0, 8);
  const std::vector<int32_t> tokens = RandomTokens(6, 257, 13);
  sampling::SamplingParams p;
  p.temperature = 1.0f;
  p.top_p = 0.9f;
  p.seed = 42;
  std::vector<backend::SeqWork> work(3);
  std::vector<backend::SeqResult> results(3);
  for (int i = 0; i < 3; ++i) {
    work[i].slot = i;
    work[i].tokens = tokens;
    work[i].sample = true;
    work[i].sampling = p;
    work[i].sample_position = 5;
  }
  ASSERT_TRUE(b->Step(work, absl::MakeSpan(results)).ok());
  ASSERT_TRUE(b->ResetSlot(0).ok());
  backend::SeqResult alone;
  ASSERT_TRUE(b->Step(absl::MakeConstSpan(&work[0], 1), absl::MakeSpan(&alone, 1)).ok());
  EXPECT_EQ(results[0].token, results[1].token);
  EXPECT_EQ(results[1].token, results[2].token);
  EXPECT_EQ(alone.token, results[0].token);
}

// A refused sequence fails alone: the step goes on for the others, the refused one's state is
// untouched and its status says what was wrong (about itself only). Sampling parameters are not
// the backend's to check: they are valid by construction (the engine's boundary refuses them:
// tests/unit/engine/engine_isolation_test.cc).
TEST(CpuBackendTest, InvalidWorkFailsAloneAndChangesNothing) {
  std::unique_ptr<backend::Backend> b = MakeBackend(TinyConfig(), model::DType::kF32, 0, 4);
  const std::vector<int32_t> good = RandomTokens(3, 257, 14);
  for (int32_t slot = 0; slot < 4; ++slot) Feed(*b, slot, good);
  const std::vector<int32_t> bad_token = {1, 257};
  const std::vector<int32_t> negative = {-1};
  const std::vector<int32_t> empty;
  const std::vector<int32_t> bad_penalty = {300};

  struct Case {
    std::string name;
    std::vector<backend::SeqWork> work;
    size_t bad;  // the refused item
    std::string expected_message;
  };
  auto item = [&](int32_t slot, const std::vector<int32_t>& tokens) {
    backend::SeqWork w;
    w.slot = slot;
    w.tokens = tokens;
    w.sample = true;
    return w;
  };
  backend::SeqWork penalty_out_of_range = item(3, good);
  penalty_out_of_range.sampling.repetition_penalty = 1.2f;
  penalty_out_of_range.penalty_tokens = bad_penalty;
  backend::SeqWork output_out_of_range = item(2, good);
  output_out_of_range.sampling.frequency_penalty = 0.5f;
  output_out_of_range.output_tokens = bad_penalty;
  const std::vector<Case> cases = {
      {"slot too large", {item(0, good), item(4, good)}, 1, "slot 4 is out of range"},
      {"negative slot", {item(-1, good), item(1, good)}, 0, "slot -1 is out of range"},
      {"duplicate slot", {item(0, good), item(1, good), item(0, good)}, 2, "appears twice"},
      {"no tokens", {item(2, empty), item(1, good)}, 0, "has no tokens"},
      {"token past the vocabulary",
       {item(1, good), item(2, bad_token)},
       1,
       "id 257, outside the vocabulary"},
      {"negative token", {item(2, negative)}, 0, "id -1, outside the vocabulary"},
      {"penalty token out of range",
       {item(0, good), penalty_out_of_range},
       1,
       "repetition penalty token id 300"},
      {"generated token out of range",
       {output_out_of_range, item(1, good)},
       0,
       "output token id 300"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const int32_t bad_slot = c.work[c.bad].slot;
    bool bad_slot_stepped = false;  // by a valid item of the same step
    for (size_t i = 0; i < c.work.size(); ++i) {
      if (i != c.bad && c.work[i].slot == bad_slot) bad_slot_stepped = true;
    }
    std::vector<uint8_t> before;
    if (bad_slot >= 0 && bad_slot < 4) before = SaveState(*b, bad_slot);
    std::vector<backend::SeqResult> results(c.work.size());
    ASSERT_TRUE(b->Step(c.work, absl::MakeSpan(results)).ok());
    for (size_t i = 0; i < c.work.size(); ++i) {
      if (i == c.bad) {
        EXPECT_EQ(results[i].status.code(), absl::StatusCode::kInvalidArgument);
        EXPECT_NE(std::string(results[i].status.message()).find(c.expected_message),
                  std::string::npos)
            << results[i].status;
        EXPECT_EQ(results[i].token, -1);
      } else {
        EXPECT_TRUE(results[i].status.ok()) << results[i].status;
        EXPECT_GE(results[i].token, 0);
      }
    }
    if (!before.empty() && !bad_slot_stepped) {
      EXPECT_EQ(SaveState(*b, bad_slot), before);
    }
  }
  // A step whose spans do not match is refused as a whole, and changes nothing.
  const std::vector<uint8_t> before = SaveState(*b, 0);
  std::vector<backend::SeqResult> one(1);
  std::vector<backend::SeqWork> two = {item(0, good), item(1, good)};
  EXPECT_EQ(b->Step(two, absl::MakeSpan(one)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SaveState(*b, 0), before);
}

// Logits that are not finite (a state poisoned with NaN) fail that sequence alone; the others in
// the step get exactly the tokens and log-probabilities they get without it.
TEST(CpuBackendTest, ANonFiniteSequenceFailsAloneInItsStep) {
  std::unique_ptr<backend::Backend> b = MakeBackend(TinyConfig(), model::DType::kF32, 0, 4);
  const std::vector<int32_t> prompt = RandomTokens(5, 257, 21);
  for (int32_t slot = 0; slot < 3; ++slot) Feed(*b, slot, prompt);
  std::unique_ptr<backend::HostState> poisoned = b->AllocateHostState();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (size_t i = 0; i + sizeof(float) <= poisoned->size(); i += sizeof(float)) {
    std::memcpy(poisoned->data() + i, &nan, sizeof(float));
  }
  ASSERT_TRUE(b->LoadSlot(3, *poisoned).ok());
  const std::vector<int32_t> next = {7};
  std::vector<backend::SeqWork> work(4);
  for (int32_t slot = 0; slot < 4; ++slot) {
    work[slot].slot = slot;
    work[slot].tokens = next;
    work[slot].sample = true;
    work[slot].top_logprobs = 3;
  }
  // Alone first (on copies of the healthy states), then beside the poisoned one.
  std::vector<backend::SeqResult> alone(3);
  std::vector<std::vector<uint8_t>> states;
  for (int32_t slot = 0; slot < 3; ++slot) states.push_back(SaveState(*b, slot));
  for (int32_t slot = 0; slot < 3; ++slot) {
    ASSERT_TRUE(b->Step(absl::MakeConstSpan(&work[slot], 1), absl::MakeSpan(&alone[slot], 1)).ok());
    std::unique_ptr<backend::HostState> h = b->AllocateHostState();
    std::memcpy(h->data(), states[slot].data(), h->size());
    ASSERT_TRUE(b->LoadSlot(slot, *h).ok());
  }
  std::vector<backend::SeqResult> results(4);
  ASSERT_TRUE(b->Step(work, absl::MakeSpan(results)).ok());
  EXPECT_EQ(results[3].status.code(), absl::StatusCode::kInternal) << results[3].status;
  EXPECT_NE(std::string(results[3].status.message()).find("not finite"), std::string::npos);
  for (int32_t slot = 0; slot < 3; ++slot) {
    SCOPED_TRACE(slot);
    ASSERT_TRUE(results[slot].status.ok()) << results[slot].status;
    EXPECT_EQ(results[slot].token, alone[slot].token);
    EXPECT_EQ(results[slot].logprob, alone[slot].logprob);
    ASSERT_EQ(results[slot].top.size(), alone[slot].top.size());
  }
}

TEST(CpuBackendTest, SlotOperationsValidateAndRoundTrip) {
  std::unique_ptr<backend::Backend> b = MakeBackend(TinyConfig(), model::DType::kF32, 0, 4);
  const model::ModelConfig& c = b->config();
  EXPECT_EQ(b->name(), "cpu");
  EXPECT_EQ(b->num_slots(), 4);
  EXPECT_EQ(b->state_dtype(), model::DType::kF32);
  EXPECT_EQ(b->state_bytes(),
            static_cast<size_t>(model::StateLayoutOf(c).elements()) * sizeof(float));
  EXPECT_EQ(b->ResetSlot(4).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(b->CopySlot(0, -1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(b->CopySlot(9, 0).code(), absl::StatusCode::kInvalidArgument);

  const std::vector<int32_t> tokens = RandomTokens(10, 257, 15);
  const std::vector<int32_t> next = {17};
  Feed(*b, 0, tokens);
  std::unique_ptr<backend::HostState> saved = b->AllocateHostState();
  ASSERT_TRUE(b->SaveSlot(0, saved.get()).ok());
  const std::vector<float> expected = Feed(*b, 0, next);
  ASSERT_TRUE(b->LoadSlot(3, *saved).ok());
  EXPECT_EQ(Feed(*b, 3, next), expected);

  backend::HeapHostState wrong_size(model::DType::kF32, saved->size() - 4);
  EXPECT_EQ(b->LoadSlot(0, wrong_size).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(b->SaveSlot(0, &wrong_size).code(), absl::StatusCode::kInvalidArgument);
  backend::HeapHostState wrong_dtype(model::DType::kBF16, saved->size());
  EXPECT_EQ(b->LoadSlot(0, wrong_dtype).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(b->SaveSlot(0, nullptr).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(b->LoadSlot(7, *saved).code(), absl::StatusCode::kInvalidArgument);

  // A reset slot behaves like a fresh one.
  ASSERT_TRUE(b->ResetSlot(0).ok());
  ASSERT_TRUE(b->ResetSlot(1).ok());
  EXPECT_EQ(Feed(*b, 0, tokens), Feed(*b, 1, tokens));
}

TEST(CpuBackendTest, CreateRejectsBadOptions) {
  {
    model::LoadedModel m = MakeModel(TinyConfig(), model::DType::kF32);
    backend::BackendOptions o;
    o.num_slots = -1;
    EXPECT_EQ(cpu::CreateCpuBackend(o, m).status().code(), absl::StatusCode::kInvalidArgument);
  }
  {
    model::LoadedModel m = MakeModel(TinyConfig(), model::DType::kF32);
    backend::BackendOptions o;
    o.state_dtype = "bf16";
    EXPECT_EQ(cpu::CreateCpuBackend(o, m).status().code(), absl::StatusCode::kInvalidArgument);
  }
  {
    model::LoadedModel m = MakeModel(TinyConfig(), model::DType::kF32);
    backend::BackendOptions o;
    o.cpu_threads = -3;
    EXPECT_EQ(cpu::CreateCpuBackend(o, m).status().code(), absl::StatusCode::kInvalidArgument);
  }
  {
    // Weights that do not match the config.
    model::LoadedModel m = MakeModel(TinyConfig(), model::DType::kF32);
    m.config.d_state = 8;
    backend::BackendOptions o;
    EXPECT_EQ(cpu::CreateCpuBackend(o, m).status().code(), absl::StatusCode::kInvalidArgument);
  }
  {
    model::LoadedModel m = MakeModel(TinyConfig(), model::DType::kF32);
    backend::BackendOptions o;
    o.num_slots = 0;
    absl::StatusOr<std::unique_ptr<backend::Backend>> b = cpu::CreateCpuBackend(o, m);
    ASSERT_TRUE(b.ok());
    EXPECT_EQ((*b)->num_slots(), 64);
  }
}

TEST(CpuBackendTest, HalfModelsReportHalfTheWeightBytes) {
  std::unique_ptr<backend::Backend> f32 = MakeBackend(TinyConfig(), model::DType::kF32);
  std::unique_ptr<backend::Backend> f16 = MakeBackend(TinyConfig(), model::DType::kF16);
  EXPECT_EQ(f16->weight_dtype(), model::DType::kF16);
  EXPECT_EQ(f16->weight_bytes() * 2, f32->weight_bytes());
}

}  // namespace
}  // namespace mamba
