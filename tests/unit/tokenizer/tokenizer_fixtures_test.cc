// Exact equality with Hugging Face `tokenizers` on the fixtures that
// tools/make_tokenizer_fixtures.py made: every folder of tests/data/tokenizer/ (or of
// $MAMBA_TOKENIZER_FIXTURES, when set) that holds a cases.json (or cases.json.gz). Where a fixture
// has Hugging Face's decode of every prefix of an id sequence (the SentencePiece-converted ones),
// Decode is checked on each prefix, and so is streaming: what an IncrementalDecoder emitted after k
// ids is a prefix of that decode, and after a context of the first k ids it emits what decoding all
// the ids adds to decoding those k.
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "engine/tokenizer/tokenizer.h"
#include "gtest/gtest.h"

namespace mamba {
namespace {

namespace fs = std::filesystem;

std::string FixtureRoot() {
  const char* env = std::getenv("MAMBA_TOKENIZER_FIXTURES");
  if (env != nullptr && *env != '\0') return env;
  return std::string(MAMBA_TEST_DATA_DIR) + "/tokenizer";
}

std::vector<std::string> FixtureDirs() {
  std::vector<std::string> dirs;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(FixtureRoot(), ec)) {
    if (entry.is_directory() &&
        (fs::exists(entry.path() / "cases.json") || fs::exists(entry.path() / "cases.json.gz"))) {
      dirs.push_back(entry.path().filename().string());
    }
  }
  std::sort(dirs.begin(), dirs.end());
  return dirs;
}

std::string Fnv1a64(const void* data, size_t size) {
  uint64_t h = 0xcbf29ce484222325ull;
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < size; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(h));
  return hex;
}

std::string IdsHash(const std::vector<int32_t>& ids) {
  std::string bytes;
  for (int32_t id : ids) {
    const auto v = static_cast<uint32_t>(id);
    for (int k = 0; k < 4; ++k) bytes.push_back(static_cast<char>((v >> (8 * k)) & 0xff));
  }
  return Fnv1a64(bytes.data(), bytes.size());
}

// "ids differ at 3: got [..] want [..]", around the first difference.
std::string DescribeDifference(const std::vector<int32_t>& got, const std::vector<int32_t>& want) {
  size_t i = 0;
  while (i < got.size() && i < want.size() && got[i] == want[i]) ++i;
  auto window = [i](const std::vector<int32_t>& v) {
    std::ostringstream out;
    const size_t from = i >= 4 ? i - 4 : 0;
    out << "[";
    for (size_t k = from; k < v.size() && k < i + 6; ++k) out << (k > from ? " " : "") << v[k];
    out << "]";
    return out.str();
  };
  std::ostringstream out;
  out << "ids differ at " << i << " (sizes " << got.size() << " vs " << want.size() << "): got "
      << window(got) << " want " << window(want);
  return out.str();
}

// Hugging Face's decode of ids[:1], ids[:2], ... from the fixture's delta encoding: each entry is
// [bytes of the previous decode kept, text appended].
std::vector<std::string> PrefixDecodes(const nlohmann::json& deltas) {
  std::vector<std::string> out;
  std::string current;
  for (const auto& d : deltas) {
    current = current.substr(0, d[0].get<size_t>()) + d[1].get<std::string>();
    out.push_back(current);
  }
  return out;
}

