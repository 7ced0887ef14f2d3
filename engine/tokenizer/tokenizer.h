// Text <-> token ids. Implementations: Hugging Face BPE tokenizer.json files of two families,
// byte-level (GPT-2 / GPT-NeoX / Llama-3) and SentencePiece-converted (Llama-2 / Mistral /
// Mamba-Codestral: "▁" for spaces, <0xNN> byte tokens), and a plain byte-level tokenizer for
// models without tokenizer.json.
//
// Thread-safety: a Tokenizer is immutable after loading; Encode/Decode may be called from any
// number of threads at once (each encoding thread keeps its own cache of encoded words). An
// IncrementalDecoder belongs to one stream.
//
// What a tokenizer.json may contain (anything else is refused with an error naming it):
//   model           BPE: vocab, merges ("a b" strings or [a, b] pairs), ignore_merges, unk_token
//                   (+ fuse_unk), byte_fallback (a character without a token becomes the
//                   <0xNN> tokens of its UTF-8 bytes); dropout null or 0; no
//                   continuing-subword prefix or end-of-word suffix.
//   normalizer      null, NFC, NFD, NFKC, NFKD, Prepend, Replace (a String pattern, or a Regex
//                   pattern of literal characters only, like "\\."; other regexes are refused),
//                   or a Sequence of these.
//   pre_tokenizer   Byte-level files: ByteLevel (add_prefix_space, use_regex), alone or last in a
//                   Sequence after Split steps (a literal string, or the GPT-2 regex; any
//                   behavior; invert) and Digits steps. Other files: null (the Llama/Mistral
//                   layout: the normalizer's Prepend + Replace make the "▁"), Metaspace
//                   (replacement, prepend_scheme always | first | never, split; legacy
//                   add_prefix_space), alone, or a Sequence of Split and Digits steps alone.
//   added_tokens    special or not, with single_word / lstrip / rstrip / normalized; matched in
//                   the text before normalization (normalized: false) or after it (true),
//                   leftmost-longest, as Hugging Face does.
//   post_processor  null, ByteLevel, TemplateProcessing (its `single` template, e.g. "<s> $A",
//                   applied when add_special_tokens), or a Sequence of these.
//   decoder         ByteLevel with a ByteLevel pre-tokenizer; otherwise Metaspace, or a
//                   Sequence of Replace (a literal pattern), Strip (stop 0), Metaspace,
//                   ByteFallback (at most one) and Fuse, where only Strip may follow Fuse
//                   (Llama/Mistral: Replace("▁", " "), ByteFallback, Fuse, Strip(" ", 1, 0)).
// `truncation` and `padding` are ignored: callers bound lengths themselves.
//
// Decoding, for the SentencePiece-converted family, is Hugging Face's decode(ids) exactly:
// "▁" becomes a space, except that the text's first token loses its leading space (Strip, or
// the Metaspace decoder); a run of consecutive <0xNN> tokens becomes its bytes when they are
// valid UTF-8 and one U+FFFD per token when they are not.
//
// Streaming (IncrementalDecoder): the pieces it emits, and Flush(), concatenate to Decode() of
// the same ids. Generated text follows a prompt, so it is decoded the way vLLM and TGI decode
// it: in the context of the ids before it (AddContext), emitting what Decode(context + ids)
// adds to Decode(context), so the first generated word keeps its leading space ("Hello" +
// " world", not "world"). Only a stream with no token before it (no context, or only skipped
// special tokens, as when the prompt is just "<s>") loses the first token's leading space, as
// Decode() of the whole sequence would. A run of byte tokens is held until the token after it
// (or Flush), because a later byte can make the whole run invalid, which turns every byte of
// it into U+FFFD; a run the context leaves open is the stream's to emit once completed.
//
// Exactness: tests compare with `tokenizers` 0.23, whose quirks this follows (see
// hf_tokenizer.cc), and whose Unicode data it reproduces: letters and numbers as of Unicode 16
// for the GPT-2 regex, Unicode 9.0 normalization tables. Known gaps: the Digits pre-tokenizer
// and single_word's word test may differ on characters that Unicode 16/17 added as digits or
// marks (GPT-NeoX-family files use neither); Metaspace's prepend_scheme "first" treats a piece
// after a normalized added token as not first, where the reference would call it first if a
// normalizer had expanded the text's first character around that token.
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

// What a stream of ids decoded one at a time carries from one id to the next. It belongs to an
// IncrementalDecoder; only the Tokenizer reads and writes it.
struct DecodeStreamState {
  // Bytes held back: an incomplete UTF-8 character, or an open run of byte tokens.
  std::string pending;
  int32_t pending_tokens = 0;  // byte tokens whose bytes are in `pending`
  bool pending_first = false;  // the open run began with the text's first token
  bool started = false;        // a token that is not skipped was decoded (or given as context)
  bool context_only = false;   // everything in `pending` came from AddContext
  // One per Strip that follows Fuse: the leading characters it may still remove.
  std::vector<int32_t> strip_left;
};

