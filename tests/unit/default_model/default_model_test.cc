// The embedded default model (models/default), run by our CPU backend: it must score the committed
// held-out text as well as the training script measured with PyTorch, greedily write English, and
// come with a tokenizer.json that maps text to its UTF-8 bytes. A broken loader, tokenizer or
// kernel fails here. Skips when the model has not been trained into the repository yet.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <initializer_list>
#include <iostream>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/backend/backend.h"
#include "engine/backend_factory.h"
#include "engine/cpu/cpu_backend.h"
#include "engine/model/model_loader.h"
#include "engine/tokenizer/tokenizer.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/unit/cpu/reference_mamba.h"

namespace mamba {
namespace {

constexpr int32_t kEndOfText = 256;
constexpr int32_t kVocabSize = 257;
// How far from the training script's figure our bits per byte may land. Both run the fp16
// weights in fp32, so only the order of sums differs (about 1e-4 bits); a wrong conv state, scan
// or norm costs far more than this.
constexpr double kBitsPerByteMargin = 0.02;
// Bytes of the greedy continuation that must equal the one the training script wrote.
constexpr size_t kGreedyPrefixToMatch = 32;

// The folder the server embeds; MAMBA_DEFAULT_MODEL_DIR in the environment points the test at a
// freshly trained model before it is copied there.
std::string ModelDir() {
  const char* dir = std::getenv("MAMBA_DEFAULT_MODEL_DIR");
  return dir != nullptr && *dir != '\0' ? dir : MAMBA_DEFAULT_MODEL_DIR;
}
std::string HeldOutTextPath() {
  return std::string(MAMBA_TEST_DATA_DIR) + "/default_model/heldout.txt";
}

// Bytes of the held-out text to score: a prefix whose figure training.json records (the CPU
// backend takes one byte a step, so the whole text is slow), or the whole text with
// MAMBA_DEFAULT_MODEL_SCORED_BYTES=all.
constexpr size_t kDefaultScoredBytes = 8192;
size_t ScoredBytes() {
  const char* env = std::getenv("MAMBA_DEFAULT_MODEL_SCORED_BYTES");
  if (env == nullptr || *env == '\0') return kDefaultScoredBytes;
  if (std::string(env) == "all") return std::string::npos;
  const long long n = std::atoll(env);
  return n > 0 ? static_cast<size_t>(n) : kDefaultScoredBytes;
}

bool FileExists(const std::string& path) { return std::ifstream(path).good(); }

std::string ReadFileOrDie(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::vector<int32_t> Bytes(const std::string& text) {
  std::vector<int32_t> ids;
  for (unsigned char c : text) ids.push_back(c);
  return ids;
}

// The member of `json` at `path`, or null when a step is missing (never throws).
const nlohmann::json& Field(const nlohmann::json& json, std::initializer_list<const char*> path) {
  static const nlohmann::json kNull;
  const nlohmann::json* at = &json;
  for (const char* key : path) {
    if (!at->is_object()) return kNull;
    auto it = at->find(key);
    if (it == at->end()) return kNull;
    at = &*it;
  }
  return *at;
}

double NumberOr(const nlohmann::json& json, double fallback) {
  return json.is_number() ? json.get<double>() : fallback;
}

std::string StringOr(const nlohmann::json& json, const std::string& fallback) {
  return json.is_string() ? json.get<std::string>() : fallback;
}

// -log p(target) in nats from logits, in double.
double NegLogProb(const std::vector<float>& logits, int32_t target) {
  double max_logit = logits[0];
  for (float l : logits) max_logit = std::max(max_logit, static_cast<double>(l));
  double sum = 0.0;
  for (float l : logits) sum += std::exp(static_cast<double>(l) - max_logit);
  return std::log(sum) + max_logit - logits[target];
}

class DefaultModelTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string dir = ModelDir();
    if (!FileExists(dir + "/config.json") || !FileExists(dir + "/model.safetensors") ||
        !FileExists(dir + "/training.json")) {
      skip_reason_ = new std::string(dir +
                                     " has no trained model yet (tools/train_default_model.py"
                                     " writes config.json, model.safetensors, training.json)");
      return;
    }
    training_ = new nlohmann::json(nlohmann::json::parse(ReadFileOrDie(dir + "/training.json"),
                                                         nullptr, /*allow_exceptions=*/false));
    absl::StatusOr<model::LoadedModel> model = model::LoadModel(dir);
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = new model::LoadedModel(std::move(*model));
    backend::BackendOptions options;
    options.kind = "cpu";
    options.num_slots = 1;
    absl::StatusOr<std::unique_ptr<backend::Backend>> backend =
        cpu::CreateCpuBackend(options, *model_);
    ASSERT_TRUE(backend.ok()) << backend.status();
    backend_ = backend->release();
  }

