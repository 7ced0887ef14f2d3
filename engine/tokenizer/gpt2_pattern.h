// GPT-2's pre-tokenizer regex, written out as a scanner:
//
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//
// It is hand-written because of the lookahead, and because it runs over every byte of every
// prompt. Matches are leftmost-first (the first alternative that matches wins, as in
// Oniguruma, which Hugging Face `tokenizers` uses), and they tile the text: every code point
// is a letter, a number, white space or something else, so a match starts wherever the
// previous one ended.
#pragma once

#include <cstddef>
#include <string_view>

namespace mamba::tokenizer::internal {

// The exact pattern string as tokenizer.json files spell it.
inline constexpr std::string_view kGpt2Pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

// End of the match that starts at `pos` (pos < text.size(); `text` valid UTF-8).
size_t Gpt2MatchEnd(std::string_view text, size_t pos);

}  // namespace mamba::tokenizer::internal
