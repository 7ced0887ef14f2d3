// Text <-> token ids. Implementations: the Hugging Face byte-level BPE (tokenizer.json of the
// GPT-2 / GPT-NeoX family) and a plain byte-level tokenizer for models without tokenizer.json.
//
// Thread-safety: a Tokenizer is immutable after loading; Encode/Decode may be called from any
// number of threads at once. An IncrementalDecoder belongs to one stream.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace mamba {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Encodes text exactly as Hugging Face `tokenizers` does (without adding special tokens the
  // post-processor would add, unless `add_special_tokens`). `text` must be valid UTF-8.
  virtual absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text,
                                                      bool add_special_tokens = false) const = 0;

  // Concatenated bytes of `ids` (special tokens included unless `skip_special_tokens`). May end
  // in a partial UTF-8 sequence; ids outside the vocabulary are an error.
  virtual absl::StatusOr<std::string> DecodeBytes(absl::Span<const int32_t> ids,
                                                  bool skip_special_tokens = false) const = 0;

  // Number of ids (the largest id + 1, added tokens included).
  virtual int32_t vocab_size() const = 0;
  // The id of a token string (special tokens included), if any.
  virtual std::optional<int32_t> TokenToId(std::string_view token) const = 0;
  // The token string of an id ("" when unknown).
  virtual std::string IdToToken(int32_t id) const = 0;
  // The end-of-text id (e.g. "<|endoftext|>"), if the vocabulary has one.
  virtual std::optional<int32_t> eos_id() const = 0;
  virtual bool IsSpecial(int32_t id) const = 0;
  // "bpe" or "byte".
  virtual std::string kind() const = 0;

  // Decodes to text, replacing invalid UTF-8 with U+FFFD.
  absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids,
                                     bool skip_special_tokens = false) const;
};

// Loads a tokenizer.json. Unsupported components give an error naming them; a malformed file an
// error saying where, never a crash.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizerJson(const std::string& path);
// Parses tokenizer.json content held in memory (`source` names it in errors).
absl::StatusOr<std::unique_ptr<Tokenizer>> ParseTokenizerJson(std::string_view json,
                                                              std::string_view source);

// A tokenizer whose ids 0..255 are bytes, followed by `special_tokens` (e.g. "<|endoftext|>").
std::unique_ptr<Tokenizer> MakeByteTokenizer(std::vector<std::string> special_tokens,
                                             int32_t vocab_size = 0 /* 0: 256 + specials */);

// Turns a stream of ids into text pieces that are always whole UTF-8 characters: bytes of a
// character split across tokens are held until the character is complete. Flush() returns what
// is left (incomplete sequences become U+FFFD).
class IncrementalDecoder {
 public:
  explicit IncrementalDecoder(const Tokenizer* tokenizer, bool skip_special_tokens = false)
      : tokenizer_(tokenizer), skip_special_(skip_special_tokens) {}
  // Appends `id`; returns the text that became complete (possibly empty).
  absl::StatusOr<std::string> Add(int32_t id);
  std::string Flush();
  // Bytes held back (an incomplete UTF-8 sequence).
  size_t pending_bytes() const { return pending_.size(); }

 private:
  const Tokenizer* tokenizer_;
  bool skip_special_;
  std::string pending_;
};

// True when `s` is well-formed UTF-8 (no overlongs, surrogates or code points above U+10FFFF).
bool IsValidUtf8(std::string_view s);
// Length of the longest prefix of `s` made of whole, valid UTF-8 characters, treating an
// incomplete sequence at the end as not yet complete.
size_t CompleteUtf8Prefix(std::string_view s);

}  // namespace mamba