  static void TearDownTestSuite() {
    delete backend_;
    delete model_;
    delete training_;
    delete skip_reason_;
    backend_ = nullptr;
    model_ = nullptr;
    training_ = nullptr;
    skip_reason_ = nullptr;
  }

  void SetUp() override {
    if (skip_reason_ != nullptr) GTEST_SKIP() << *skip_reason_;
    ASSERT_NE(backend_, nullptr);
    ASSERT_FALSE(training_->is_discarded()) << ModelDir() << "/training.json is not valid JSON";
  }

  // Feeds `tokens` to slot 0 and returns the logits after the last one.
  static absl::StatusOr<std::vector<float>> Logits(absl::Span<const int32_t> tokens) {
    backend::SeqWork work;
    work.slot = 0;
    work.tokens = tokens;
    work.want_logits = true;
    backend::SeqResult result;
    absl::Status status = backend_->Step(absl::MakeConstSpan(&work, 1), absl::MakeSpan(&result, 1));
    if (!status.ok()) return status;
    if (result.logits.size() != static_cast<size_t>(kVocabSize)) {
      return absl::InternalError("backend returned " + std::to_string(result.logits.size()) +
                                 " logits, want " + std::to_string(kVocabSize));
    }
    return std::move(result.logits);
  }

  // Feeds `tokens` to slot 0 and returns the greedy next token.
  static absl::StatusOr<int32_t> Greedy(absl::Span<const int32_t> tokens) {
    backend::SeqWork work;
    work.slot = 0;
    work.tokens = tokens;
    work.sample = true;  // default SamplingParams: temperature 0, greedy
    backend::SeqResult result;
    absl::Status status = backend_->Step(absl::MakeConstSpan(&work, 1), absl::MakeSpan(&result, 1));
    if (!status.ok()) return status;
    return result.token;
  }

  static model::LoadedModel* model_;
  static backend::Backend* backend_;
  static nlohmann::json* training_;
  static std::string* skip_reason_;
};

model::LoadedModel* DefaultModelTest::model_ = nullptr;
backend::Backend* DefaultModelTest::backend_ = nullptr;
nlohmann::json* DefaultModelTest::training_ = nullptr;
std::string* DefaultModelTest::skip_reason_ = nullptr;

TEST_F(DefaultModelTest, ConfigIsByteLevel) {
  EXPECT_EQ(model_->config.vocab_size, kVocabSize);
  EXPECT_EQ(model_->config.eos_token_id, kEndOfText);
  EXPECT_EQ(backend_->config().vocab_size, kVocabSize);
  EXPECT_EQ(model_->config.n_layer,
            NumberOr(Field(*training_, {"model", "num_hidden_layers"}), -1));
  EXPECT_EQ(model_->config.d_model, NumberOr(Field(*training_, {"model", "hidden_size"}), -1));
}

TEST_F(DefaultModelTest, TokenizerMapsTextToUtf8Bytes) {
  ASSERT_FALSE(model_->tokenizer_path.empty()) << "no tokenizer.json beside the checkpoint";
  absl::StatusOr<std::unique_ptr<tokenizer::Tokenizer>> tokenizer =
      tokenizer::LoadTokenizerJson(model_->tokenizer_path);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  const tokenizer::Tokenizer& tok = **tokenizer;
  EXPECT_EQ(tok.vocab_size(), kVocabSize);
  EXPECT_EQ(tok.eos_id(), std::optional<int32_t>(kEndOfText));
  EXPECT_EQ(tok.TokenToId("<|endoftext|>"), std::optional<int32_t>(kEndOfText));
  for (const std::string text :
       {"Hello, world!\n", "caf\xC3\xA9 \xE2\x98\x95", "  two\tspaces  "}) {
    absl::StatusOr<std::vector<int32_t>> ids = tok.Encode(text);
    ASSERT_TRUE(ids.ok()) << ids.status();
    EXPECT_EQ(*ids, Bytes(text)) << "encoding " << text;
    absl::StatusOr<std::string> back = tok.DecodeBytes(*ids);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, text);
  }
}

