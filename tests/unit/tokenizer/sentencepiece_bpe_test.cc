// SentencePiece-converted BPE files (Llama-2 / Mistral / Mamba-Codestral) on small hand-made
// tokenizer.json documents, with expectations worked out by hand from Hugging Face's algorithm
// (tokenizers 0.23: models/bpe/model.rs, normalizers/prepend.rs and replace.rs,
// pre_tokenizers/metaspace.rs, decoders/byte_fallback.rs, fuse.rs, strip.rs).
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

using ::mamba::testing::ByteToken;
using ::mamba::testing::IdOf;
using ::mamba::testing::kMeta;
using ::mamba::testing::SpmBpeDocument;
using ::mamba::testing::SpmOptions;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

const std::string kM = kMeta;                     // "▁"
const std::string kReplacement = "\xef\xbf\xbd";  // U+FFFD

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

std::string Decode(const tokenizer::Tokenizer& t, const std::vector<int32_t>& ids,
                   bool skip = false) {
  absl::StatusOr<std::string> text = t.Decode(ids, skip);
  EXPECT_TRUE(text.ok()) << text.status();
  return text.ok() ? *text : std::string("<error>");
}

// "hello" and "world" in the shape SentencePiece gives them: merges that build "▁hello" and
// "▁world" from characters, and "▁▁".
nlohmann::json HelloDocument(const SpmOptions& options = {}) {
  return SpmBpeDocument({kM, "a", "b", "c", "d", "e", "h", "l", "o", "r", "w"},
                        {{kM, "h"},
                         {"l", "l"},
                         {kM + "h", "e"},
                         {kM + "he", "ll"},
                         {kM + "hell", "o"},
                         {kM, "w"},
                         {"o", "r"},
                         {kM + "w", "or"},
                         {"l", "d"},
                         {kM + "wor", "ld"},
                         {kM, kM}},
                        options);
}

SpmOptions MetaspaceOptions(const std::string& scheme, bool split) {
  SpmOptions options;
  options.layout = SpmOptions::Layout::kMetaspace;
  options.prepend_scheme = scheme;
  options.split = split;
  return options;
}

int B(const nlohmann::json& doc, int byte) { return IdOf(doc, ByteToken(byte)); }

TEST(SentencePieceBpeTest, LlamaLayoutEncodesWordsWithMetaspace) {
  const nlohmann::json doc = HelloDocument();
  auto t = Load(doc);
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->kind(), "bpe");
  EXPECT_EQ(t->eos_id(), 2);
  EXPECT_EQ(t->vocab_size(), 281);
  // Prepend + Replace make "▁hello▁world", one word (no pre-tokenizer) that merges to two.
  EXPECT_THAT(Encode(*t, "hello world"),
              ElementsAre(IdOf(doc, kM + "hello"), IdOf(doc, kM + "world")));
  // A leading space becomes a second "▁"; the ("▁", "▁") merge is stale by the time its rank
  // comes, because "▁h" took the second one.
  EXPECT_THAT(Encode(*t, " hello"), ElementsAre(IdOf(doc, kM), IdOf(doc, kM + "hello")));
  EXPECT_THAT(Encode(*t, "  "), ElementsAre(IdOf(doc, kM + kM), IdOf(doc, kM)));
  EXPECT_THAT(Encode(*t, "hello "), ElementsAre(IdOf(doc, kM + "hello"), IdOf(doc, kM)));
  EXPECT_THAT(Encode(*t, ""), IsEmpty());
  // BOS comes only with add_special_tokens, also for empty text.
  EXPECT_THAT(Encode(*t, "", true), ElementsAre(1));
  EXPECT_THAT(Encode(*t, "hello", true), ElementsAre(1, IdOf(doc, kM + "hello")));
}

TEST(SentencePieceBpeTest, SpecialTokensInTextAndPrependPerPiece) {
  const nlohmann::json doc = HelloDocument();
  auto t = Load(doc);
  ASSERT_NE(t, nullptr);
  // Special tokens are matched in the text; the normalizer runs on each piece between them, so
  // Prepend puts a "▁" before each (the "legacy" behaviour of Llama-2's files).
  EXPECT_THAT(Encode(*t, "<s>hello</s>world"),
              ElementsAre(1, IdOf(doc, kM + "hello"), 2, IdOf(doc, kM + "world")));
  EXPECT_THAT(Encode(*t, "<s>", true), ElementsAre(1, 1));
  EXPECT_THAT(Encode(*t, "<unk>"), ElementsAre(0));
  // A byte token's spelling in the text is text, not the byte.
  const std::vector<int32_t> ids = Encode(*t, "<0x41>");
  EXPECT_EQ(ids.size(), 7u);  // "▁" and each of < 0 x 4 1 > through its byte token
  EXPECT_EQ(Decode(*t, ids), "<0x41>");
}