// Checks Decode and IncrementalDecoder on every prefix and split of `ids` against Hugging
// Face's prefix decodes (`want[k - 1]` is the decode of ids[:k]). Returns false on a failure.
bool CheckPrefixes(const tokenizer::Tokenizer& t, const std::vector<int32_t>& ids,
                   const std::vector<std::string>& want, bool skip) {
  const std::string where = skip ? " (skip_special_tokens)" : "";
  if (want.size() != ids.size()) {
    ADD_FAILURE() << "prefix decodes: " << want.size() << " for " << ids.size() << " ids";
    return false;
  }
  for (size_t k = 1; k <= ids.size(); ++k) {
    absl::StatusOr<std::string> got = t.Decode(absl::MakeConstSpan(ids.data(), k), skip);
    if (!got.ok() || *got != want[k - 1]) {
      ADD_FAILURE() << "decode of the first " << k << " ids" << where << ": got \""
                    << (got.ok() ? *got : got.status().ToString()) << "\" want \"" << want[k - 1]
                    << "\"";
      return false;
    }
  }
  tokenizer::IncrementalDecoder stream(&t, skip);
  std::string streamed;
  for (size_t k = 1; k <= ids.size(); ++k) {
    absl::StatusOr<std::string> piece = stream.Add(ids[k - 1]);
    if (!piece.ok() || !tokenizer::IsValidUtf8(*piece)) {
      ADD_FAILURE() << "streaming id " << k - 1 << where << " failed";
      return false;
    }
    streamed += *piece;
    if (want[k - 1].compare(0, streamed.size(), streamed) != 0) {
      ADD_FAILURE() << "after " << k << " ids" << where << " the stream emitted \"" << streamed
                    << "\", not a prefix of their decode \"" << want[k - 1] << "\"";
      return false;
    }
  }
  const std::string& whole = want.empty() ? std::string() : want.back();
  if (streamed + stream.Flush() != whole) {
    ADD_FAILURE() << "stream" << where << " != decode \"" << whole << "\"";
    return false;
  }
  // After a context: what decoding all the ids adds to decoding the context, where the context
  // ends with no run of byte tokens open (whose text the stream would claim).
  for (size_t p = 1; p < ids.size(); ++p) {
    size_t last = p;
    while (last > 0 && skip && t.IsSpecial(ids[last - 1])) --last;
    if (last > 0 && t.IdToToken(ids[last - 1]).rfind("<0x", 0) == 0) continue;
    const std::string& before = want[p - 1];
    if (whole.compare(0, before.size(), before) != 0) continue;
    tokenizer::IncrementalDecoder after(&t, skip);
    if (!after.AddContext(absl::MakeConstSpan(ids.data(), p)).ok()) return false;
    std::string rest;
    for (size_t k = p; k < ids.size(); ++k) rest += *after.Add(ids[k]);
    rest += after.Flush();
    if (rest != whole.substr(before.size())) {
      ADD_FAILURE() << "stream" << where << " after a context of " << p << " ids gave \"" << rest
                    << "\" want \"" << whole.substr(before.size()) << "\"";
      return false;
    }
  }
  return true;
}

class TokenizerFixtureTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = FixtureRoot() + "/" + GetParam();
    const std::string cases =
        fs::exists(dir_ + "/cases.json") ? dir_ + "/cases.json" : dir_ + "/cases.json.gz";
    absl::StatusOr<std::string> text = tokenizer::ReadFileMaybeGzipped(cases);
    ASSERT_TRUE(text.ok()) << text.status();
    fixture_ = nlohmann::json::parse(*text);
    absl::StatusOr<std::unique_ptr<tokenizer::Tokenizer>> tokenizer =
        tokenizer::LoadTokenizerJson(dir_ + "/" + fixture_["tokenizer"].get<std::string>());
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    tokenizer_ = *std::move(tokenizer);
  }

  std::string dir_;
  nlohmann::json fixture_;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer_;
};

TEST_P(TokenizerFixtureTest, VocabularySize) {
  EXPECT_EQ(tokenizer_->vocab_size(), fixture_["vocab_size"].get<int32_t>());
  EXPECT_EQ(tokenizer_->kind(), "bpe");
}

TEST_P(TokenizerFixtureTest, EncodeAndDecodeEveryCase) {
  ASSERT_GE(fixture_["cases"].size(), 40u);
  int failures = 0;
  for (const auto& c : fixture_["cases"]) {
    const std::string name = c["name"].get<std::string>();
    const std::string text = c["text"].get<std::string>();
    SCOPED_TRACE("case " + name);
    const auto want = c["ids"].get<std::vector<int32_t>>();
    absl::StatusOr<std::vector<int32_t>> ids = tokenizer_->Encode(text);
    ASSERT_TRUE(ids.ok()) << ids.status();
    if (*ids != want) {
      ADD_FAILURE() << DescribeDifference(*ids, want);
      if (++failures > 10) break;
      continue;
    }
    absl::StatusOr<std::vector<int32_t>> with_special =
        tokenizer_->Encode(text, /*add_special_tokens=*/true);
    ASSERT_TRUE(with_special.ok()) << with_special.status();
    EXPECT_EQ(*with_special, c["ids_with_special"].get<std::vector<int32_t>>());

    absl::StatusOr<std::string> decoded = tokenizer_->Decode(want);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(*decoded, c["decoded"].get<std::string>());
    absl::StatusOr<std::string> skipped = tokenizer_->Decode(want, /*skip_special_tokens=*/true);
    ASSERT_TRUE(skipped.ok()) << skipped.status();
    EXPECT_EQ(*skipped, c["decoded_skip_special"].get<std::string>());

    // Streaming gives the same text, in pieces of whole characters.
    tokenizer::IncrementalDecoder stream(tokenizer_.get());
    std::string streamed;
    for (int32_t id : want) {
      absl::StatusOr<std::string> piece = stream.Add(id);
      ASSERT_TRUE(piece.ok()) << piece.status();
      EXPECT_TRUE(tokenizer::IsValidUtf8(*piece));
      streamed += *piece;
    }
    streamed += stream.Flush();
    EXPECT_EQ(streamed, c["decoded"].get<std::string>());

    for (const bool skip : {false, true}) {
      // Without its own entry, skipping special tokens changes no prefix's decode.
      const char* key = skip && c.contains("prefix_decodes_skip_special")
                            ? "prefix_decodes_skip_special"
                            : "prefix_decodes";
      if (c.contains(key) && !CheckPrefixes(*tokenizer_, want, PrefixDecodes(c[key]), skip)) {
        if (++failures > 10) return;
      }
    }
  }
}

