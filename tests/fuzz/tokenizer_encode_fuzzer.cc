// Fuzzes encoding and decoding with fixed, real tokenizers (the tests/data/tokenizer fixtures and
// the byte tokenizer) on fuzzed text and fuzzed ids.
//
// Input: byte 0 picks the tokenizer (low bits) and the flags (add_special_tokens, skip_special);
// the rest is the text, and also, read as little-endian int32s, a list of ids to decode.
//
// Checks: invalid UTF-8 is refused with INVALID_ARGUMENT and valid UTF-8 is encoded; encoded ids
// are in the vocabulary; text comes back unchanged where the tokenizer's pipeline is lossless
// (no normalizer, or ASCII under NFC, no added prefix space or stripping); DecodeBytes refuses
// exactly the ids outside [0, vocab_size); Decode gives valid UTF-8; and the pieces an
// IncrementalDecoder emits are valid UTF-8 that concatenate to what Decode gives at once.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/tokenizer/tokenizer.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using mamba::tokenizer::Tokenizer;

// Which texts must survive Encode -> DecodeBytes unchanged.
enum class RoundTrip { kNone, kAscii, kAll };

struct Fixture {
  const char* name;  // folder under tests/data/tokenizer, or "" for the byte tokenizer
  RoundTrip round_trip;
  std::unique_ptr<mamba::tokenizer::Tokenizer> tokenizer;
};

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
  return fixtures;
}

bool IsAscii(std::string_view s) {
  for (char c : s) {
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  }
  return true;
}

void CheckDecode(const mamba::tokenizer::Tokenizer& tok, const std::vector<int32_t>& ids,
                 bool skip_special) {
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
  FUZZ_CHECK(pending < 4, "%zu bytes held back (a UTF-8 character has at most 4)", pending);
  const std::string rest = incremental.Flush();
  FUZZ_CHECK(mamba::tokenizer::IsValidUtf8(rest), "Flush() is not valid UTF-8");
  FUZZ_CHECK(incremental.pending_bytes() == 0, "bytes left after Flush()");
  streamed += rest;
  if (!all_valid) return;
  FUZZ_CHECK(mamba::tokenizer::IsValidUtf8(*text), "Decode() is not valid UTF-8");
  FUZZ_CHECK(streamed == *text, "streamed text (%zu bytes) differs from Decode() (%zu bytes)",
             streamed.size(), text->size());
  FUZZ_CHECK(*text == mamba::tokenizer::ToValidUtf8(*bytes),
             "Decode() != mamba::tokenizer::ToValidUtf8(DecodeBytes())");
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
               fixture.name[0] != '\0' ? fixture.name : "byte tokenizer");
  }
  CheckDecode(tok, *ids, skip_special);

  // The same bytes as ids: mostly out of range, so the low 16 bits are folded into a range just
  // around the vocabulary, keeping negative and too-large ids in play.
  std::vector<int32_t> raw_ids;
  for (size_t i = 0; i + 4 <= text.size(); i += 4) {
    int32_t v;
    std::memcpy(&v, text.data() + i, 4);
    if ((v & 0x80000000) == 0) v = (v & 0xffff) % (tok.vocab_size() + 8) - 4;
    raw_ids.push_back(v);
  }
  CheckDecode(tok, raw_ids, skip_special);
  return 0;
}