TEST(SentencePieceBpeTest, CharactersWithoutATokenFallBackToTheirBytes) {
  const nlohmann::json doc = HelloDocument();
  auto t = Load(doc);
  ASSERT_NE(t, nullptr);
  // é is C3 A9, the newline 0A; "▁h" still merges.
  EXPECT_THAT(Encode(*t, "h\xc3\xa9\n"),
              ElementsAre(IdOf(doc, kM + "h"), B(doc, 0xc3), B(doc, 0xa9), B(doc, 0x0a)));
  EXPECT_EQ(Decode(*t, Encode(*t, "h\xc3\xa9\n")), "h\xc3\xa9\n");
  // A 4-byte character, and CJK.
  EXPECT_THAT(Encode(*t, "\xf0\x9f\x98\x80"),
              ElementsAre(IdOf(doc, kM), B(doc, 0xf0), B(doc, 0x9f), B(doc, 0x98), B(doc, 0x80)));
  EXPECT_EQ(Decode(*t, Encode(*t, "a \xe4\xb8\x96 b")), "a \xe4\xb8\x96 b");
}

TEST(SentencePieceBpeTest, UnknownCharactersWithoutByteFallback) {
  SpmOptions options;
  options.byte_fallback = false;
  const nlohmann::json doc = HelloDocument(options);
  auto fused = Load(doc);
  ASSERT_NE(fused, nullptr);
  // x, é and é have no token: one <unk> for the run with fuse_unk ...
  EXPECT_THAT(Encode(*fused, "x\xc3\xa9\xc3\xa9h"), ElementsAre(IdOf(doc, kM), 0, IdOf(doc, "h")));
  options.fuse_unk = false;
  auto unfused = Load(HelloDocument(options));
  ASSERT_NE(unfused, nullptr);
  // ... and one each without.
  EXPECT_THAT(Encode(*unfused, "x\xc3\xa9\xc3\xa9h"),
              ElementsAre(IdOf(doc, kM), 0, 0, 0, IdOf(doc, "h")));
  // Without byte_fallback the decoder still turns byte tokens into bytes.
  EXPECT_EQ(Decode(*fused, {B(doc, 0xc3), B(doc, 0xa9)}), "\xc3\xa9");
  EXPECT_EQ(Decode(*fused, {0, IdOf(doc, kM + "hello")}), "<unk> hello");
}

TEST(SentencePieceBpeTest, AnUnknownBeforeByteFallbackComesAfterItsBytes) {
  // No <0xF0>: an emoji cannot fall back, so it becomes <unk>; é after it falls back, and the
  // reference adds its bytes before the <unk> still pending (model.rs merge_word).
  SpmOptions options;
  options.missing_bytes = {0xf0};
  const nlohmann::json doc = HelloDocument(options);
  auto t = Load(doc);
  ASSERT_NE(t, nullptr);
  EXPECT_THAT(Encode(*t, "\xf0\x9f\x98\x80\xc3\xa9"),
              ElementsAre(IdOf(doc, kM), B(doc, 0xc3), B(doc, 0xa9), 0));
  EXPECT_THAT(Encode(*t, "\xf0\x9f\x98\x80h"), ElementsAre(IdOf(doc, kM), 0, IdOf(doc, "h")));
}

