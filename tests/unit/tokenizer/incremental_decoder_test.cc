#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "engine/tokenizer/tokenizer.h"
#include "gtest/gtest.h"

namespace mamba {
namespace {

// A tokenizer whose ids stand for arbitrary byte chunks, to split characters anywhere.
class ChunkTokenizer final : public tokenizer::Tokenizer {
 public:
  explicit ChunkTokenizer(std::vector<std::string> chunks) : chunks_(std::move(chunks)) {}
  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view, bool) const override {
    return absl::UnimplementedError("decode only");
  }
  absl::StatusOr<std::string> DecodeBytes(absl::Span<const int32_t> ids,
                                          bool skip_special_tokens) const override {
    std::string out;
    for (int32_t id : ids) {
      if (id < 0 || id >= vocab_size()) return absl::InvalidArgumentError("bad id");
      if (skip_special_tokens && IsSpecial(id)) continue;
      out += chunks_[id];
    }
    return out;
  }
  int32_t vocab_size() const override { return static_cast<int32_t>(chunks_.size()); }
  std::optional<int32_t> TokenToId(std::string_view) const override { return std::nullopt; }
  std::string IdToToken(int32_t) const override { return ""; }
  std::optional<int32_t> eos_id() const override { return std::nullopt; }
  bool IsSpecial(int32_t id) const override { return id == 0; }
  std::string kind() const override { return "chunks"; }