// Id sequences chosen to decode awkwardly: lone and partial byte tokens, invalid UTF-8, byte
// runs across special tokens, leading "▁" tokens.
TEST_P(TokenizerFixtureTest, DecodeCases) {
  if (!fixture_.contains("decode_cases") || fixture_["decode_cases"].empty()) {
    GTEST_SKIP() << "no decode_cases in this fixture";
  }
  int failures = 0;
  for (const auto& c : fixture_["decode_cases"]) {
    SCOPED_TRACE("decode case " + c["name"].get<std::string>());
    const auto ids = c["ids"].get<std::vector<int32_t>>();
    for (const bool skip : {false, true}) {
      absl::StatusOr<std::string> text = tokenizer_->Decode(ids, skip);
      ASSERT_TRUE(text.ok()) << text.status();
      EXPECT_EQ(*text, c[skip ? "decoded_skip_special" : "decoded"].get<std::string>())
          << "skip_special_tokens " << skip;
      const char* key = skip ? "prefix_decodes_skip_special" : "prefix_decodes";
      if (!CheckPrefixes(*tokenizer_, ids, PrefixDecodes(c[key]), skip) && ++failures > 10) {
        return;
      }
    }
  }
}

TEST_P(TokenizerFixtureTest, LargeInput) {
  for (const auto& large : fixture_["large"]) {
    SCOPED_TRACE(large["name"].get<std::string>());
    absl::StatusOr<std::string> text =
        tokenizer::ReadFileMaybeGzipped(dir_ + "/" + large["text_file"].get<std::string>());
    ASSERT_TRUE(text.ok()) << text.status();
    ASSERT_EQ(text->size(), large["bytes"].get<size_t>());
    absl::StatusOr<std::vector<int32_t>> ids = tokenizer_->Encode(*text);
    ASSERT_TRUE(ids.ok()) << ids.status();
    const auto first = large["first_ids"].get<std::vector<int32_t>>();
    const std::vector<int32_t> got_first(ids->begin(),
                                         ids->begin() + std::min(ids->size(), first.size()));
    EXPECT_EQ(got_first, first) << DescribeDifference(got_first, first);
    EXPECT_EQ(ids->size(), large["num_ids"].get<size_t>());
    EXPECT_EQ(IdsHash(*ids), large["ids_fnv1a64"].get<std::string>());
    absl::StatusOr<std::string> decoded = tokenizer_->Decode(*ids);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(Fnv1a64(decoded->data(), decoded->size()),
              large["decoded_fnv1a64"].get<std::string>());
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, TokenizerFixtureTest, ::testing::ValuesIn(FixtureDirs()),
                         [](const ::testing::TestParamInfo<std::string>& param) {
                           return param.param;
                         });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(TokenizerFixtureTest);

TEST(TokenizerFixturesTest, FixturesPresent) {
  if (FixtureDirs().empty()) {
    GTEST_SKIP() << "no tokenizer fixtures in " << FixtureRoot()
                 << " (tools/make_tokenizer_fixtures.py makes them)";
  }
  // The two trained tokenizers the issue asks for must be among them.
  const std::vector<std::string> dirs = FixtureDirs();
  if (std::getenv("MAMBA_TOKENIZER_FIXTURES") == nullptr) {
    EXPECT_NE(std::find(dirs.begin(), dirs.end(), "small"), dirs.end());
    EXPECT_NE(std::find(dirs.begin(), dirs.end(), "neox50k"), dirs.end());
  }
}

}  // namespace
}  // namespace mamba