TEST(SentencePieceBpeTest, IgnoreMergesTakesAWholeWordFromTheVocabulary) {
  SpmOptions options;
  nlohmann::json doc = HelloDocument(options);
  doc["model"]["vocab"][kM + "ab"] = doc["model"]["vocab"].size();  // no merge makes it
  auto merging = Load(doc);
  ASSERT_NE(merging, nullptr);
  EXPECT_THAT(Encode(*merging, "ab"), ElementsAre(IdOf(doc, kM), IdOf(doc, "a"), IdOf(doc, "b")));
  doc["model"]["ignore_merges"] = true;
  auto ignoring = Load(doc);
  ASSERT_NE(ignoring, nullptr);
  EXPECT_THAT(Encode(*ignoring, "ab"), ElementsAre(IdOf(doc, kM + "ab")));
  // The whole piece is the word here (no pre-tokenizer): "▁ab▁ab" is not in the vocabulary.
  EXPECT_THAT(Encode(*ignoring, "ab ab"),
              ElementsAre(IdOf(doc, kM), IdOf(doc, "a"), IdOf(doc, "b"), IdOf(doc, kM),
                          IdOf(doc, "a"), IdOf(doc, "b")));
}

TEST(SentencePieceBpeTest, LongTextsWithoutAPreTokenizerAreCutExactly) {
  const nlohmann::json doc = HelloDocument();
  auto t = Load(doc);
  ASSERT_NE(t, nullptr);
  // Longer than a cached word: cut where no merge joins the characters (before "▁", after a
  // letter), never inside "▁▁" or a word.
  std::string text;
  std::vector<int32_t> want;
  for (int i = 0; i < 20; ++i) {
    text += i % 3 == 0 ? "hello  world " : "hello world ";
    want.push_back(IdOf(doc, kM + "hello"));
    if (i % 3 == 0) want.push_back(IdOf(doc, kM));
    want.push_back(IdOf(doc, kM + "world"));
  }
  want.push_back(IdOf(doc, kM));
  EXPECT_EQ(Encode(*t, text), want);
  EXPECT_EQ(Decode(*t, want), text);
}

TEST(SentencePieceBpeTest, MetaspacePrependSchemes) {
  const nlohmann::json doc = HelloDocument(MetaspaceOptions("first", false));
  auto first = Load(doc);
  ASSERT_NE(first, nullptr);
  EXPECT_THAT(Encode(*first, "hello world"),
              ElementsAre(IdOf(doc, kM + "hello"), IdOf(doc, kM + "world")));
  // "first": only a piece that starts the text gets the "▁"; after <s> it does not, so "hello"
  // merges without it (only "ll" applies).
  EXPECT_THAT(Encode(*first, "<s>hello"),
              ElementsAre(1, IdOf(doc, "h"), IdOf(doc, "e"), IdOf(doc, "ll"), IdOf(doc, "o")));
  // A leading space already is the "▁": nothing is prepended.
  EXPECT_THAT(Encode(*first, " hello"), ElementsAre(IdOf(doc, kM + "hello")));

  auto always = Load(HelloDocument(MetaspaceOptions("always", true)));
  ASSERT_NE(always, nullptr);
  EXPECT_THAT(Encode(*always, "<s>hello"), ElementsAre(1, IdOf(doc, kM + "hello")));
  // split: each "▁" starts a word.
  EXPECT_THAT(Encode(*always, "hello  world"),
              ElementsAre(IdOf(doc, kM + "hello"), IdOf(doc, kM), IdOf(doc, kM + "world")));

  auto never = Load(HelloDocument(MetaspaceOptions("never", true)));
  ASSERT_NE(never, nullptr);
  EXPECT_THAT(Encode(*never, "hello world"),
              ElementsAre(IdOf(doc, "h"), IdOf(doc, "e"), IdOf(doc, "ll"), IdOf(doc, "o"),
                          IdOf(doc, kM + "world")));
  // The Metaspace decoder with "never" has no first-token rule.
  EXPECT_EQ(Decode(*never, {IdOf(doc, kM + "hello")}), " hello");
}

TEST(SentencePieceBpeTest, LegacyAddPrefixSpace) {
  nlohmann::json doc = HelloDocument(MetaspaceOptions("always", true));
  doc["pre_tokenizer"].erase("prepend_scheme");
  doc["pre_tokenizer"]["add_prefix_space"] = true;
  auto t = Load(doc);
  ASSERT_NE(t, nullptr);
  EXPECT_THAT(Encode(*t, "hello"), ElementsAre(IdOf(doc, kM + "hello")));
  // add_prefix_space false needs prepend_scheme "never", as the reference requires.
  doc["pre_tokenizer"]["add_prefix_space"] = false;
  EXPECT_FALSE(tokenizer::ParseTokenizerJson(doc.dump(), "t.json").ok());
  doc["pre_tokenizer"]["prepend_scheme"] = "never";
  auto never = Load(doc);
  ASSERT_NE(never, nullptr);
  EXPECT_THAT(Encode(*never, "hello"),
              ElementsAre(IdOf(doc, "h"), IdOf(doc, "e"), IdOf(doc, "ll"), IdOf(doc, "o")));
}

