#include "engine/tokenizer/gpt2_pattern.h"

#include "engine/tokenizer/unicode_classes.h"

namespace mamba::tokenizer::internal {
namespace {

inline CharClass ClassAt(std::string_view s, size_t i, size_t* next) {
  const auto b = static_cast<uint8_t>(s[i]);
  if (b < 0x80) {
    *next = i + 1;
    return ascii::ClassOf(b);
  }
  return ClassifyNonAscii(DecodeCodePoint(s, i, next));
}

// End of the run of code points of class `cls` that starts at `i`.
inline size_t RunEnd(std::string_view s, size_t i, CharClass cls) {
  while (i < s.size()) {
    size_t next;
    if (ClassAt(s, i, &next) != cls) break;
    i = next;
  }
  return i;
}

}  // namespace

size_t Gpt2MatchEnd(std::string_view s, size_t pos) {
  const size_t n = s.size();
  const char c0 = s[pos];
  // 's|'t|'re|'ve|'m|'ll|'d (lower case only, as in the pattern).
  if (c0 == '\'' && pos + 1 < n) {
    const char c1 = s[pos + 1];
    if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return pos + 2;
    if (pos + 2 < n) {
      const char c2 = s[pos + 2];
      if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) {
        return pos + 3;
      }
    }
  }
  size_t next;
  const CharClass k0 = ClassAt(s, pos, &next);
  // ' ?X+' for X in letters, numbers, others: an optional space takes the run after it.
  if (c0 == ' ' && next < n) {
    size_t after;
    const CharClass k1 = ClassAt(s, next, &after);
    if (k1 != CharClass::kWhitespace) return RunEnd(s, after, k1);
  }
  if (k0 != CharClass::kWhitespace) return RunEnd(s, next, k0);
  // \s+(?!\S) takes a white-space run that ends the text, or all of the run but its last code
  // point when a non-space follows (that one joins the next token, e.g. as the space of " ?X+").
  // A single white-space code point before a non-space falls through to \s+.
  size_t last_start = pos;
  size_t end = next;
  while (end < n) {
    size_t after;
    if (ClassAt(s, end, &after) != CharClass::kWhitespace) break;
    last_start = end;
    end = after;
  }
  if (end == n) return n;
  return last_start > pos ? last_start : end;
}

}  // namespace mamba::tokenizer::internal
