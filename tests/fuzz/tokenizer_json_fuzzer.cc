// Fuzzes the tokenizer.json loader (ParseTokenizerJson) and then uses what it accepted: a
// tokenizer that loads must encode and decode without crashing, give ids inside its vocabulary,
// and decode to valid UTF-8.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "engine/tokenizer/tokenizer.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

// Texts that reach the pre-tokenizers' interesting paths: spaces runs, digits, contractions,
// special-token spellings, letters outside ASCII, an emoji (4-byte UTF-8), combining marks.
constexpr const char* kTexts[] = {
    "Hello world",
    "  leading and trailing  ",
    "It's 2024: 1,234.5 apples, don't they?",
    "<|endoftext|>x<|padding|> <mask> [word] <rs>",
    "caf\xc3\xa9 cafe\xcc\x81 \xce\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\xa4\x96",
    "\n\n\t \r\n",
};

void Exercise(const mamba::tokenizer::Tokenizer& tok, std::string_view text, bool add_special) {
  absl::StatusOr<std::vector<int32_t>> ids = tok.Encode(text, add_special);
  if (!ids.ok()) return;  // a vocabulary may lack pieces of the text; an error is fine
  for (int32_t id : *ids) {
    FUZZ_CHECK(id >= 0 && id < tok.vocab_size(), "encoded id %d outside [0, %d)", id,
               tok.vocab_size());
  }
  absl::StatusOr<std::string> decoded = tok.Decode(*ids);
  FUZZ_CHECK(decoded.ok(), "ids from Encode do not decode: %s",
             decoded.status().ToString().c_str());
  FUZZ_CHECK(mamba::tokenizer::IsValidUtf8(*decoded), "Decode() is not valid UTF-8");
  mamba::tokenizer::IncrementalDecoder incremental(&tok, /*skip_special_tokens=*/true);
  for (int32_t id : *ids) {
    absl::StatusOr<std::string> piece = incremental.Add(id);
    FUZZ_CHECK(piece.ok() && mamba::tokenizer::IsValidUtf8(*piece), "IncrementalDecoder failed");
  }
  FUZZ_CHECK(mamba::tokenizer::IsValidUtf8(incremental.Flush()), "Flush() is not valid UTF-8");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view json(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<std::unique_ptr<mamba::tokenizer::Tokenizer>> loaded =
      mamba::tokenizer::ParseTokenizerJson(json, "fuzz/tokenizer.json");
  if (!loaded.ok()) {
    FUZZ_CHECK(!loaded.status().message().empty(), "an error without a message");
    return 0;
  }
  const mamba::tokenizer::Tokenizer& tok = **loaded;
  FUZZ_CHECK(tok.vocab_size() >= 0, "negative vocab_size %d", tok.vocab_size());
  FUZZ_CHECK(tok.kind() == "bpe" || tok.kind() == "byte", "kind '%s'", tok.kind().c_str());
  if (auto eos = tok.eos_id(); eos.has_value()) {
    FUZZ_CHECK(*eos >= 0 && *eos < tok.vocab_size(), "eos id %d outside the vocabulary", *eos);
  }
  // Every id's spelling is valid UTF-8. (Not checked: that TokenToId maps it back. A normalized
  // added token is spelled in its normalized form but looked up by its content, as in the file.)
  const int32_t shown = std::min(tok.vocab_size(), 4096);
  for (int32_t id = 0; id < shown; ++id) {
    FUZZ_CHECK(mamba::tokenizer::IsValidUtf8(tok.IdToToken(id)), "IdToToken(%d) is not valid UTF-8",
               id);
    (void)tok.IsSpecial(id);
    (void)tok.TokenToId(tok.IdToToken(id));
  }
  FUZZ_CHECK(tok.IdToToken(-1).empty() && tok.IdToToken(tok.vocab_size()).empty(),
             "IdToToken of an id outside the vocabulary is not empty");
  for (const char* text : kTexts) {
    Exercise(tok, text, /*add_special=*/false);
    Exercise(tok, text, /*add_special=*/true);
  }
  // The tail of the input as text, so the fuzzer can steer it toward the vocabulary it wrote.
  const std::string_view tail = json.substr(json.size() - std::min<size_t>(json.size(), 64));
  if (mamba::tokenizer::IsValidUtf8(tail)) Exercise(tok, tail, false);
  return 0;
}
