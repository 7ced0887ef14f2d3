#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "engine/tokenizer/tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mamba {
namespace {

using ::testing::ElementsAre;

TEST(ByteTokenizerTest, BytesAndSpecials) {
  auto t = tokenizer::MakeByteTokenizer({"<|endoftext|>", "<|padding|>"});
  EXPECT_EQ(t->kind(), "byte");
  EXPECT_EQ(t->vocab_size(), 258);
  EXPECT_EQ(t->eos_id(), 256);
  EXPECT_THAT(*t->Encode("hi"), ElementsAre('h', 'i'));
  EXPECT_THAT(*t->Encode("\xc3\xa9"), ElementsAre(0xc3, 0xa9));
  EXPECT_THAT(*t->Encode("a<|endoftext|>b<|padding|>"), ElementsAre('a', 256, 'b', 257));
  EXPECT_THAT(*t->Encode("<|endoftext|"),
              ElementsAre('<', '|', 'e', 'n', 'd', 'o', 'f', 't', 'e', 'x', 't', '|'));
  EXPECT_TRUE(t->Encode("").value().empty());
  EXPECT_TRUE(t->IsSpecial(256));
  EXPECT_FALSE(t->IsSpecial(255));
  EXPECT_EQ(*t->Decode({'a', 256, 'b'}), "a<|endoftext|>b");
  EXPECT_EQ(*t->Decode({'a', 256, 'b'}, /*skip_special_tokens=*/true), "ab");
  EXPECT_EQ(*t->DecodeBytes({0xe4, 0xbd}), "\xe4\xbd");
  EXPECT_EQ(*t->Decode({0xe4, 0xbd}), "\xef\xbf\xbd");
}

TEST(ByteTokenizerTest, TokenSpellings) {
  auto t = tokenizer::MakeByteTokenizer({"<|endoftext|>"});
  EXPECT_EQ(t->IdToToken('a'), "a");
  EXPECT_EQ(t->IdToToken(' '), "\xc4\xa0");  // GPT-2's alphabet, like the BPE vocabulary
  EXPECT_EQ(t->IdToToken(256), "<|endoftext|>");
  EXPECT_EQ(t->IdToToken(257), "");
  for (int id = 0; id < 257; ++id) EXPECT_EQ(t->TokenToId(t->IdToToken(id)), id);
  EXPECT_EQ(t->TokenToId("nope"), std::nullopt);
}

TEST(ByteTokenizerTest, LargerVocabularyDecodesUnusedIdsToNothing) {
  auto t = tokenizer::MakeByteTokenizer({"<|endoftext|>"}, 300);
  EXPECT_EQ(t->vocab_size(), 300);
  EXPECT_EQ(*t->Decode({'o', 257, 299, 'k'}), "ok");
  EXPECT_FALSE(t->IsSpecial(299));
  EXPECT_EQ(t->DecodeBytes({300}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(t->DecodeBytes({-1}).status().code(), absl::StatusCode::kInvalidArgument);
  // Too small a vocabulary is raised to fit the named ids.
  EXPECT_EQ(tokenizer::MakeByteTokenizer({"<a>", "<b>"}, 10)->vocab_size(), 258);
  EXPECT_EQ(tokenizer::MakeByteTokenizer({})->eos_id(), std::nullopt);
}

TEST(ByteTokenizerTest, RoundTripsEveryValidString) {
  auto t = tokenizer::MakeByteTokenizer({"<|endoftext|>"});
  const std::string text =
      "plain \t\n \xc3\xa9 \xe4\xb8\x96 \xf0\x9f\x8d\x95 " + std::string(1, '\0');
  EXPECT_EQ(*t->Decode(*t->Encode(text)), text);
  EXPECT_FALSE(t->Encode("\xff").ok());
}

// The default model's tokenizer.json writes the byte tokenizer as a merge-less byte-level BPE;
// both must give the same ids and text.
TEST(ByteTokenizerTest, AgreesWithTheDefaultModelsTokenizerJson) {
  const std::string path =
      std::string(MAMBA_TEST_DATA_DIR) + "/../../models/default/tokenizer.json";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "no " << path;
  absl::StatusOr<std::unique_ptr<tokenizer::Tokenizer>> bpe = tokenizer::LoadTokenizerJson(path);
  ASSERT_TRUE(bpe.ok()) << bpe.status();
  auto bytes = tokenizer::MakeByteTokenizer({"<|endoftext|>"});
  EXPECT_EQ((*bpe)->vocab_size(), bytes->vocab_size());
  EXPECT_EQ((*bpe)->eos_id(), bytes->eos_id());
  const std::vector<std::string> pool = {"a",
                                         " ",
                                         "\n",
                                         "<|endoftext|>",
                                         "\xc3\xa9",
                                         "e\xcc\x81",
                                         "\xe4\xb8\x96",
                                         "\xf0\x9f\x8d\x95",
                                         "'s",
                                         "  ",
                                         "7"};
  std::mt19937 rng(5);
  for (int i = 0; i < 500; ++i) {
    std::string text;
    for (int n = static_cast<int>(rng() % 20); n > 0; --n) text += pool[rng() % pool.size()];
    const absl::StatusOr<std::vector<int32_t>> want = bytes->Encode(text);
    const absl::StatusOr<std::vector<int32_t>> got = (*bpe)->Encode(text);
    ASSERT_TRUE(want.ok() && got.ok());
    ASSERT_EQ(*got, *want) << text;
    ASSERT_EQ(*(*bpe)->Decode(*got), *bytes->Decode(*want));
  }
}

}  // namespace
}  // namespace mamba
