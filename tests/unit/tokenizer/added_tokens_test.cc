// Added tokens (special or not) and their flags, on hand-made documents; expectations follow
// Hugging Face's AddedVocabulary rules (see added_vocabulary.h).
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/tokenizer/tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/tokenizer/test_tokenizers.h"

namespace mamba {
namespace {

using ::mamba::testing::AddToken;
using ::mamba::testing::ByteLevelBpeDocument;
using ::mamba::testing::IdOf;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;

std::unique_ptr<tokenizer::Tokenizer> Load(const nlohmann::json& doc) {
  absl::StatusOr<std::unique_ptr<tokenizer::Tokenizer>> t =
      tokenizer::ParseTokenizerJson(doc.dump(), "test.json");
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? *std::move(t) : nullptr;
}

std::vector<int32_t> Encode(const tokenizer::Tokenizer& t, const std::string& text) {
  absl::StatusOr<std::vector<int32_t>> ids = t.Encode(text);
  EXPECT_TRUE(ids.ok()) << ids.status();
  return ids.ok() ? *ids : std::vector<int32_t>{};
}

// Byte ids of `s` as the empty-merges model encodes it (every byte its own token).
std::vector<int32_t> Bytes(const std::string& s) {
  std::vector<int32_t> ids;
  for (char c : s) ids.push_back(static_cast<uint8_t>(c));
  return ids;
}

std::vector<int32_t> Concat(std::initializer_list<std::vector<int32_t>> parts) {
  std::vector<int32_t> all;
  for (const auto& p : parts) all.insert(all.end(), p.begin(), p.end());
  return all;
}

TEST(AddedTokensTest, SpecialTokensAreMatchedInsideText) {
  nlohmann::json doc = ByteLevelBpeDocument({});
  AddToken(&doc, "<|endoftext|>", true);
  AddToken(&doc, "<|padding|>", true);
  auto t = Load(doc);
  ASSERT_NE(t, nullptr);
  const int eot = IdOf(doc, "<|endoftext|>");
  const int pad = IdOf(doc, "<|padding|>");
  EXPECT_EQ(eot, 256);
  EXPECT_EQ(pad, 257);
  EXPECT_EQ(Encode(*t, "Hi<|endoftext|>Yo"), Concat({Bytes("Hi"), {eot}, Bytes("Yo")}));
  EXPECT_EQ(Encode(*t, "<|endoftext|><|padding|>"), (std::vector<int32_t>{eot, pad}));
  // Text around a special token is pre-tokenized on its own: " x" keeps its space.
  EXPECT_EQ(Encode(*t, "a <|endoftext|> x"), Concat({Bytes("a "), {eot}, Bytes(" x")}));
  EXPECT_EQ(Encode(*t, "<|endoftext"), Bytes("<|endoftext"));
}

TEST(AddedTokensTest, LeftmostThenLongest) {
  nlohmann::json doc = ByteLevelBpeDocument({});
  AddToken(&doc, "<a>", true);
  AddToken(&doc, "<a><b>", true);
  AddToken(&doc, "bcd", false, {{"normalized", false}});
  AddToken(&doc, "ab", false, {{"normalized", false}});
  auto t = Load(doc);
  ASSERT_NE(t, nullptr);
  EXPECT_THAT(Encode(*t, "<a><b><a>"), ElementsAre(IdOf(doc, "<a><b>"), IdOf(doc, "<a>")));
  // "ab" starts first, so "bcd" (longer, one byte later) never gets its chance.
  EXPECT_EQ(Encode(*t, "abcd"), Concat({{IdOf(doc, "ab")}, Bytes("cd")}));
  EXPECT_EQ(Encode(*t, "xbcd"), Concat({Bytes("x"), {IdOf(doc, "bcd")}}));
}

TEST(AddedTokensTest, SingleWord) {
  nlohmann::json doc = ByteLevelBpeDocument({});
  AddToken(&doc, "[w]", false, {{"single_word", true}, {"normalized", false}});
  auto t = Load(doc);
  ASSERT_NE(t, nullptr);
  const int w = IdOf(doc, "[w]");
  EXPECT_EQ(Encode(*t, "[w]"), (std::vector<int32_t>{w}));
  EXPECT_EQ(Encode(*t, "a [w] b"), Concat({Bytes("a "), {w}, Bytes(" b")}));
  EXPECT_EQ(Encode(*t, "x[w]"), Bytes("x[w]"));
  EXPECT_EQ(Encode(*t, "[w]2"), Bytes("[w]2"));
  EXPECT_EQ(Encode(*t, "([w])"), Concat({Bytes("("), {w}, Bytes(")")}));
  // "_" and combining marks are word characters (Rust regex \w).
  EXPECT_EQ(Encode(*t, "_[w]"), Bytes("_[w]"));
  EXPECT_EQ(Encode(*t, "[w]\xcc\x81"), Bytes("[w]\xcc\x81"));
}

TEST(AddedTokensTest, ADroppedSingleWordMatchStillConsumesItsText) {
  nlohmann::json doc = ByteLevelBpeDocument({});
  AddToken(&doc, "ab", false, {{"single_word", true}, {"normalized", false}});
  AddToken(&doc, "b", false, {{"normalized", false}});
  auto t = Load(doc);
  ASSERT_NE(t, nullptr);
  // The reference finds "ab" at 1, drops it (x touches it) and resumes after it, so the "b"
  // inside is not matched either.
  EXPECT_EQ(Encode(*t, "xab"), Bytes("xab"));
  EXPECT_EQ(Encode(*t, "xb"), Concat({Bytes("x"), {IdOf(doc, "b")}}));
}

TEST(AddedTokensTest, LstripAndRstripTakeTheWhiteSpaceAround) {
  nlohmann::json doc = ByteLevelBpeDocument({});
  AddToken(&doc, "<m>", true, {{"lstrip", true}});
  AddToken(&doc, "<r>", true, {{"rstrip", true}});
  auto t = Load(doc);
  ASSERT_NE(t, nullptr);
  const int m = IdOf(doc, "<m>");
  const int r = IdOf(doc, "<r>");
  EXPECT_EQ(Encode(*t, "a \t <m> b"), Concat({Bytes("a"), {m}, Bytes(" b")}));
  EXPECT_EQ(Encode(*t, "a <r> \n b"), Concat({Bytes("a "), {r}, Bytes("b")}));
  // lstrip never reaches back into the previous token.
  EXPECT_EQ(Encode(*t, "<r>  <m>x"), (Concat({{r, m}, Bytes("x")})));
  // U+3000 is white space too.
  EXPECT_EQ(Encode(*t, "a\xe3\x80\x80<m>"), Concat({Bytes("a"), {m}}));
}

TEST(AddedTokensTest, NormalizedTokensMatchTheNormalizedText) {
  nlohmann::json doc = ByteLevelBpeDocument({});
  AddToken(&doc, "cafe\xcc\x81", false, {{"normalized", true}});  // NFC: "caf\u00e9"
  AddToken(&doc, "e\xcc\x81", true, {{"normalized", false}});     // matched raw only
  auto t = Load(doc);
  ASSERT_NE(t, nullptr);
  const int cafe = IdOf(doc, "cafe\xcc\x81");
  const int raw = IdOf(doc, "e\xcc\x81");
  EXPECT_EQ(Encode(*t, "caf\xc3\xa9!"), Concat({{cafe}, Bytes("!")}));
  // Raw matching comes first: the decomposed accent is taken before NFC could compose it.
  EXPECT_EQ(Encode(*t, "cafe\xcc\x81"), Concat({Bytes("caf"), {raw}}));
  // A normalized token decodes to its normalized spelling, through the byte-level decoder:
  // "caf\u00e9" is all alphabet characters, so U+00E9 stands for the byte 0xE9.
  EXPECT_EQ(t->IdToToken(cafe), "caf\xc3\xa9");
  EXPECT_EQ(*t->DecodeBytes({cafe}), "caf\xe9");
  EXPECT_EQ(*t->DecodeBytes({raw}), "e\xcc\x81");
  EXPECT_TRUE(t->IsSpecial(raw));
  EXPECT_FALSE(t->IsSpecial(cafe));
}

TEST(AddedTokensTest, TokensInTheVocabularyKeepTheirIds) {
  nlohmann::json doc = ByteLevelBpeDocument({{"a", "b"}});
  AddToken(&doc, "ab", true);  // already id 256
  AddToken(&doc, "<x>", true);
  auto t = Load(doc);
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(IdOf(doc, "ab"), 256);
  EXPECT_EQ(IdOf(doc, "<x>"), 257);
  EXPECT_EQ(t->TokenToId("<x>"), 257);
  EXPECT_THAT(Encode(*t, "xaby"), ElementsAre('x', 256, 'y'));
  EXPECT_TRUE(t->IsSpecial(256));
  EXPECT_EQ(*t->Decode({'x', 256, 'y', 257}, /*skip_special_tokens=*/true), "xy");
}

TEST(AddedTokensTest, DuplicateNormalizedSpellingsAreRefused) {
  nlohmann::json doc = ByteLevelBpeDocument({});
  AddToken(&doc, "\xc3\xa9", false, {{"normalized", true}});
  AddToken(&doc, "e\xcc\x81", false, {{"normalized", true}});
  absl::StatusOr<std::unique_ptr<tokenizer::Tokenizer>> t =
      tokenizer::ParseTokenizerJson(doc.dump(), "dup.json");
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(AddedTokensTest, ByteTokenizerIgnoresEmptyAndRepeatedSpecials) {
  auto t = tokenizer::MakeByteTokenizer({"<s>", "", "<s>", "</s>"});
  EXPECT_EQ(t->vocab_size(), 260);
  EXPECT_THAT(*t->Encode("<s>x</s>"), ElementsAre(256, 'x', 259));
  EXPECT_THAT(*t->Encode(""), ElementsAreArray(std::vector<int32_t>{}));
}

}  // namespace
}  // namespace mamba
