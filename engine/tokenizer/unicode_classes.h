// The Unicode character classes that Hugging Face's pre-tokenizers and added-token rules test,
// taken from ICU's tables so they agree with the regex engines `tokenizers` uses:
//   \s      White_Space (Oniguruma's \s and Rust regex's \s are both exactly this property)
//   \p{L}   general category L (Lu Ll Lt Lm Lo);  \p{N}  general category N (Nd Nl No)
//   \w      Rust regex's Unicode word class: Alphabetic, M, Nd, Pc, Join_Control
// ASCII is answered from a table; everything else asks ICU, plus a small table of the letters
// and numbers Unicode added after the linked ICU's version (see unicode_classes.cc).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace mamba::tokenizer::internal {

enum class CharClass : uint8_t { kLetter, kNumber, kWhitespace, kOther };

namespace ascii {
inline constexpr CharClass Compute(uint8_t b) {
  if ((b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z')) return CharClass::kLetter;
  if (b >= '0' && b <= '9') return CharClass::kNumber;
  if (b == ' ' || (b >= 0x09 && b <= 0x0d)) return CharClass::kWhitespace;
  return CharClass::kOther;
}
inline constexpr std::array<CharClass, 128> kClasses = [] {
  std::array<CharClass, 128> t{};
  for (int b = 0; b < 128; ++b) t[b] = Compute(static_cast<uint8_t>(b));
  return t;
}();
// `b` must be below 0x80.
inline CharClass ClassOf(uint8_t b) { return kClasses[b]; }
}  // namespace ascii

// Decodes the code point at s[i]; `s` must be valid UTF-8 from i on. Sets *next past it.
inline char32_t DecodeCodePoint(std::string_view s, size_t i, size_t* next) {
  const auto b0 = static_cast<uint8_t>(s[i]);
  if (b0 < 0x80) {
    *next = i + 1;
    return b0;
  }
  auto cont = [&](size_t k) {
    return static_cast<char32_t>(static_cast<uint8_t>(s[i + k]) & 0x3f);
  };
  if (b0 < 0xe0) {
    *next = i + 2;
    return (static_cast<char32_t>(b0 & 0x1f) << 6) | cont(1);
  }
  if (b0 < 0xf0) {
    *next = i + 3;
    return (static_cast<char32_t>(b0 & 0x0f) << 12) | (cont(1) << 6) | cont(2);
  }
  *next = i + 4;
  return (static_cast<char32_t>(b0 & 0x07) << 18) | (cont(1) << 12) | (cont(2) << 6) | cont(3);
}

// Start of the code point that ends at s[end - 1] (end > 0, `s` valid UTF-8).
inline size_t PreviousCodePointStart(std::string_view s, size_t end) {
  size_t i = end - 1;
  while (i > 0 && (static_cast<uint8_t>(s[i]) & 0xc0) == 0x80) --i;
  return i;
}

// Class of a non-ASCII code point (ICU lookup).
CharClass ClassifyNonAscii(char32_t c);

inline CharClass Classify(char32_t c) {
  return c < 0x80 ? ascii::ClassOf(static_cast<uint8_t>(c)) : ClassifyNonAscii(c);
}

// White_Space (\s).
bool IsWhiteSpace(char32_t c);
// General category N (Rust's char::is_numeric).
bool IsNumeric(char32_t c);
// Rust regex \w.
bool IsWordChar(char32_t c);

}  // namespace mamba::tokenizer::internal