TEST_F(DefaultModelTest, HeldOutBitsPerByteMatchesTraining) {
  const std::string text = ReadFileOrDie(HeldOutTextPath());
  ASSERT_EQ(static_cast<double>(text.size()),
            NumberOr(Field(*training_, {"eval", "test_text", "bytes"}), -1.0))
      << HeldOutTextPath() << " is not the text the model was scored on; restore it or retrain";
  const size_t scored = std::min(ScoredBytes(), text.size());
  const double trained_bpb = scored == text.size()
                                 ? NumberOr(Field(*training_, {"eval", "test_text", "bpb"}), -1.0)
                                 : NumberOr(Field(*training_, {"eval", "test_text", "prefix_bpb",
                                                               std::to_string(scored).c_str()}),
                                            -1.0);
  ASSERT_GT(trained_bpb, 0.0) << "training.json has no bits per byte for the first " << scored
                              << " bytes of the test text (eval.test_text.prefix_bpb)";

  // Teacher forcing from a fresh state: <|endoftext|>, then every byte; the logits after each
  // token score the next byte (the backend returns last-position logits only, so one token a
  // step).
  ASSERT_TRUE(backend_->ResetSlot(0).ok());
  int32_t previous = kEndOfText;
  double nll = 0.0;
  for (size_t i = 0; i < scored; ++i) {
    absl::StatusOr<std::vector<float>> logits = Logits(absl::MakeConstSpan(&previous, 1));
    ASSERT_TRUE(logits.ok()) << logits.status();
    const int32_t byte = static_cast<unsigned char>(text[i]);
    nll += NegLogProb(*logits, byte);
    previous = byte;
  }
  const double bpb = nll / static_cast<double>(scored) / std::log(2.0);
  std::cout << "default model: " << bpb << " bits/byte on the first " << scored << " of "
            << text.size() << " held-out bytes (training script: " << trained_bpb << ")\n";
  EXPECT_LT(bpb, trained_bpb + kBitsPerByteMargin);
  // Much better than training measured means this is not the text or the model it measured.
  EXPECT_GT(bpb, trained_bpb - kBitsPerByteMargin);
}