TEST(SentencePieceBpeTest, StripRemovesOnlyTheTextsFirstSpace) {
  const nlohmann::json doc = HelloDocument();
  auto t = Load(doc);
  ASSERT_NE(t, nullptr);
  const int hello = IdOf(doc, kM + "hello");
  const int world = IdOf(doc, kM + "world");
  const int meta = IdOf(doc, kM);
  EXPECT_EQ(Decode(*t, {hello, world}), "hello world");
  EXPECT_EQ(Decode(*t, {meta, meta, hello}), "  hello");
  EXPECT_EQ(Decode(*t, {IdOf(doc, kM + kM), hello}), "  hello");
  EXPECT_EQ(Decode(*t, {1, hello}), "<s> hello");
  EXPECT_EQ(Decode(*t, {1, hello}, /*skip=*/true), "hello");
  EXPECT_EQ(Decode(*t, {hello, 2, world}), "hello</s> world");
  EXPECT_EQ(Decode(*t, {}), "");
  // DecodeBytes has no start-of-text rule: each token's text in the middle of a text.
  EXPECT_EQ(*t->DecodeBytes({hello, world}), " hello world");
  EXPECT_EQ(t->IdToToken(hello), kM + "hello");
  EXPECT_EQ(t->TokenToId(kM + "world"), world);
}

TEST(SentencePieceBpeTest, MetaspaceDecoderDropsEveryMetaspaceOfTheFirstToken) {
  const nlohmann::json doc = HelloDocument(MetaspaceOptions("first", false));
  auto t = Load(doc);
  ASSERT_NE(t, nullptr);
  const int hello = IdOf(doc, kM + "hello");
  EXPECT_EQ(Decode(*t, {hello, IdOf(doc, kM + "world")}), "hello world");
  // Unlike Strip, which removes one space, the whole "▁▁" of a first token goes.
  EXPECT_EQ(Decode(*t, {IdOf(doc, kM + kM), hello}), " hello");
  EXPECT_EQ(Decode(*t, {1, hello}), "<s> hello");
  EXPECT_EQ(Decode(*t, {1, hello}, /*skip=*/true), "hello");
  // No ByteFallback in this decoder: byte tokens stay as they are spelled.
  EXPECT_EQ(Decode(*t, {hello, B(doc, 0x41)}), "hello<0x41>");
}

TEST(SentencePieceBpeTest, ByteFallbackDecodesRunsAsHuggingFaceDoes) {
  const nlohmann::json doc = HelloDocument();
  auto t = Load(doc);
  ASSERT_NE(t, nullptr);
  const int hello = IdOf(doc, kM + "hello");
  const std::string fffd = kReplacement;
  EXPECT_EQ(Decode(*t, {B(doc, 0xe4)}), fffd);
  // An invalid run is one U+FFFD per token (not per ill-formed sequence, as bytes would give).
  EXPECT_EQ(Decode(*t, {B(doc, 0xe4), B(doc, 0xb8)}), fffd + fffd);
  EXPECT_EQ(Decode(*t, {B(doc, 0xe4), B(doc, 0xb8), B(doc, 0x96)}), "\xe4\xb8\x96");
  EXPECT_EQ(Decode(*t, {B(doc, 0x41), B(doc, 0xff)}), fffd + fffd);
  EXPECT_EQ(Decode(*t, {B(doc, 0xe4), B(doc, 0xb8), hello}), fffd + fffd + " hello");
  // Skipped special tokens are gone before the decoders run: the run continues across them.
  const std::vector<int32_t> across = {B(doc, 0xe4), 2, B(doc, 0xb8), B(doc, 0x96)};
  EXPECT_EQ(Decode(*t, across, /*skip=*/true), "\xe4\xb8\x96");
  EXPECT_EQ(Decode(*t, across), fffd + "</s>" + fffd + fffd);
  // A space byte first is stripped like a "▁".
  EXPECT_EQ(Decode(*t, {B(doc, 0x20), hello}), " hello");
  EXPECT_EQ(Decode(*t, {B(doc, 0x20)}), "");
  // DecodeBytes gives the bytes themselves.
  EXPECT_EQ(*t->DecodeBytes({B(doc, 0xe4), B(doc, 0xb8)}), "\xe4\xb8");
  // An id outside the vocabulary is an error, as for byte-level files.
  EXPECT_FALSE(t->Decode({hello, 9999}).ok());
}

