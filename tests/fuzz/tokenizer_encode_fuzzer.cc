// Fuzzes encoding and decoding with fixed, real tokenizers (the tests/data/tokenizer fixtures,
// SentencePiece-converted layouts built here, and the byte tokenizer) on fuzzed text and fuzzed
// ids.
//
// Input: byte 0 picks the tokenizer (low bits) and the flags (add_special_tokens, skip_special);
// the rest is the text, and also, read as little-endian int32s, a list of ids to decode.
//
// Checks: invalid UTF-8 is refused with INVALID_ARGUMENT and valid UTF-8 is encoded; encoded ids
// are in the vocabulary; text comes back unchanged where the tokenizer's pipeline is lossless
// (no normalizer, or ASCII under NFC, no added prefix space or stripping; for the SentencePiece
// layouts, text without "\u2581" and without the spaces their prepending adds); DecodeBytes
// refuses exactly the ids outside [0, vocab_size); Decode gives valid UTF-8; the pieces an
// IncrementalDecoder emits are valid UTF-8 that concatenate to what Decode gives at once, also
// after a context (what Decode of all adds to Decode of the context, when that is a prefix);
// and for byte-level tokenizers Decode is DecodeBytes made valid.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/tokenizer/tokenizer.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using mamba::tokenizer::Tokenizer;

// Which texts must survive Encode -> DecodeBytes (SentencePiece layouts: Decode) unchanged.
enum class RoundTrip {
  kNone,
  kAscii,
  kAll,
  kSpmLlama,  // Prepend puts a "▁" before every piece: none without "▁" and special tokens
  kSpmFirst,  // Metaspace "first" (and a decoder with ByteFallback): none without "▁" and a
              // leading space
};

struct Fixture {
  std::string name;  // folder under tests/data/tokenizer, "" for the byte tokenizer
  RoundTrip round_trip;
  std::unique_ptr<mamba::tokenizer::Tokenizer> tokenizer;
  bool byte_level = true;  // Decode == ToValidUtf8(DecodeBytes), nothing held but a character
};

constexpr std::string_view kMeta = "\xe2\x96\x81";  // U+2581

std::string ByteToken(int b) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  return std::string{'<', '0', 'x', kHex[b >> 4], kHex[b & 15], '>'};
}

// A SentencePiece-converted document: <unk> <s> </s>, the byte tokens (less 0xF0 when
// `missing_f0`, so that emoji reach <unk>), letters, and merges that build "▁" + each of a few
// common words left to right; `components` are the normalizer, pre-tokenizer, decoder and
// post-processor members, spelled out.
std::string SpmDocument(const std::string& components, bool missing_f0, const std::string& flags) {
  std::vector<std::string> vocab = {"<unk>", "<s>", "</s>"};
  for (int b = 0; b < 256; ++b) {
    if (!(missing_f0 && b == 0xf0)) vocab.push_back(ByteToken(b));
  }
  vocab.push_back(std::string(kMeta));
  for (char c = 'a'; c <= 'z'; ++c) vocab.push_back(std::string(1, c));
  for (const char* c : {"T", "I", ".", ",", "\xc3\xa9", "\xe4\xb8\x96"}) vocab.push_back(c);
  std::vector<std::pair<std::string, std::string>> merges = {
      {std::string(kMeta), std::string(kMeta)},
      {std::string(kMeta) + std::string(kMeta), std::string(kMeta) + std::string(kMeta)}};
  for (const char* word :
       {"the",  "of",   "and",  "to",   "in",    "is",   "that", "it",    "was",  "for",
        "on",   "are",  "with", "as",   "The",   "his",  "they", "be",    "at",   "one",
        "have", "this", "from", "or",   "had",   "by",   "hot",  "word",  "but",  "what",
        "some", "we",   "can",  "out",  "other", "were", "all",  "there", "when", "up",
        "use",  "your", "how",  "said", "an",    "each", "she"}) {
    std::string left(kMeta);
    for (const char c : std::string(word)) {
      const std::string right(1, c);
      merges.emplace_back(left, right);
      left += right;
    }
  }
  std::string json = "{\"version\":\"1.0\",\"added_tokens\":[";
  for (int id = 0; id < 3; ++id) {
    json += std::string(id > 0 ? "," : "") + "{\"id\":" + std::to_string(id) + ",\"content\":\"" +
            vocab[id] + "\",\"special\":true,\"normalized\":false}";
  }
  json += "]," + components + ",\"model\":{\"type\":\"BPE\",\"unk_token\":\"<unk>\"," + flags +
          ",\"vocab\":{";
  std::vector<std::string> all = vocab;
  for (const auto& [left, right] : merges) all.push_back(left + right);
  std::vector<std::string> seen;
  int id = 0;
  for (const std::string& token : all) {
    if (std::find(seen.begin(), seen.end(), token) != seen.end()) continue;
    seen.push_back(token);
    json += std::string(id > 0 ? "," : "") + "\"" + token + "\":" + std::to_string(id);
    ++id;
  }
  json += "},\"merges\":[";
  std::vector<std::string> merge_seen;
  bool first = true;
  for (const auto& [left, right] : merges) {
    const std::string pair = left + " " + right;
    if (std::find(merge_seen.begin(), merge_seen.end(), pair) != merge_seen.end()) continue;
    merge_seen.push_back(pair);
    json += std::string(first ? "" : ",") + "[\"" + left + "\",\"" + right + "\"]";
    first = false;
  }
  return json + "]}}";
}

