// The BPE tokenizer on small hand-made tokenizer.json documents, with expectations worked out
// by hand from Hugging Face's algorithm.
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "engine/tokenizer/tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/tokenizer/test_tokenizers.h"

namespace mamba {
namespace {

using ::mamba::testing::AddToken;
using ::mamba::testing::Alphabet;
using ::mamba::testing::ByteLevelBpeDocument;
using ::mamba::testing::IdOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

const std::string kG = "\xc4\xa0";  // U+0120, the alphabet's space

std::unique_ptr<tokenizer::Tokenizer> Load(const nlohmann::json& doc) {
  absl::StatusOr<std::unique_ptr<tokenizer::Tokenizer>> t =
      tokenizer::ParseTokenizerJson(doc.dump(), "test.json");
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? *std::move(t) : nullptr;
}

std::vector<int32_t> Encode(const tokenizer::Tokenizer& t, const std::string& text,
                            bool special = false) {
  absl::StatusOr<std::vector<int32_t>> ids = t.Encode(text, special);
  EXPECT_TRUE(ids.ok()) << ids.status();
  return ids.ok() ? *ids : std::vector<int32_t>{};
}

nlohmann::json HelloWorldDocument() {
  return ByteLevelBpeDocument({{"h", "e"},
                               {"l", "l"},
                               {"he", "ll"},
                               {"hell", "o"},
                               {kG, "w"},
                               {"o", "r"},
                               {kG + "w", "or"},
                               {"l", "d"},
                               {kG + "wor", "ld"}});
}

TEST(BpeTokenizerTest, MergesWordsByRank) {
  const nlohmann::json doc = HelloWorldDocument();
  auto t = Load(doc);
  ASSERT_NE(t, nullptr);
  EXPECT_THAT(Encode(*t, "hello world"), ElementsAre(IdOf(doc, "hello"), IdOf(doc, kG + "world")));
  // "hell" has no merge with "!" and the regex splits "!" off anyway.
  EXPECT_THAT(Encode(*t, "hell!"), ElementsAre(IdOf(doc, "hell"), '!'));
  EXPECT_THAT(Encode(*t, ""), ElementsAre());
  EXPECT_EQ(t->kind(), "bpe");
  EXPECT_EQ(t->vocab_size(), 256 + 9);
}

TEST(BpeTokenizerTest, LowestRankFirstNotLeftToRight) {
  // "b c" outranks "a b": "abc" -> [a, bc], not [ab, c].
  const nlohmann::json doc = ByteLevelBpeDocument({{"b", "c"}, {"a", "b"}});
  auto t = Load(doc);
  ASSERT_NE(t, nullptr);
  EXPECT_THAT(Encode(*t, "abc"), ElementsAre('a', IdOf(doc, "bc")));
  EXPECT_THAT(Encode(*t, "abd"), ElementsAre(IdOf(doc, "ab"), 'd'));
}

TEST(BpeTokenizerTest, RepeatedPairsMergeFromTheLeft) {
  const nlohmann::json doc = ByteLevelBpeDocument({{"a", "a"}});
  auto t = Load(doc);
  ASSERT_NE(t, nullptr);
  const int aa = IdOf(doc, "aa");
  EXPECT_THAT(Encode(*t, "aaaaa"), ElementsAre(aa, aa, 'a'));
  const nlohmann::json doc2 = ByteLevelBpeDocument({{"a", "a"}, {"aa", "aa"}});
  auto t2 = Load(doc2);
  ASSERT_NE(t2, nullptr);
  EXPECT_THAT(Encode(*t2, "aaaaaaaaa"), ElementsAre(IdOf(doc2, "aaaa"), IdOf(doc2, "aaaa"), 'a'));
}

TEST(BpeTokenizerTest, LegacyMergeStringsEqualPairs) {
  nlohmann::json doc = HelloWorldDocument();
  nlohmann::json legacy = doc;
  legacy["model"]["merges"] = nlohmann::json::array({"#version: 0.2"});
  for (const auto& m : doc["model"]["merges"]) {
    legacy["model"]["merges"].push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
  }
  auto a = Load(doc);
  auto b = Load(legacy);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  for (const std::string text : {"hello world", "well, hello there world", "o r l d"}) {
    EXPECT_EQ(Encode(*a, text), Encode(*b, text)) << text;
  }
}

TEST(BpeTokenizerTest, BytesMissingFromTheVocabularyAreDroppedOrUnk) {
  nlohmann::json doc = ByteLevelBpeDocument({});
  doc["model"]["vocab"].erase("z");
  auto dropped = Load(doc);
  ASSERT_NE(dropped, nullptr);
  EXPECT_THAT(Encode(*dropped, "zoo"), ElementsAre('o', 'o'));

  doc["model"]["vocab"]["<unk>"] = 256;
  doc["model"]["unk_token"] = "<unk>";
  auto unk = Load(doc);
  ASSERT_NE(unk, nullptr);
  EXPECT_THAT(Encode(*unk, "zzoz"), ElementsAre(256, 256, 'o', 256));
  doc["model"]["fuse_unk"] = true;
  auto fused = Load(doc);
  ASSERT_NE(fused, nullptr);
  EXPECT_THAT(Encode(*fused, "zzoz"), ElementsAre(256, 'o', 256));
}

TEST(BpeTokenizerTest, IgnoreMergesTakesWholeWordsFromTheVocabulary) {
  nlohmann::json doc = ByteLevelBpeDocument({{"x", "y"}});
  doc["model"]["vocab"][kG + "xyz"] = 300;
  doc["model"]["vocab"]["pad"] = 299;
  for (int id = 258; id < 299; ++id) doc["model"]["vocab"]["filler" + std::to_string(id)] = id;
  auto normal = Load(doc);
  ASSERT_NE(normal, nullptr);
  EXPECT_THAT(Encode(*normal, " xyz"), ElementsAre(' ', IdOf(doc, "xy"), 'z'));
  doc["model"]["ignore_merges"] = true;
  auto ignoring = Load(doc);
  ASSERT_NE(ignoring, nullptr);
  EXPECT_THAT(Encode(*ignoring, " xyz"), ElementsAre(300));
  EXPECT_THAT(Encode(*ignoring, " xyzq"), ElementsAre(' ', IdOf(doc, "xy"), 'z', 'q'));
}

TEST(BpeTokenizerTest, AddPrefixSpace) {
  nlohmann::json doc = HelloWorldDocument();
  doc["pre_tokenizer"]["add_prefix_space"] = true;
  auto t = Load(doc);
  ASSERT_NE(t, nullptr);
  const int g = IdOf(doc, kG);
  EXPECT_THAT(Encode(*t, "hello"), ElementsAre(g, IdOf(doc, "hello")));
  // Text that already starts with a space gets no second one.
  EXPECT_THAT(Encode(*t, " world"), ElementsAre(IdOf(doc, kG + "world")));
}

TEST(BpeTokenizerTest, WithoutRegexTheWholePieceIsOneWord) {
  nlohmann::json doc = ByteLevelBpeDocument({{"a", kG}, {"a" + kG, "b"}});
  auto with_regex = Load(doc);
  doc["pre_tokenizer"]["use_regex"] = false;
  auto without = Load(doc);
  ASSERT_NE(with_regex, nullptr);
  ASSERT_NE(without, nullptr);
  EXPECT_THAT(Encode(*with_regex, "a b"), ElementsAre('a', ' ', 'b'));
  EXPECT_THAT(Encode(*without, "a b"), ElementsAre(IdOf(doc, "a" + kG + "b")));
}

TEST(BpeTokenizerTest, NfcNormalizerComposesBeforeMerging) {
  const std::string e_acute = "\xc3\xa9";
  const nlohmann::json doc = ByteLevelBpeDocument({{Alphabet("\xc3"), Alphabet("\xa9")}});
  auto t = Load(doc);
  ASSERT_NE(t, nullptr);
  const int id = IdOf(doc, Alphabet(e_acute));
  EXPECT_THAT(Encode(*t, e_acute), ElementsAre(id));
  EXPECT_THAT(Encode(*t, "e\xcc\x81"), ElementsAre(id));  // e + U+0301 -> U+00E9
  nlohmann::json plain = doc;
  plain["normalizer"] = nullptr;
  auto raw = Load(plain);
  ASSERT_NE(raw, nullptr);
  EXPECT_THAT(Encode(*raw, "e\xcc\x81"), ElementsAre('e', 0xcc, 0x81));
}

TEST(BpeTokenizerTest, SplitPreTokenizerSteps) {
  nlohmann::json doc = ByteLevelBpeDocument({{"a", "b"}});
  doc["normalizer"] = nullptr;
  doc["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers",
       {{{"type", "Split"},
         {"pattern", {{"String", "-"}}},
         {"behavior", "Removed"},
         {"invert", false}},
        {{"type", "Digits"}, {"individual_digits", true}},
        {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}};
  auto t = Load(doc);
  ASSERT_NE(t, nullptr);
  // "-" removed; digits isolated; "ab" merges only inside one piece.
  EXPECT_THAT(Encode(*t, "ab-a-b12ab"),
              ElementsAre(IdOf(doc, "ab"), 'a', 'b', '1', '2', IdOf(doc, "ab")));
  doc["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "MergedWithNext";
  auto merged = Load(doc);
  ASSERT_NE(merged, nullptr);
  EXPECT_THAT(Encode(*merged, "a-ab"), ElementsAre('a', '-', IdOf(doc, "ab")));
}

TEST(BpeTokenizerTest, TemplatePostProcessorAddsSpecialTokensOnRequest) {
  nlohmann::json doc = HelloWorldDocument();
  AddToken(&doc, "<bos>", true);
  AddToken(&doc, "<eos>", true);
  const int bos = IdOf(doc, "<bos>");
  const int eos = IdOf(doc, "<eos>");
  doc["post_processor"] = {{"type", "TemplateProcessing"},
                           {"single",
                            {{{"SpecialToken", {{"id", "<bos>"}, {"type_id", 0}}}},
                             {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                             {{"SpecialToken", {{"id", "<eos>"}, {"type_id", 0}}}}}},
                           {"pair", nlohmann::json::array()},
                           {"special_tokens",
                            {{"<bos>", {{"id", "<bos>"}, {"ids", {bos}}, {"tokens", {"<bos>"}}}},
                             {"<eos>", {{"id", "<eos>"}, {"ids", {eos}}, {"tokens", {"<eos>"}}}}}}};
  auto t = Load(doc);
  ASSERT_NE(t, nullptr);
  EXPECT_THAT(Encode(*t, "hello"), ElementsAre(IdOf(doc, "hello")));
  EXPECT_THAT(Encode(*t, "hello", true), ElementsAre(bos, IdOf(doc, "hello"), eos));
  EXPECT_THAT(Encode(*t, "", true), ElementsAre(bos, eos));
  EXPECT_TRUE(t->IsSpecial(bos));
  EXPECT_EQ(*t->eos_id(), eos);  // "<eos>" is the end of text when "<|endoftext|>" is absent
}

TEST(BpeTokenizerTest, VocabularyAccessors) {
  nlohmann::json doc = HelloWorldDocument();
  AddToken(&doc, "<|endoftext|>", true);
  auto t = Load(doc);
  ASSERT_NE(t, nullptr);
  const int eot = IdOf(doc, "<|endoftext|>");
  EXPECT_EQ(t->vocab_size(), eot + 1);
  EXPECT_EQ(t->TokenToId(kG + "world"), IdOf(doc, kG + "world"));
  EXPECT_EQ(t->IdToToken(IdOf(doc, kG + "world")), kG + "world");
  EXPECT_EQ(t->IdToToken(' '), kG);
  EXPECT_EQ(t->IdToToken(-1), "");
  EXPECT_EQ(t->IdToToken(eot + 1), "");
  EXPECT_EQ(t->TokenToId("nope"), std::nullopt);
  EXPECT_EQ(t->eos_id(), eot);
  EXPECT_TRUE(t->IsSpecial(eot));
  EXPECT_FALSE(t->IsSpecial('a'));
  EXPECT_FALSE(t->IsSpecial(-5));
}

TEST(BpeTokenizerTest, DecodeMapsTheAlphabetBackToBytes) {
  nlohmann::json doc = HelloWorldDocument();
  AddToken(&doc, "<|endoftext|>", true);
  AddToken(&doc, "  ", false);  // not in the alphabet: decodes to itself
  auto t = Load(doc);
  ASSERT_NE(t, nullptr);
  const int eot = IdOf(doc, "<|endoftext|>");
  const std::vector<int32_t> ids = {IdOf(doc, "hello"),      eot,  IdOf(doc, "  "),
                                    IdOf(doc, kG + "world"), 0xe4, 0xbd};
  EXPECT_EQ(*t->DecodeBytes(ids), "hello<|endoftext|>   world\xe4\xbd");
  EXPECT_EQ(*t->DecodeBytes(ids, true), "hello   world\xe4\xbd");
  EXPECT_EQ(*t->Decode(ids), "hello<|endoftext|>   world\xef\xbf\xbd");
  absl::StatusOr<std::string> bad = t->DecodeBytes({1, t->vocab_size()});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("position 1"));
  EXPECT_FALSE(t->DecodeBytes({-1}).ok());
}

TEST(BpeTokenizerTest, RejectsInvalidUtf8Text) {
  auto t = Load(HelloWorldDocument());
  ASSERT_NE(t, nullptr);
  absl::StatusOr<std::vector<int32_t>> ids = t->Encode("ok\xff");
  EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(ids.status().message()), HasSubstr("byte 2"));
}

// Random valid UTF-8 from every range (ASCII, 2-, 3- and 4-byte characters, white space).
std::string RandomText(std::mt19937* rng, int max_chars) {
  static const std::vector<std::string> pool = {"a",
                                                "b",
                                                "Z",
                                                "0",
                                                "7",
                                                " ",
                                                " ",
                                                "  ",
                                                "\t",
                                                "\n",
                                                "\r\n",
                                                "'",
                                                "'s",
                                                "!",
                                                ".",
                                                "\xc3\xa9",
                                                "e\xcc\x81",
                                                "\xcc\x81",
                                                "\xe4\xb8\x96",
                                                "\xe3\x80\x80",
                                                "\xc2\x85",
                                                "\xc2\xa0",
                                                "\xf0\x9f\x8d\x95",
                                                "\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9",
                                                "\xc4\xa0",
                                                std::string(1, '\0'),
                                                "\x7f",
                                                "\xf4\x8f\xbf\xbf"};
  std::uniform_int_distribution<int> length(0, max_chars);
  std::uniform_int_distribution<size_t> pick(0, pool.size() - 1);
  std::string text;
  for (int n = length(*rng); n > 0; --n) text += pool[pick(*rng)];
  return text;
}

TEST(BpeTokenizerTest, DecodeOfEncodeIsTheIdentityWithoutANormalizer) {
  nlohmann::json doc = HelloWorldDocument();
  doc["normalizer"] = nullptr;
  auto t = Load(doc);
  ASSERT_NE(t, nullptr);
  std::mt19937 rng(7);
  for (int i = 0; i < 2000; ++i) {
    const std::string text = RandomText(&rng, 30);
    absl::StatusOr<std::string> back = t->Decode(Encode(*t, text));
    ASSERT_TRUE(back.ok());
    ASSERT_EQ(*back, text);
  }
}

TEST(BpeTokenizerTest, ConcurrentEncodersAgree) {
  auto t = Load(HelloWorldDocument());
  ASSERT_NE(t, nullptr);
  std::mt19937 rng(11);
  std::vector<std::string> texts;
  std::vector<std::vector<int32_t>> want;
  for (int i = 0; i < 200; ++i) {
    texts.push_back(RandomText(&rng, 40) + " hello world");
    want.push_back(Encode(*t, texts.back()));
  }
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int k = 0; k < 4; ++k) {
    threads.emplace_back([&, k] {
      for (int round = 0; round < 20; ++round) {
        for (size_t i = 0; i < texts.size(); ++i) {
          absl::StatusOr<std::vector<int32_t>> ids = t->Encode(texts[i]);
          if (!ids.ok() || *ids != want[i]) ++mismatches[k];
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_THAT(mismatches, ElementsAre(0, 0, 0, 0));
}

TEST(BpeTokenizerTest, LongRunsEncode) {
  auto t = Load(ByteLevelBpeDocument({{"a", "a"}, {kG, kG}}));
  ASSERT_NE(t, nullptr);
  const std::string letters(100000, 'a');
  EXPECT_EQ(Encode(*t, letters).size(), 50000u);
  const std::string spaces(100001, ' ');
  EXPECT_EQ(Encode(*t, spaces).size(), 50001u);
  EXPECT_EQ(*t->Decode(Encode(*t, spaces + "x" + letters)), spaces + "x" + letters);
}

}  // namespace
}  // namespace mamba