TEST(SentencePieceBpeTest, ByteTokenSpellingsAsTheReferenceReadsThem) {
  // Only "<0x" + two hex digits (either case) + ">" is a byte token; Rust's from_str_radix
  // also takes "+F".
  nlohmann::json doc = HelloDocument();
  for (const char* token : {"<0xe4>", "<0x+A>", "<0x4G>", "<0x041>"}) {
    doc["model"]["vocab"][token] = doc["model"]["vocab"].size();
  }
  auto t = Load(doc);
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(*t->DecodeBytes({IdOf(doc, "<0xe4>")}), "\xe4");
  EXPECT_EQ(*t->DecodeBytes({IdOf(doc, "<0x+A>")}), "\n");
  EXPECT_EQ(Decode(*t, {IdOf(doc, "<0x4G>"), IdOf(doc, "<0x041>")}), "<0x4G><0x041>");
}

// Streams `ids` after `context` and returns the concatenated pieces, checking each is valid.
std::string Stream(const tokenizer::Tokenizer& t, const std::vector<int32_t>& context,
                   const std::vector<int32_t>& ids, bool skip = false) {
  tokenizer::IncrementalDecoder decoder(&t, skip);
  EXPECT_TRUE(decoder.AddContext(context).ok());
  std::string out;
  for (int32_t id : ids) {
    absl::StatusOr<std::string> piece = decoder.Add(id);
    EXPECT_TRUE(piece.ok()) << piece.status();
    if (!piece.ok()) continue;
    EXPECT_TRUE(tokenizer::IsValidUtf8(*piece));
    out += *piece;
  }
  return out + decoder.Flush();
}

TEST(SentencePieceBpeTest, StreamingKeepsTheLeadingSpaceAfterAPrompt) {
  const nlohmann::json doc = HelloDocument();
  auto t = Load(doc);
  ASSERT_NE(t, nullptr);
  const int hello = IdOf(doc, kM + "hello");
  const int world = IdOf(doc, kM + "world");
  {
    // Without context the stream is the whole text: its first space goes.
    tokenizer::IncrementalDecoder decoder(t.get());
    EXPECT_TRUE(decoder.at_start());
    EXPECT_EQ(*decoder.Add(hello), "hello");
    EXPECT_FALSE(decoder.at_start());
    EXPECT_EQ(*decoder.Add(world), " world");
  }
  // After a prompt, the first generated word keeps its space (as vLLM and TGI decode).
  EXPECT_EQ(Stream(*t, {1, hello}, {world}, /*skip=*/true), " world");
  EXPECT_EQ(Stream(*t, {1, hello}, {world}), " world");
  // A prompt of special tokens only, skipped, leaves the stream at the start.
  EXPECT_EQ(Stream(*t, {1}, {hello, world}, /*skip=*/true), "hello world");
  EXPECT_EQ(Stream(*t, {1}, {hello}), " hello");
  {
    tokenizer::IncrementalDecoder decoder(t.get(), /*skip_special_tokens=*/true);
    decoder.AssumeTextBefore();
    EXPECT_EQ(*decoder.Add(hello), " hello");
  }
  // A prompt that ends in spaces has used the Strip already.
  EXPECT_EQ(Stream(*t, {IdOf(doc, kM)}, {hello}), " hello");
  EXPECT_FALSE(tokenizer::IncrementalDecoder(t.get()).AddContext({hello, 99999}).ok());
}