std::unique_ptr<Tokenizer> BuildSpm(const std::string& components, bool missing_f0,
                                    const std::string& flags) {
  auto tokenizer = mamba::tokenizer::ParseTokenizerJson(SpmDocument(components, missing_f0, flags),
                                                        "fuzz-spm.json");
  FUZZ_CHECK(tokenizer.ok(), "cannot build a SentencePiece tokenizer: %s",
             tokenizer.status().ToString().c_str());
  return *std::move(tokenizer);
}

constexpr const char* kBosTemplate = R"("post_processor": {"type": "TemplateProcessing",
    "single": [{"SpecialToken": {"id": "<s>"}}, {"Sequence": {"id": "A"}}],
    "special_tokens": {"<s>": {"ids": [1]}}})";

std::vector<Fixture>* LoadFixtures() {
  auto* fixtures = new std::vector<Fixture>();
  const struct {
    const char* name;
    RoundTrip round_trip;
  } table[] = {
      {"small", RoundTrip::kAscii},         // NFC, GPT-2 regex: GPT-NeoX's pipeline
      {"small_no_regex", RoundTrip::kAll},  // no normalizer at all
      {"small_split", RoundTrip::kAscii},   // NFC, Split(Isolated) + ByteLevel
      {"small_flags", RoundTrip::kNone},    // lstrip/rstrip added tokens drop spaces
      {"small_prefix_space", RoundTrip::kNone},
      {"small_pretok_mix", RoundTrip::kNone},      // adds a prefix space
      {"small_pretok_removed", RoundTrip::kNone},  // Split(Removed) drops text
      {"neox50k", RoundTrip::kAscii},
  };
  const std::string root = mamba::fuzz::TestDataDir() + "/tokenizer/";
  for (const auto& [name, round_trip] : table) {
    std::string path = root + name + "/tokenizer.json";
    auto tokenizer = mamba::tokenizer::LoadTokenizerJson(path);
    if (!tokenizer.ok()) tokenizer = mamba::tokenizer::LoadTokenizerJson(path + ".gz");
    FUZZ_CHECK(tokenizer.ok(), "cannot load fixture %s: %s", name,
               tokenizer.status().ToString().c_str());
    fixtures->push_back({name, round_trip, *std::move(tokenizer)});
  }
  fixtures->push_back({"", RoundTrip::kAll,
                       mamba::tokenizer::MakeByteTokenizer({"<|endoftext|>", "<|pad|>"}, 300)});

  // SentencePiece-converted layouts: Llama-2's, Mistral's (its decoder decodes byte tokens,
  // with no Fuse: a Metaspace decoder alone would leave them spelled out), and a mix of the
  // other components.
  const std::string llama = R"("normalizer": {"type": "Sequence", "normalizers": [
    {"type": "Prepend", "prepend": "\u2581"},
    {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
  "pre_tokenizer": null,
  "decoder": {"type": "Sequence", "decoders": [
    {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
    {"type": "ByteFallback"}, {"type": "Fuse"},
    {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},)" +
                            std::string(kBosTemplate);
  const std::string mistral = R"("normalizer": null,
  "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first",
                    "split": false},
  "decoder": {"type": "Sequence", "decoders": [{"type": "ByteFallback"},
    {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": false}]},)" +
                              std::string(kBosTemplate);
  const std::string mix = R"("normalizer": {"type": "Sequence", "normalizers": [{"type": "NFKC"},
    {"type": "Replace", "pattern": {"Regex": "\\.\\."}, "content": "\u2025"}]},
  "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "add_prefix_space": true,
                    "split": true},
  "decoder": {"type": "Sequence", "decoders": [{"type": "ByteFallback"},
    {"type": "Metaspace", "replacement": "\u2581"}, {"type": "Fuse"},
    {"type": "Strip", "content": " ", "start": 2, "stop": 0}]},)" +
                          std::string(kBosTemplate);
  const std::string spm_flags = "\"byte_fallback\":true,\"fuse_unk\":true";
  fixtures->push_back(
      {"spm-llama", RoundTrip::kSpmLlama, BuildSpm(llama, false, spm_flags), false});
  fixtures->push_back(
      {"spm-mistral", RoundTrip::kSpmFirst, BuildSpm(mistral, false, spm_flags), false});
  fixtures->push_back({"spm-mix", RoundTrip::kNone,
                       BuildSpm(mix, true, "\"byte_fallback\":true,\"ignore_merges\":true"),
                       false});

  // The fixtures tools/make_tokenizer_fixtures.py makes of that family, where present.
  for (const auto& [name, round_trip] :
       {std::pair<const char*, RoundTrip>{"spm_small", RoundTrip::kSpmLlama},
        {"spm_small_metaspace", RoundTrip::kNone},  // its decoder spells byte tokens out
        {"spm_small_split", RoundTrip::kNone},
        {"spm_small_unk", RoundTrip::kNone}}) {
    const std::string path = root + name + "/tokenizer.json";
    auto tokenizer = mamba::tokenizer::LoadTokenizerJson(path);
    if (!tokenizer.ok()) tokenizer = mamba::tokenizer::LoadTokenizerJson(path + ".gz");
    if (tokenizer.ok()) fixtures->push_back({name, round_trip, *std::move(tokenizer), false});
  }
  return fixtures;
}

bool IsAscii(std::string_view s) {
  for (char c : s) {
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  }
  return true;
}

void CheckDecode(const Fixture& fixture, const std::vector<int32_t>& ids, bool skip_special) {
  const mamba::tokenizer::Tokenizer& tok = *fixture.tokenizer;
  bool all_valid = true;
  for (int32_t id : ids) all_valid &= id >= 0 && id < tok.vocab_size();
  absl::StatusOr<std::string> bytes = tok.DecodeBytes(ids, skip_special);
  FUZZ_CHECK(bytes.ok() == all_valid, "DecodeBytes gave %s for ids %s in the vocabulary",
             bytes.status().ToString().c_str(), all_valid ? "all" : "not all");
  absl::StatusOr<std::string> text = tok.Decode(ids, skip_special);
  FUZZ_CHECK(text.ok() == all_valid, "Decode and DecodeBytes disagree");
  mamba::tokenizer::IncrementalDecoder incremental(&tok, skip_special);
  std::string streamed;
  for (int32_t id : ids) {
    absl::StatusOr<std::string> piece = incremental.Add(id);
    const bool valid_id = id >= 0 && id < tok.vocab_size();
    FUZZ_CHECK(piece.ok() == valid_id, "IncrementalDecoder::Add(%d) gave %s", id,
               piece.status().ToString().c_str());
    if (!piece.ok()) continue;
    FUZZ_CHECK(mamba::tokenizer::IsValidUtf8(*piece), "a streamed piece is not valid UTF-8");
    streamed += *piece;
  }
  const size_t pending = incremental.pending_bytes();
  FUZZ_CHECK(!fixture.byte_level || pending < 4,
             "%zu bytes held back (a UTF-8 character has at most 4)", pending);
  const std::string rest = incremental.Flush();
  FUZZ_CHECK(mamba::tokenizer::IsValidUtf8(rest), "Flush() is not valid UTF-8");
  FUZZ_CHECK(incremental.pending_bytes() == 0, "bytes left after Flush()");
  streamed += rest;
  if (!all_valid) return;
  FUZZ_CHECK(mamba::tokenizer::IsValidUtf8(*text), "Decode() is not valid UTF-8");
  FUZZ_CHECK(streamed == *text, "streamed text (%zu bytes) differs from Decode() (%zu bytes)",
             streamed.size(), text->size());
  if (fixture.byte_level) {
    FUZZ_CHECK(*text == mamba::tokenizer::ToValidUtf8(*bytes),
               "Decode() != mamba::tokenizer::ToValidUtf8(DecodeBytes())");
    return;
  }
  // After a context (the first half), the stream gives what Decode of all adds to Decode of the
  // context, when the context's text is final: a prefix, and no run of byte tokens left open.
  const size_t split = ids.size() / 2;
  size_t last = split;
  while (last > 0 && skip_special && tok.IsSpecial(ids[last - 1])) --last;
  const std::string spelling = last > 0 ? tok.IdToToken(ids[last - 1]) : std::string();
  if (split == 0 || spelling.rfind("<0x", 0) == 0) return;
  absl::StatusOr<std::string> before =
      tok.Decode(absl::MakeConstSpan(ids.data(), split), skip_special);
  FUZZ_CHECK(before.ok(), "Decode of a prefix failed");
  if (text->compare(0, before->size(), *before) != 0) return;
  mamba::tokenizer::IncrementalDecoder after(&tok, skip_special);
  FUZZ_CHECK(after.AddContext(absl::MakeConstSpan(ids.data(), split)).ok(), "AddContext failed");
  std::string rest_text;
  for (size_t i = split; i < ids.size(); ++i) rest_text += *after.Add(ids[i]);
  rest_text += after.Flush();
  FUZZ_CHECK(rest_text == text->substr(before->size()),
             "streamed after a context: %zu bytes, not the %zu Decode adds", rest_text.size(),
             text->size() - before->size());
}

// Whether `text` must come back from Decode(Encode(text)) (SentencePiece layouts).
bool SpmRoundTrips(RoundTrip round_trip, std::string_view text) {
  if (text.find(kMeta) != std::string_view::npos) return false;
  if (round_trip == RoundTrip::kSpmLlama) {
    for (std::string_view special : {"<s>", "</s>", "<unk>"}) {
      if (text.find(special) != std::string_view::npos) return false;
    }
    return true;
  }
  return round_trip == RoundTrip::kSpmFirst && (text.empty() || text.front() != ' ');
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::vector<Fixture>* fixtures = LoadFixtures();
  if (size < 1) return 0;
  const Fixture& fixture = (*fixtures)[data[0] % fixtures->size()];
  const bool add_special = (data[0] & 0x40) != 0;
  const bool skip_special = (data[0] & 0x80) != 0;
  const mamba::tokenizer::Tokenizer& tok = *fixture.tokenizer;
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);

  absl::StatusOr<std::vector<int32_t>> ids = tok.Encode(text, add_special);
  const bool valid_utf8 = mamba::tokenizer::IsValidUtf8(text);
  FUZZ_CHECK((mamba::tokenizer::FirstInvalidUtf8Byte(text) == text.size()) == valid_utf8,
             "FirstInvalidUtf8Byte disagrees with IsValidUtf8");
  if (!valid_utf8) {
    FUZZ_CHECK(!ids.ok() && ids.status().code() == absl::StatusCode::kInvalidArgument,
               "invalid UTF-8 gave %s", ids.status().ToString().c_str());
    // The lossy repair must produce valid UTF-8 that the tokenizer accepts.
    const std::string repaired = mamba::tokenizer::ToValidUtf8(text);
    FUZZ_CHECK(mamba::tokenizer::IsValidUtf8(repaired), "ToValidUtf8 produced invalid UTF-8");
    ids = tok.Encode(repaired, add_special);
    FUZZ_CHECK(ids.ok(), "repaired text refused: %s", ids.status().ToString().c_str());
  } else {
    FUZZ_CHECK(ids.ok(), "valid UTF-8 refused: %s", ids.status().ToString().c_str());
  }
  for (int32_t id : *ids) {
    FUZZ_CHECK(id >= 0 && id < tok.vocab_size(), "encoded id %d outside [0, %d)", id,
               tok.vocab_size());
  }
  if (valid_utf8 && !add_special &&
      (fixture.round_trip == RoundTrip::kAll ||
       (fixture.round_trip == RoundTrip::kAscii && IsAscii(text)))) {
    absl::StatusOr<std::string> back = tok.DecodeBytes(*ids);
    FUZZ_CHECK(back.ok() && *back == text, "%s: decode(encode(text)) != text",
               !fixture.name.empty() ? fixture.name.c_str() : "byte tokenizer");
  }
  if (valid_utf8 && !add_special && SpmRoundTrips(fixture.round_trip, text)) {
    absl::StatusOr<std::string> back = tok.Decode(*ids);
    FUZZ_CHECK(back.ok() && *back == text, "%s: Decode(Encode(text)) != text",
               fixture.name.c_str());
  }
  CheckDecode(fixture, *ids, skip_special);

  // The same bytes as ids: mostly out of range, so the low 16 bits are folded into a range just
  // around the vocabulary, keeping negative and too-large ids in play.
  std::vector<int32_t> raw_ids;
  for (size_t i = 0; i + 4 <= text.size(); i += 4) {
    int32_t v;
    std::memcpy(&v, text.data() + i, 4);
    if ((v & 0x80000000) == 0) v = (v & 0xffff) % (tok.vocab_size() + 8) - 4;
    raw_ids.push_back(v);
  }
  CheckDecode(fixture, raw_ids, skip_special);
  return 0;
}
