#include "engine/tokenizer/unicode_classes.h"

#include <unicode/uchar.h>

#include <algorithm>
#include <iterator>

namespace mamba::tokenizer::internal {
namespace {

struct NewerRange {
  char32_t first;
  char32_t last;
  CharClass cls;
};

// Letters and numbers that Unicode 15.1 and 16.0 added. `tokenizers` 0.23 matches \p{L} and
// \p{N} with Oniguruma 6.9.10, which has Unicode 16 tables; ICU 72 (Debian 12) has Unicode 15.0
// and calls these unassigned. Found by running every code point through the reference's
// ByteLevel pre-tokenizer and comparing with ICU 72; these 29 ranges are all that differ.
// Consulted only for code points the linked ICU calls unassigned, so a newer ICU wins.
constexpr NewerRange kNewerLettersAndNumbers[] = {
    {0x1C89, 0x1C8A, CharClass::kLetter},   {0xA7CB, 0xA7CD, CharClass::kLetter},
    {0xA7DA, 0xA7DC, CharClass::kLetter},   {0x105C0, 0x105F3, CharClass::kLetter},
    {0x10D40, 0x10D49, CharClass::kNumber}, {0x10D4A, 0x10D65, CharClass::kLetter},
    {0x10D6F, 0x10D85, CharClass::kLetter}, {0x10EC2, 0x10EC4, CharClass::kLetter},
    {0x11380, 0x11389, CharClass::kLetter}, {0x1138B, 0x1138B, CharClass::kLetter},
    {0x1138E, 0x1138E, CharClass::kLetter}, {0x11390, 0x113B5, CharClass::kLetter},
    {0x113B7, 0x113B7, CharClass::kLetter}, {0x113D1, 0x113D1, CharClass::kLetter},
    {0x113D3, 0x113D3, CharClass::kLetter}, {0x116D0, 0x116E3, CharClass::kNumber},
    {0x11BC0, 0x11BE0, CharClass::kLetter}, {0x11BF0, 0x11BF9, CharClass::kNumber},
    {0x13460, 0x143FA, CharClass::kLetter}, {0x16100, 0x1611D, CharClass::kLetter},
    {0x16130, 0x16139, CharClass::kNumber}, {0x16D40, 0x16D6C, CharClass::kLetter},
    {0x16D70, 0x16D79, CharClass::kNumber}, {0x18CFF, 0x18CFF, CharClass::kLetter},
    {0x1CCF0, 0x1CCF9, CharClass::kNumber}, {0x1E5D0, 0x1E5ED, CharClass::kLetter},
    {0x1E5F0, 0x1E5F0, CharClass::kLetter}, {0x1E5F1, 0x1E5FA, CharClass::kNumber},
    {0x2EBF0, 0x2EE5D, CharClass::kLetter},
};

CharClass ClassifyUnassigned(char32_t c) {
  const auto* end = std::end(kNewerLettersAndNumbers);
  const auto* it = std::upper_bound(std::begin(kNewerLettersAndNumbers), end, c,
                                    [](char32_t v, const NewerRange& r) { return v < r.first; });
  if (it == std::begin(kNewerLettersAndNumbers)) return CharClass::kOther;
  --it;
  return c <= it->last ? it->cls : CharClass::kOther;
}

}  // namespace

CharClass ClassifyNonAscii(char32_t c) {
  const auto cp = static_cast<UChar32>(c);
  switch (u_charType(cp)) {
    case U_UNASSIGNED:
      return ClassifyUnassigned(c);
    case U_UPPERCASE_LETTER:
    case U_LOWERCASE_LETTER:
    case U_TITLECASE_LETTER:
    case U_MODIFIER_LETTER:
    case U_OTHER_LETTER:
      return CharClass::kLetter;
    case U_DECIMAL_DIGIT_NUMBER:
    case U_LETTER_NUMBER:
    case U_OTHER_NUMBER:
      return CharClass::kNumber;
    default:
      break;
  }
  return u_isUWhiteSpace(cp) ? CharClass::kWhitespace : CharClass::kOther;
}

bool IsWhiteSpace(char32_t c) {
  if (c < 0x80) return ascii::ClassOf(static_cast<uint8_t>(c)) == CharClass::kWhitespace;
  return u_isUWhiteSpace(static_cast<UChar32>(c));
}

bool IsNumeric(char32_t c) { return Classify(c) == CharClass::kNumber; }

bool IsWordChar(char32_t c) {
  if (c < 0x80) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  }
  const auto cp = static_cast<UChar32>(c);
  // The newer letters and (decimal) numbers above are word characters for Rust's regex too.
  if (u_charType(cp) == U_UNASSIGNED) return ClassifyUnassigned(c) != CharClass::kOther;
  if (u_hasBinaryProperty(cp, UCHAR_ALPHABETIC) || u_hasBinaryProperty(cp, UCHAR_JOIN_CONTROL)) {
    return true;
  }
  switch (u_charType(cp)) {
    case U_NON_SPACING_MARK:
    case U_COMBINING_SPACING_MARK:
    case U_ENCLOSING_MARK:
    case U_DECIMAL_DIGIT_NUMBER:
    case U_CONNECTOR_PUNCTUATION:
      return true;
    default:
      return false;
  }
}

}  // namespace mamba::tokenizer::internal