TEST(SentencePieceBpeTest, StreamingHoldsRunsOfByteTokens) {
  const nlohmann::json doc = HelloDocument();
  auto t = Load(doc);
  ASSERT_NE(t, nullptr);
  const int hello = IdOf(doc, kM + "hello");
  {
    tokenizer::IncrementalDecoder decoder(t.get());
    EXPECT_EQ(*decoder.Add(hello), "hello");
    // A complete character is still held: a later byte token could make the run invalid.
    EXPECT_EQ(*decoder.Add(B(doc, 0xe4)), "");
    EXPECT_EQ(*decoder.Add(B(doc, 0xb8)), "");
    EXPECT_EQ(*decoder.Add(B(doc, 0x96)), "");
    EXPECT_EQ(decoder.pending_bytes(), 3u);
    EXPECT_EQ(*decoder.Add(hello), "\xe4\xb8\x96 hello");
    EXPECT_EQ(*decoder.Add(B(doc, 0xe4)), "");
    EXPECT_EQ(decoder.Flush(), kReplacement);
    EXPECT_EQ(decoder.Flush(), "");
  }
  // The context's last character completed by the stream comes out whole.
  EXPECT_EQ(Stream(*t, {hello, B(doc, 0xe4)}, {B(doc, 0xb8), B(doc, 0x96), hello}),
            "\xe4\xb8\x96 hello");
  // What only the context holds is not the stream's to flush.
  EXPECT_EQ(Stream(*t, {hello, B(doc, 0xe4)}, {}), "");
  EXPECT_EQ(Stream(*t, {hello, B(doc, 0xe4)}, {2}, /*skip=*/true), "");
}

// Every split of random id sequences: the stream after the context gives what Decode of the
// whole adds to Decode of the context, and with no context exactly Decode of the whole.
void CheckStreamingMatchesDecode(const nlohmann::json& doc, uint32_t seed) {
  auto t = Load(doc);
  ASSERT_NE(t, nullptr);
  std::vector<int32_t> pool = {0, 1, 2};
  for (int b : {0x20, 0x41, 0x0a, 0xc3, 0xa9, 0xe4, 0xb8, 0x96, 0xf0, 0x9f, 0x98, 0x80, 0xff}) {
    pool.push_back(B(doc, b));
  }
  for (const std::string& token : {kM, kM + "h", kM + "he", kM + "hello", kM + "w", kM + "wor",
                                   kM + "world", kM + kM, std::string("a"), std::string("h"),
                                   std::string("e"), std::string("ll"), std::string("or")}) {
    pool.push_back(IdOf(doc, token));
  }
  std::mt19937 rng(seed);
  for (int round = 0; round < 300; ++round) {
    std::vector<int32_t> ids(std::uniform_int_distribution<int>(0, 12)(rng));
    for (int32_t& id : ids)
      id = pool[std::uniform_int_distribution<size_t>(0, pool.size() - 1)(rng)];
    for (bool skip : {false, true}) {
      const std::string whole = Decode(*t, ids, skip);
      ASSERT_EQ(Stream(*t, {}, ids, skip), whole);
      for (size_t p = 1; p <= ids.size(); ++p) {
        const std::vector<int32_t> context(ids.begin(), ids.begin() + p);
        const std::vector<int32_t> rest(ids.begin() + p, ids.end());
        const std::string before = Decode(*t, context, skip);
        // The stream leaves out of the context's text a run of byte tokens still open at its
        // end (skipped tokens do not end a run): that text is the stream's once completed.
        size_t last = context.size();
        while (last > 0 && skip && t->IsSpecial(context[last - 1])) --last;
        const bool open_run = last > 0 && t->IdToToken(context[last - 1]).rfind("<0x", 0) == 0;
        if (open_run || whole.compare(0, before.size(), before) != 0) continue;
        ASSERT_EQ(Stream(*t, context, rest, skip), whole.substr(before.size()))
            << "round " << round << " split " << p;
      }
    }
  }
}

TEST(SentencePieceBpeTest, StreamingMatchesDecodeLlamaLayout) {
  CheckStreamingMatchesDecode(HelloDocument(), 1);
}

TEST(SentencePieceBpeTest, StreamingMatchesDecodeMetaspaceLayout) {
  CheckStreamingMatchesDecode(HelloDocument(MetaspaceOptions("first", false)), 2);
}