TEST_F(DefaultModelTest, GreedyGenerationIsEnglish) {
  const std::string prompt = StringOr(Field(*training_, {"greedy", "prompt"}), "The ");
  const size_t max_new =
      static_cast<size_t>(NumberOr(Field(*training_, {"greedy", "max_new_bytes"}), 120));
  const std::string reference = StringOr(Field(*training_, {"greedy", "continuation"}), "");

  ASSERT_TRUE(backend_->ResetSlot(0).ok());
  std::vector<int32_t> feed = {kEndOfText};
  for (int32_t b : Bytes(prompt)) feed.push_back(b);
  std::string out;
  while (out.size() < max_new) {
    absl::StatusOr<int32_t> next = Greedy(feed);
    ASSERT_TRUE(next.ok()) << next.status();
    ASSERT_GE(*next, 0);
    ASSERT_LT(*next, kVocabSize);
    if (*next == kEndOfText) break;
    out.push_back(static_cast<char>(*next));
    feed = {*next};
  }
  std::cout << "default model, greedy: \"" << prompt << out << "\"\n";

  ASSERT_FALSE(out.empty());
  EXPECT_TRUE(tokenizer::IsValidUtf8(out)) << out;
  size_t letters = 0, letters_or_spaces = 0;
  std::set<std::string> words;
  std::string word;
  for (char c : out + " ") {
    const bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    if (letter) ++letters;
    if (letter || c == ' ') ++letters_or_spaces;
    if (letter) {
      word.push_back(c);
    } else if (!word.empty()) {
      words.insert(word);
      word.clear();
    }
  }
  EXPECT_GE(letters_or_spaces, (out.size() + 1) * 3 / 4) << "mostly letters and spaces: " << out;
  EXPECT_GE(letters, out.size() / 2) << "mostly letters: " << out;
  EXPECT_GE(words.size(), 3u) << "a few different words: " << out;

  // The same greedy path as PyTorch took with the same weights.
  const size_t n = std::min({kGreedyPrefixToMatch, reference.size(), out.size()});
  EXPECT_EQ(out.substr(0, n), reference.substr(0, n))
      << "greedy continuation differs from the training script's";
}

}  // namespace
}  // namespace mamba

namespace mamba {
namespace {

// The CPU backend against the double-precision reference (tests/unit/cpu/reference_mamba) on the
// trained weights: random test weights do not exercise every range a trained model reaches.
TEST(DefaultModelReferenceTest, CpuBackendEqualsTheReferenceOnTrainedWeights) {
  const std::string dir = ModelDir();
  if (!FileExists(dir + "/model.safetensors")) GTEST_SKIP() << dir << " has no trained model";
  absl::StatusOr<model::LoadedModel> for_reference = model::LoadModel(dir);
  ASSERT_TRUE(for_reference.ok()) << for_reference.status();
  absl::StatusOr<model::LoadedModel> for_backend = model::LoadModel(dir);
  ASSERT_TRUE(for_backend.ok()) << for_backend.status();
  backend::BackendOptions options;
  options.kind = "cpu";
  options.num_slots = 1;
  absl::StatusOr<std::unique_ptr<backend::Backend>> backend =
      cpu::CreateCpuBackend(options, *for_backend);
  ASSERT_TRUE(backend.ok()) << backend.status();
  testing::ReferenceMamba reference(for_reference->config, for_reference->weights);
  testing::ReferenceMamba::State state = reference.NewState();

  const std::string text = "The second the world is the start of the season.";
  std::vector<int32_t> tokens = {kEndOfText};
  for (unsigned char c : text) tokens.push_back(c);
  ASSERT_TRUE((*backend)->ResetSlot(0).ok());
  for (size_t i = 0; i < tokens.size(); ++i) {
    SCOPED_TRACE(::testing::Message() << "token " << i);
    const std::vector<double> want = reference.Forward(state, {tokens[i]});
    backend::SeqWork work;
    work.slot = 0;
    work.tokens = absl::MakeConstSpan(&tokens[i], 1);
    work.want_logits = true;
    backend::SeqResult result;
    ASSERT_TRUE((*backend)->Step(absl::MakeConstSpan(&work, 1), absl::MakeSpan(&result, 1)).ok());
    ASSERT_EQ(result.logits.size(), want.size());
    double max_ref = 0.0, max_diff = 0.0;
    for (size_t v = 0; v < want.size(); ++v) {
      max_ref = std::max(max_ref, std::abs(want[v]));
      max_diff = std::max(max_diff, std::abs(result.logits[v] - want[v]));
    }
    ASSERT_LE(max_diff / max_ref, 1e-3) << "max |cpu - reference| / max |reference|";
  }
}

}  // namespace
}  // namespace mamba