class IncrementalDecoder;

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Encodes text exactly as Hugging Face `tokenizers` does (without adding special tokens the
  // post-processor would add, unless `add_special_tokens`). `text` must be valid UTF-8 and at
  // most 1 GiB (else INVALID_ARGUMENT).
  virtual absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text,
                                                      bool add_special_tokens = false) const = 0;

  // The bytes each of `ids` stands for in the middle of a text, concatenated (special tokens
  // included unless `skip_special_tokens`): "▁Hello" is " Hello", <0xE4> the byte 0xE4. So
  // DecodeBytes(a + b) == DecodeBytes(a) + DecodeBytes(b), and the result may end in a partial
  // UTF-8 sequence. Unlike Decode, no rule for the text's start (Strip) or for invalid runs of
  // byte tokens applies. Ids outside the vocabulary are an error.
  virtual absl::StatusOr<std::string> DecodeBytes(absl::Span<const int32_t> ids,
                                                  bool skip_special_tokens = false) const = 0;

  // Decodes to text exactly as Hugging Face's decode(ids) does. The default (byte-level
  // tokenizers): DecodeBytes with invalid UTF-8 replaced by U+FFFD.
  virtual absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids,
                                             bool skip_special_tokens = false) const;

  // Number of ids (the largest id + 1, added tokens included).
  virtual int32_t vocab_size() const = 0;
  // The id of a token string (special tokens included), if any.
  virtual std::optional<int32_t> TokenToId(std::string_view token) const = 0;
  // The token string of an id ("" when unknown): the vocabulary's spelling, in which bytes are
  // written with GPT-2's byte-level alphabet (a space is "\u0120") in byte-level files, and
  // spaces as "\u2581" in SentencePiece-converted ones. Always valid UTF-8.
  virtual std::string IdToToken(int32_t id) const = 0;
  // The end-of-text id, if the vocabulary has one: the first of "<|endoftext|>", "</s>",
  // "<|end_of_text|>", "<eos>" that it has (a model's config may name another).
  virtual std::optional<int32_t> eos_id() const = 0;
  virtual bool IsSpecial(int32_t id) const = 0;
  // "bpe" (tokenizer.json, byte-level or SentencePiece-converted) or "byte".
  virtual std::string kind() const = 0;

 protected:
  friend class IncrementalDecoder;

  // One step of a streaming decode (IncrementalDecoder's engine): decodes `id` after the ids
  // that made *state, appending to *out the text that became final (nothing when `out` is
  // null: context). The default works from DecodeBytes, holding back the bytes of an incomplete
  // UTF-8 character.
  virtual absl::Status DecodeStreamStep(int32_t id, bool skip_special_tokens,
                                        DecodeStreamState* state, std::string* out) const;
  // Appends what *state holds back, as text (an incomplete character becomes U+FFFD), and
  // empties it.
  virtual void DecodeStreamFlush(DecodeStreamState* state, std::string* out) const;
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

// Turns a stream of ids into text pieces, each valid UTF-8 and final: their concatenation, with
// Flush(), is Decode() of the ids (after the context, see AddContext). Text is held back while
// it may still change: the bytes of a character split across tokens, a run of byte tokens.
class IncrementalDecoder {
 public:
  explicit IncrementalDecoder(const Tokenizer* tokenizer, bool skip_special_tokens = false)
      : tokenizer_(tokenizer), skip_special_(skip_special_tokens) {}

  // Feeds ids that come before the stream, e.g. the prompt before generated tokens, without
  // emitting their text: the stream then continues their text, as vLLM and TGI decode
  // generated tokens (the first generated word keeps its leading space; a character whose
  // first bytes end the context comes out whole once the stream completes it). Only the ids'
  // end and whether any is not skipped matter, but they are cheap (a table lookup each), so
  // pass them all. Call before Add(). Fails on an id outside the vocabulary (the state is then
  // as if the ids before it were given).
  absl::Status AddContext(absl::Span<const int32_t> ids);
  // Declares that text whose ids are not at hand precedes the stream (a session's earlier
  // turns): as AddContext of ordinary tokens, the first token keeps its leading space.
  void AssumeTextBefore() { state_.started = true; }

  // Appends `id`; returns the text that became final (possibly empty).
  absl::StatusOr<std::string> Add(int32_t id);
  // Returns what is held back (an incomplete character becomes U+FFFD), except what only the
  // context holds, which is dropped.
  std::string Flush();
  // Bytes held back (an incomplete UTF-8 character, or an open run of byte tokens).
  size_t pending_bytes() const { return state_.pending.size(); }
  // True while the next token would be the first of the text (no token that is not skipped
  // was added or given as context, and AssumeTextBefore() was not called).
  bool at_start() const { return !state_.started; }

 private:
  const Tokenizer* tokenizer_;
  bool skip_special_;
  DecodeStreamState state_;
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
