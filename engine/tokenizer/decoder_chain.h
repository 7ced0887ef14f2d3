// The decoders of tokenizer.json files that are not byte-level (Replace, Strip, Metaspace,
// ByteFallback, Fuse), in the order Hugging Face's decoder Sequence runs them:
//
//   token steps    on each token's string (Replace, Strip, Metaspace)
//   ByteFallback   a run of consecutive <0xNN> tokens becomes the text of its bytes when they
//                  are valid UTF-8, else one U+FFFD per token
//   element steps  on each element ByteFallback leaves (a token, a run's text, or one U+FFFD)
//   Fuse           joins the elements into one text
//   text steps     Strip on that whole text (its start only: stop is always 0)
//
// Metaspace treats the first element specially (its replacement characters vanish), so the first
// token of a text decodes differently; every other step is the same wherever the token is. That
// is what lets a stream decode one token at a time (hf_tokenizer.cc): only the first token, the
// open run of byte tokens and each Strip's count of leading characters need remembering.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mamba::tokenizer::internal {

struct DecoderStep {
  enum class Kind { kReplace, kStrip, kMetaspace };
  Kind kind = Kind::kReplace;
  std::string pattern;         // kReplace: a non-empty literal
  std::string content;         // kReplace: what replaces it
  std::string strip;           // kStrip: the character removed, as UTF-8
  int32_t strip_start = 0;     // kStrip: how many leading ones, at most
  std::string replacement;     // kMetaspace: the character that stands for a space, as UTF-8
  bool prepend_never = false;  // kMetaspace: prepend_scheme "never" (no first-element rule)
};

struct DecoderChain {
  std::vector<DecoderStep> token_steps;
  bool byte_fallback = false;
  std::vector<DecoderStep> element_steps;
  std::vector<DecoderStep> text_steps;  // kStrip only

  // True when the first element decodes differently from the others (a Metaspace step).
  bool FirstIsSpecial() const;

  // `steps` applied to one element; `first`: it is the first element of the text.
  static std::string Apply(const std::vector<DecoderStep>& steps, std::string_view element,
                           bool first);

  // The byte a token spelled <0xNN> stands for, as the reference reads it (two hex digits, or
  // '+' and one: Rust's u8::from_str_radix), or -1.
  static int ByteTokenValue(std::string_view token);

  // The text steps applied to the next piece of the text: `strip_left` holds, per step, the
  // leading characters it may still remove (the step's strip_start at the text's start).
  void AppendWithTextSteps(std::string_view text, std::vector<int32_t>* strip_left,
                           std::string* out) const;
};

}  // namespace mamba::tokenizer::internal