 private:
  std::vector<std::string> chunks_;
};

// Cuts `text` into random pieces (many inside multi-byte characters) and returns a tokenizer
// with one id per piece (id 0 is a special "<s>"), and the ids in order.
std::pair<std::unique_ptr<ChunkTokenizer>, std::vector<int32_t>> RandomChunks(
    const std::string& text, std::mt19937* rng) {
  std::vector<std::string> chunks = {"<s>"};
  std::vector<int32_t> ids;
  std::uniform_int_distribution<size_t> len(1, 5);
  for (size_t pos = 0; pos < text.size();) {
    const size_t n = std::min(len(*rng), text.size() - pos);
    chunks.push_back(text.substr(pos, n));
    ids.push_back(static_cast<int32_t>(chunks.size() - 1));
    pos += n;
  }
  return {std::make_unique<ChunkTokenizer>(std::move(chunks)), std::move(ids)};
}

TEST(IncrementalDecoderTest, RandomSplitsOfMultiByteCharacters) {
  const std::string text =
      "h\xc3\xa9llo \xe4\xb8\x96\xe7\x95\x8c \xf0\x9f\x8d\x95\xf0\x9f\x91\xa8\xe2\x80\x8d"
      "\xf0\x9f\x91\xa9 e\xcc\x81 \xf4\x8f\xbf\xbf end";
  std::mt19937 rng(3);
  for (int round = 0; round < 500; ++round) {
    auto [tokenizer, ids] = RandomChunks(text, &rng);
    tokenizer::IncrementalDecoder decoder(tokenizer.get());
    std::string out;
    for (int32_t id : ids) {
      absl::StatusOr<std::string> piece = decoder.Add(id);
      ASSERT_TRUE(piece.ok());
      // Every piece is whole characters, and at most 3 bytes wait for the rest of one.
      ASSERT_TRUE(tokenizer::IsValidUtf8(*piece));
      ASSERT_LE(decoder.pending_bytes(), 3u);
      out += *piece;
    }
    EXPECT_EQ(decoder.pending_bytes(), 0u);
    out += decoder.Flush();
    ASSERT_EQ(out, text);
    ASSERT_EQ(*tokenizer->Decode(ids), text);
  }
}

TEST(IncrementalDecoderTest, FlushReplacesADanglingPartialCharacter) {
  ChunkTokenizer tokenizer({"<s>", "a", "\xf0\x9f", "\x8d", "\x95", "\xe4"});
  tokenizer::IncrementalDecoder decoder(&tokenizer);
  EXPECT_EQ(*decoder.Add(1), "a");
  EXPECT_EQ(*decoder.Add(2), "");
  EXPECT_EQ(*decoder.Add(3), "");
  EXPECT_EQ(decoder.pending_bytes(), 3u);
  EXPECT_EQ(decoder.Flush(), "\xef\xbf\xbd");
  EXPECT_EQ(decoder.pending_bytes(), 0u);
  EXPECT_EQ(decoder.Flush(), "");
  // A completed character comes out whole; a byte that cannot continue it ends it as U+FFFD.
  EXPECT_EQ(*decoder.Add(2), "");
  EXPECT_EQ(*decoder.Add(3), "");
  EXPECT_EQ(*decoder.Add(4), "\xf0\x9f\x8d\x95");
  EXPECT_EQ(*decoder.Add(5), "");
  EXPECT_EQ(*decoder.Add(1),
            "\xef\xbf\xbd"
            "a");
  // Invalid bytes that can never complete are not held back.
  ChunkTokenizer bad({"<s>", "\xff", "\x80"});
  tokenizer::IncrementalDecoder bad_decoder(&bad);
  EXPECT_EQ(*bad_decoder.Add(1), "\xef\xbf\xbd");
  EXPECT_EQ(*bad_decoder.Add(2), "\xef\xbf\xbd");
}

TEST(IncrementalDecoderTest, SkipsSpecialTokensAndReportsBadIds) {
  ChunkTokenizer tokenizer({"<s>", "x"});
  tokenizer::IncrementalDecoder keep(&tokenizer);
  EXPECT_EQ(*keep.Add(0), "<s>");
  tokenizer::IncrementalDecoder skip(&tokenizer, /*skip_special_tokens=*/true);
  EXPECT_EQ(*skip.Add(0), "");
  EXPECT_EQ(*skip.Add(1), "x");
  EXPECT_FALSE(skip.Add(7).ok());
}

TEST(IncrementalDecoderTest, ContextCompletesACharacterAndIsNotFlushed) {
  ChunkTokenizer tokenizer({"<s>", "a", "\xf0\x9f", "\x8d", "\x95"});
  {
    // The context ends inside a character; the stream completes it and emits it whole.
    tokenizer::IncrementalDecoder decoder(&tokenizer);
    ASSERT_TRUE(decoder.AddContext({1, 2}).ok());
    EXPECT_EQ(decoder.pending_bytes(), 2u);
    EXPECT_EQ(*decoder.Add(3), "");
    EXPECT_EQ(*decoder.Add(4), "\xf0\x9f\x8d\x95");
    EXPECT_EQ(decoder.Flush(), "");
  }
  {
    // Bytes only the context holds are the context's: Flush drops them.
    tokenizer::IncrementalDecoder decoder(&tokenizer, /*skip_special_tokens=*/true);
    ASSERT_TRUE(decoder.AddContext({1, 2}).ok());
    EXPECT_EQ(*decoder.Add(0), "");  // skipped: nothing of the stream's
    EXPECT_EQ(decoder.Flush(), "");
    EXPECT_EQ(decoder.pending_bytes(), 0u);
  }
  {
    // Once the stream added to them, they are the stream's.
    tokenizer::IncrementalDecoder decoder(&tokenizer);
    ASSERT_TRUE(decoder.AddContext({2}).ok());
    EXPECT_EQ(*decoder.Add(3), "");
    EXPECT_EQ(decoder.Flush(), "\xef\xbf\xbd");
  }
  // An id outside the vocabulary fails the context.
  tokenizer::IncrementalDecoder decoder(&tokenizer);
  EXPECT_FALSE(decoder.AddContext({1, 9}).ok());
}

TEST(IncrementalDecoderTest, AtStartUntilATokenThatIsNotSkipped) {
  ChunkTokenizer tokenizer({"<s>", "a"});
  tokenizer::IncrementalDecoder skip(&tokenizer, /*skip_special_tokens=*/true);
  ASSERT_TRUE(skip.AddContext({0, 0}).ok());
  EXPECT_TRUE(skip.at_start());
  ASSERT_TRUE(skip.AddContext({1}).ok());
  EXPECT_FALSE(skip.at_start());
  tokenizer::IncrementalDecoder keep(&tokenizer);
  ASSERT_TRUE(keep.AddContext({0}).ok());
  EXPECT_FALSE(keep.at_start());
  tokenizer::IncrementalDecoder assumed(&tokenizer);
  assumed.AssumeTextBefore();
  EXPECT_FALSE(assumed.at_start());
  EXPECT_EQ(*assumed.Add(1), "a");  // byte-level text has no start-of-text rule
}

TEST(IncrementalDecoderTest, ByteTokenizerStream) {
  auto t = tokenizer::MakeByteTokenizer({"<|endoftext|>"});
  const std::string text = "\xe4\xb8\x96 \xf0\x9f\x8d\x95<|endoftext|>!";
  tokenizer::IncrementalDecoder decoder(t.get());
  std::vector<std::string> pieces;
  const std::vector<int32_t> ids = *t->Encode(text);
  for (int32_t id : ids) pieces.push_back(*decoder.Add(id));
  EXPECT_EQ(pieces.front(), "");  // first byte of a 3-byte character
  std::string joined;
  for (const auto& p : pieces) joined += p;
  EXPECT_EQ(joined + decoder.Flush(), text);
}

}  // namespace
}  // namespace mamba
