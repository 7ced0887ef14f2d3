// Text <-> token ids. Implementations: the Hugging Face byte-level BPE (tokenizer.json of the
// GPT-2 / GPT-NeoX family) and a plain byte-level tokenizer for models without tokenizer.json.
//
// Thread-safety: a Tokenizer is immutable after loading; Encode/Decode may be called from any
// number of threads at once (each encoding thread keeps its own cache of encoded words). An
// IncrementalDecoder belongs to one stream.
//
// What a tokenizer.json may contain (anything else is refused with an error naming it):
//   model           BPE: vocab, merges ("a b" strings or [a, b] pairs), ignore_merges, unk_token
//                   (+ fuse_unk); dropout null or 0; byte_fallback false; no continuing-subword
//                   prefix or end-of-word suffix.
//   normalizer      null, NFC, NFD, NFKC, NFKD, or a Sequence of these.
//   pre_tokenizer   ByteLevel (add_prefix_space, use_regex), alone or last in a Sequence after
//                   Split steps (a literal string, or the GPT-2 regex; any behavior; invert) and
//                   Digits steps.
//   added_tokens    special or not, with single_word / lstrip / rstrip / normalized; matched in
//                   the text before normalization (normalized: false) or after it (true),
//                   leftmost-longest, as Hugging Face does.
//   post_processor  null, ByteLevel, TemplateProcessing (its `single` template, applied when
//                   add_special_tokens), or a Sequence of these.
//   decoder         ByteLevel.
// `truncation` and `padding` are ignored: callers bound lengths themselves.
//
// Exactness: tests compare with `tokenizers` 0.23, whose quirks this follows (see
// hf_tokenizer.cc), and whose Unicode data it reproduces: letters and numbers as of Unicode 16
// for the GPT-2 regex, Unicode 9.0 normalization tables. Known gap: the Digits pre-tokenizer and
// single_word's word test may differ on characters that Unicode 16/17 added as digits or marks
// (GPT-NeoX-family files use neither).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace mamba::tokenizer {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Encodes text exactly as Hugging Face `tokenizers` does (without adding special tokens the
  // post-processor would add, unless `add_special_tokens`). `text` must be valid UTF-8 and at
  // most 1 GiB (else INVALID_ARGUMENT).
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
  // The token string of an id ("" when unknown): the vocabulary's spelling, in which bytes are
  // written with GPT-2's byte-level alphabet (a space is "\u0120"). Always valid UTF-8.
  virtual std::string IdToToken(int32_t id) const = 0;
  // The end-of-text id, if the vocabulary has one: the first of "<|endoftext|>", "</s>",
  // "<|end_of_text|>", "<eos>" that it has (a model's config may name another).
  virtual std::optional<int32_t> eos_id() const = 0;
  virtual bool IsSpecial(int32_t id) const = 0;
  // "bpe" or "byte".
  virtual std::string kind() const = 0;

  // Decodes to text, replacing invalid UTF-8 with U+FFFD.
  absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids,
                                     bool skip_special_tokens = false) const;
};

// Loads a tokenizer.json (gzip-compressed files, e.g. tokenizer.json.gz, are recognized by their
// magic bytes). Unsupported components give an error naming them; a malformed file an error
// saying where, never a crash.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizerJson(const std::string& path);
// Parses tokenizer.json content held in memory (`source` names it in errors).
absl::StatusOr<std::unique_ptr<Tokenizer>> ParseTokenizerJson(std::string_view json,
                                                              std::string_view source);

// A tokenizer whose ids 0..255 are bytes, followed by `special_tokens` (e.g. "<|endoftext|>" is
// 256 when it comes first). Special tokens are matched in the text when encoding (leftmost,
// longest first; empty ones never match). Ids from 256 + special_tokens.size() up to
// `vocab_size` exist but decode to "" (the unused ids of models whose vocabulary is larger);
// a `vocab_size` smaller than 256 + special_tokens.size() is raised to it. eos_id() is
// "<|endoftext|>" when it is one of the special tokens.
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
// Byte offset of the first ill-formed UTF-8 sequence in `s`, or s.size() when it is valid.
size_t FirstInvalidUtf8Byte(std::string_view s);
// Length of the longest prefix of `s` made of whole, valid UTF-8 characters, treating an
// incomplete sequence at the end as not yet complete.
size_t CompleteUtf8Prefix(std::string_view s);
// Appends `s` to `out`, replacing each maximal ill-formed subsequence with U+FFFD (the
// substitution Unicode recommends, and that Rust's from_utf8_lossy and Python's
// errors="replace" make, so decoded text matches Hugging Face's byte for byte).
void AppendUtf8Lossy(std::string_view s, std::string* out);
std::string ToValidUtf8(std::string_view s);

// Reads a whole file, gunzipping it when it starts with the gzip magic bytes. Fails when the
// file (or its decompressed content) is larger than `max_bytes`.
absl::StatusOr<std::string> ReadFileMaybeGzipped(const std::string& path,
                                                 size_t max_bytes = size_t{1} << 30);

}  // namespace mamba::tokenizer