TEST(SentencePieceBpeTest, DecoderChainsBeyondLlamas) {
  nlohmann::json doc = HelloDocument();
  // Metaspace after ByteFallback applies to each element, a run's text included; Strip(2)
  // after Fuse takes up to two spaces from the text's start.
  doc["decoder"] = {{"type", "Sequence"},
                    {"decoders",
                     {{{"type", "ByteFallback"}},
                      {{"type", "Metaspace"}, {"replacement", kM}, {"prepend_scheme", "always"}},
                      {{"type", "Fuse"}},
                      {{"type", "Strip"}, {"content", " "}, {"start", 2}, {"stop", 0}}}}};
  auto t = Load(doc);
  ASSERT_NE(t, nullptr);
  const int hello = IdOf(doc, kM + "hello");
  // The first element's "▁" vanishes (Metaspace), the next's becomes a space.
  EXPECT_EQ(Decode(*t, {hello, hello}), "hello hello");
  // A run whose bytes spell "▁" is an element like a token: first, it vanishes.
  EXPECT_EQ(Decode(*t, {B(doc, 0xe2), B(doc, 0x96), B(doc, 0x81), hello}), "hello");
  EXPECT_EQ(Decode(*t, {B(doc, 0x20), B(doc, 0x20), B(doc, 0x20), hello}), "  hello");
  EXPECT_EQ(Stream(*t, {}, {B(doc, 0x20), B(doc, 0x20), B(doc, 0x20), hello}), "  hello");
  // Replace that makes several characters, per token, before ByteFallback.
  doc["decoder"] = {{"type", "Sequence"},
                    {"decoders",
                     {{{"type", "Replace"}, {"pattern", {{"String", kM}}}, {"content", "__"}},
                      {{"type", "ByteFallback"}},
                      {{"type", "Fuse"}}}}};
  auto replaced = Load(doc);
  ASSERT_NE(replaced, nullptr);
  EXPECT_EQ(Decode(*replaced, {hello, IdOf(doc, kM + kM)}), "__hello____");
}

TEST(SentencePieceBpeTest, NormalizerReplaceAndPrependWithUnicodeForms) {
  nlohmann::json doc = HelloDocument();
  // NFKC first: the ligature "ﬁ" (U+FB01) becomes "fi"; a literal Regex replaces "..."; then
  // Llama's Prepend and Replace.
  doc["normalizer"] = {
      {"type", "Sequence"},
      {"normalizers",
       {{{"type", "NFKC"}},
        {{"type", "Replace"}, {"pattern", {{"Regex", "\\.\\.\\."}}}, {"content", "h"}},
        {{"type", "Prepend"}, {"prepend", kM}},
        {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", kM}}}}};
  auto t = Load(doc);
  ASSERT_NE(t, nullptr);
  EXPECT_THAT(Encode(*t, "...ello"), ElementsAre(IdOf(doc, kM + "hello")));
  EXPECT_THAT(Encode(*t, "\xef\xac\x81"),  // "fi": no tokens, two bytes each way
              ElementsAre(IdOf(doc, kM), B(doc, 'f'), B(doc, 'i')));
  // A normalized added token is matched in its normalized form: with Prepend, "▁ab".
  nlohmann::json with_added = HelloDocument();
  with_added["added_tokens"].push_back({{"id", 281},
                                        {"content", "ab"},
                                        {"single_word", false},
                                        {"lstrip", false},
                                        {"rstrip", false},
                                        {"normalized", true},
                                        {"special", false}});
  auto added = Load(with_added);
  ASSERT_NE(added, nullptr);
  EXPECT_THAT(Encode(*added, "ab"), ElementsAre(281));
  EXPECT_THAT(Encode(*added, "xab"),
              ElementsAre(IdOf(doc, kM), B(doc, 'x'), IdOf(doc, "a"), IdOf(doc, "b")));
  EXPECT_EQ(Decode(*added, {IdOf(doc, kM + "hello"), 281}), "hello ab");
}

TEST(SentencePieceBpeTest, ConcurrentEncodeAndDecode) {
  const nlohmann::json doc = HelloDocument();
  auto t = Load(doc);
  ASSERT_NE(t, nullptr);
  std::string text;
  for (int i = 0; i < 50; ++i) text += "hello world \xe4\xb8\x96 ";
  const std::vector<int32_t> want = Encode(*t, text);
  std::vector<std::thread> threads;
  for (int k = 0; k < 4; ++k) {
    threads.emplace_back([&] {
      for (int i = 0; i < 50; ++i) {
        EXPECT_EQ(*t->Encode(text), want);
        EXPECT_EQ(*t->Decode(want), text);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
}

}  // namespace
}  // namespace mamba
