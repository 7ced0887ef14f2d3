#include "engine/tokenizer/jinja_text.h"

#include <unicode/ucasemap.h>
#include <unicode/uchar.h>
#include <unicode/utypes.h>

#include <cstdio>
#include <memory>

namespace mamba::tokenizer::jinja {
namespace {

// Decodes the code point at s[*i] (valid UTF-8) and advances *i past it.
char32_t NextCodePoint(std::string_view s, size_t* i) {
  const auto b0 = static_cast<uint8_t>(s[*i]);
  if (b0 < 0x80) {
    *i += 1;
    return b0;
  }
  int len = b0 >= 0xf0 ? 4 : b0 >= 0xe0 ? 3 : 2;
  char32_t c = b0 & (0x7f >> len);
  for (int k = 1; k < len && *i + k < s.size(); ++k) {
    c = (c << 6) | (static_cast<uint8_t>(s[*i + k]) & 0x3f);
  }
  *i += len;
  return c;
}

bool IsAscii(std::string_view s) {
  for (char c : s) {
    if (static_cast<uint8_t>(c) >= 0x80) return false;
  }
  return true;
}

struct CaseMapCloser {
  void operator()(UCaseMap* m) const { ucasemap_close(m); }
};

// One case map per thread and option set: ICU's title-casing entry point takes a non-const
// map, so it is not shared between threads.
UCaseMap* CaseMapFor(uint32_t options) {
  thread_local std::unique_ptr<UCaseMap, CaseMapCloser> plain, whole;
  auto& slot = options == 0 ? plain : whole;
  if (slot == nullptr) {
    UErrorCode error = U_ZERO_ERROR;
    slot.reset(ucasemap_open("", options, &error));
    if (U_FAILURE(error)) slot.reset();
  }
  return slot.get();
}

enum class CaseOp { kUpper, kLower, kCapitalize };

// Full Unicode case mapping of UTF-8 text with the root locale (what Python's str methods
// do). kCapitalize titlecases the first character and lowercases the rest, as str.capitalize.
std::string MapCase(std::string_view s, CaseOp op) {
  if (s.empty()) return std::string();
  if (IsAscii(s)) {
    std::string out(s);
    for (size_t i = 0; i < out.size(); ++i) {
      char& c = out[i];
      const bool upper = op == CaseOp::kUpper || (op == CaseOp::kCapitalize && i == 0);
      if (upper && c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
      if (!upper && c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    return out;
  }
  const uint32_t options =
      op == CaseOp::kCapitalize ? U_TITLECASE_WHOLE_STRING | U_TITLECASE_NO_BREAK_ADJUSTMENT : 0;
  UCaseMap* map = CaseMapFor(options);
  if (map == nullptr) return std::string(s);
  std::string out(s.size() * 3 + 16, '\0');
  for (int attempt = 0; attempt < 2; ++attempt) {
    UErrorCode error = U_ZERO_ERROR;
    int32_t n = 0;
    const auto cap = static_cast<int32_t>(out.size());
    const auto len = static_cast<int32_t>(s.size());
    switch (op) {
      case CaseOp::kUpper:
        n = ucasemap_utf8ToUpper(map, out.data(), cap, s.data(), len, &error);
        break;
      case CaseOp::kLower:
        n = ucasemap_utf8ToLower(map, out.data(), cap, s.data(), len, &error);
        break;
      case CaseOp::kCapitalize:
        n = ucasemap_utf8ToTitle(map, out.data(), cap, s.data(), len, &error);
        break;
    }
    if (error == U_BUFFER_OVERFLOW_ERROR) {
      out.assign(static_cast<size_t>(n) + 1, '\0');
      continue;
    }
    if (U_FAILURE(error)) return std::string(s);
    out.resize(static_cast<size_t>(n));
    return out;
  }
  return std::string(s);
}

bool IsCased(char32_t c) { return u_hasBinaryProperty(static_cast<UChar32>(c), UCHAR_CASED); }

// Python's str.isprintable() for one code point: not in Cc Cf Cs Co Cn Zl Zp Zs, except space.
bool IsPyPrintable(char32_t c) {
  if (c == ' ') return true;
  if (c < 0x80) return c > 0x20 && c < 0x7f;
  switch (u_charType(static_cast<UChar32>(c))) {
    case U_CONTROL_CHAR:
    case U_FORMAT_CHAR:
    case U_SURROGATE:
    case U_PRIVATE_USE_CHAR:
    case U_UNASSIGNED:
    case U_LINE_SEPARATOR:
    case U_PARAGRAPH_SEPARATOR:
    case U_SPACE_SEPARATOR:
      return false;
    default:
      return true;
  }
}

bool IsPyDecimal(char32_t c) {
  return u_charType(static_cast<UChar32>(c)) == U_DECIMAL_DIGIT_NUMBER;
}

bool IsPyDigitChar(char32_t c) {
  const int type = u_getIntPropertyValue(static_cast<UChar32>(c), UCHAR_NUMERIC_TYPE);
  return type == U_NT_DECIMAL || type == U_NT_DIGIT;
}

bool IsPyNumericChar(char32_t c) {
  return u_getIntPropertyValue(static_cast<UChar32>(c), UCHAR_NUMERIC_TYPE) != U_NT_NONE;
}

bool IsPyAlphaChar(char32_t c) {
  switch (u_charType(static_cast<UChar32>(c))) {
    case U_UPPERCASE_LETTER:
    case U_LOWERCASE_LETTER:
    case U_TITLECASE_LETTER:
    case U_MODIFIER_LETTER:
    case U_OTHER_LETTER:
      return true;
    default:
      return false;
  }
}

bool IsPyAlnumChar(char32_t c) {
  return IsPyAlphaChar(c) || IsPyDecimal(c) || IsPyDigitChar(c) || IsPyNumericChar(c);
}

// True when every code point satisfies `pred` and there is at least one.
template <typename Pred>
bool AllOf(std::string_view s, Pred pred) {
  if (s.empty()) return false;
  for (size_t i = 0; i < s.size();) {
    if (!pred(NextCodePoint(s, &i))) return false;
  }
  return true;
}

// Python's islower / isupper: at least one cased character, and no cased character of the
// other kind (titlecase letters count as neither).
bool CasedAll(std::string_view s, bool lower) {
  bool any = false;
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<UChar32>(NextCodePoint(s, &i));
    const bool is_lower = u_isULowercase(c);
    const bool is_upper = u_isUUppercase(c);
    if (u_istitle(c) || (lower ? is_upper : is_lower)) return false;
    if (lower ? is_lower : is_upper) any = true;
  }
  return any;
}

bool InChars(char32_t c, const std::u32string& chars) {
  return chars.find(c) != std::u32string::npos;
}

}  // namespace

std::u32string DecodeUtf8(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) out.push_back(NextCodePoint(s, &i));
  return out;
}

void AppendCodePoint(char32_t c, std::string* out) {
  if (c < 0x80) {
    out->push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out->push_back(static_cast<char>(0xc0 | (c >> 6)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3f)));
  } else if (c < 0x10000) {
    out->push_back(static_cast<char>(0xe0 | (c >> 12)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3f)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3f)));
  } else {
    out->push_back(static_cast<char>(0xf0 | (c >> 18)));
    out->push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3f)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3f)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3f)));
  }
}

std::string EncodeUtf8(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) AppendCodePoint(c, &out);
  return out;
}

size_t CodePointCount(std::string_view s) {
  size_t n = 0;
  for (char c : s) n += (static_cast<uint8_t>(c) & 0xc0) != 0x80;
  return n;
}

bool IsPyWhitespace(char32_t c) {
  if (c < 0x80) return c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f);
  return c == 0x85 || c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 ||
         c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

std::string PyStrip(std::string_view s, const std::optional<std::string>& chars, bool left,
                    bool right) {
  const std::u32string set = chars ? DecodeUtf8(*chars) : std::u32string();
  auto strip = [&](char32_t c) { return chars ? InChars(c, set) : IsPyWhitespace(c); };
  size_t begin = 0, end = s.size();
  if (left) {
    while (begin < end) {
      size_t next = begin;
      if (!strip(NextCodePoint(s, &next))) break;
      begin = next;
    }
  }
  if (right) {
    while (end > begin) {
      size_t start = end - 1;
      while (start > begin && (static_cast<uint8_t>(s[start]) & 0xc0) == 0x80) --start;
      size_t next = start;
      if (!strip(NextCodePoint(s, &next))) break;
      end = start;
    }
  }
  return std::string(s.substr(begin, end - begin));
}

std::vector<std::string> PySplit(std::string_view s, const std::optional<std::string>& sep,
                                 int64_t maxsplit) {
  std::vector<std::string> parts;
  if (sep) {
    size_t start = 0;
    while (maxsplit < 0 || static_cast<int64_t>(parts.size()) < maxsplit) {
      const size_t at = s.find(*sep, start);
      if (at == std::string_view::npos) break;
      parts.emplace_back(s.substr(start, at - start));
      start = at + sep->size();
    }
    parts.emplace_back(s.substr(start));
    return parts;
  }
  size_t i = 0;
  while (i < s.size()) {
    // Skip whitespace, then take a word (or, once maxsplit pieces exist, the whole rest).
    size_t next = i;
    while (i < s.size() && IsPyWhitespace(NextCodePoint(s, &next))) i = next;
    if (i >= s.size()) break;
    if (maxsplit >= 0 && static_cast<int64_t>(parts.size()) >= maxsplit) {
      parts.emplace_back(s.substr(i));
      break;
    }
    size_t end = i;
    next = i;
    while (end < s.size() && !IsPyWhitespace(NextCodePoint(s, &next))) end = next;
    parts.emplace_back(s.substr(i, end - i));
    i = end;
  }
  return parts;
}

std::vector<std::string> PyRSplit(std::string_view s, const std::optional<std::string>& sep,
                                  int64_t maxsplit) {
  if (maxsplit < 0) return PySplit(s, sep, maxsplit);
  std::vector<std::string> parts;
  if (sep) {
    size_t end = s.size();
    while (static_cast<int64_t>(parts.size()) < maxsplit) {
      if (end < sep->size()) break;
      const size_t at = s.rfind(*sep, end - sep->size());
      if (at == std::string_view::npos) break;
      parts.emplace_back(s.substr(at + sep->size(), end - at - sep->size()));
      end = at;
    }
    parts.emplace_back(s.substr(0, end));
  } else {
    std::u32string text = DecodeUtf8(s);
    size_t end = text.size();
    while (true) {
      while (end > 0 && IsPyWhitespace(text[end - 1])) --end;
      if (end == 0) break;
      if (static_cast<int64_t>(parts.size()) >= maxsplit) {
        parts.push_back(EncodeUtf8(text.substr(0, end)));
        break;
      }
      size_t start = end;
      while (start > 0 && !IsPyWhitespace(text[start - 1])) --start;
      parts.push_back(EncodeUtf8(text.substr(start, end - start)));
      end = start;
    }
  }
  return std::vector<std::string>(parts.rbegin(), parts.rend());
}

std::vector<std::string> PySplitLines(std::string_view s, bool keepends) {
  std::vector<std::string> lines;
  size_t start = 0, i = 0;
  while (i < s.size()) {
    size_t next = i;
    const char32_t c = NextCodePoint(s, &next);
    const bool boundary = c == '\n' || c == '\r' || c == 0x0b || c == 0x0c || c == 0x1c ||
                          c == 0x1d || c == 0x1e || c == 0x85 || c == 0x2028 || c == 0x2029;
    if (!boundary) {
      i = next;
      continue;
    }
    if (c == '\r' && next < s.size() && s[next] == '\n') ++next;
    lines.emplace_back(s.substr(start, (keepends ? next : i) - start));
    start = i = next;
  }
  if (start < s.size()) lines.emplace_back(s.substr(start));
  return lines;
}

std::string PyReplace(std::string_view s, std::string_view old, std::string_view replacement,
                      int64_t count) {
  std::string out;
  if (old.empty()) {
    int64_t done = 0;
    for (size_t i = 0; i <= s.size();) {
      if (count < 0 || done < count) {
        out.append(replacement);
        ++done;
      }
      if (i == s.size()) break;
      size_t next = i;
      NextCodePoint(s, &next);
      out.append(s.substr(i, next - i));
      i = next;
    }
    return out;
  }
  size_t start = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    const size_t at = s.find(old, start);
    if (at == std::string_view::npos) break;
    out.append(s.substr(start, at - start));
    out.append(replacement);
    start = at + old.size();
    ++done;
  }
  out.append(s.substr(start));
  return out;
}

int64_t PyFind(std::string_view s, std::string_view sub) {
  const size_t at = s.find(sub);
  return at == std::string_view::npos ? -1 : static_cast<int64_t>(CodePointCount(s.substr(0, at)));
}

int64_t PyRFind(std::string_view s, std::string_view sub) {
  const size_t at = s.rfind(sub);
  return at == std::string_view::npos ? -1 : static_cast<int64_t>(CodePointCount(s.substr(0, at)));
}

int64_t PyCount(std::string_view s, std::string_view sub) {
  if (sub.empty()) return static_cast<int64_t>(CodePointCount(s)) + 1;
  int64_t n = 0;
  for (size_t at = s.find(sub); at != std::string_view::npos; at = s.find(sub, at + sub.size())) {
    ++n;
  }
  return n;
}

std::string PyUpper(std::string_view s) { return MapCase(s, CaseOp::kUpper); }
std::string PyLower(std::string_view s) { return MapCase(s, CaseOp::kLower); }
std::string PyCapitalize(std::string_view s) { return MapCase(s, CaseOp::kCapitalize); }

std::string PyTitle(std::string_view s) {
  // A character is lowercased when the one before it is cased, else titlecased: so the text
  // falls into runs that each start after an uncased character, and each run is capitalized.
  std::string out;
  size_t run_start = 0;
  bool previous_cased = false;
  for (size_t i = 0; i < s.size();) {
    const size_t at = i;
    const char32_t c = NextCodePoint(s, &i);
    if (!previous_cased && at > run_start) {
      out += PyCapitalize(s.substr(run_start, at - run_start));
      run_start = at;
    }
    previous_cased = IsCased(c);
  }
  out += PyCapitalize(s.substr(run_start));
  return out;
}

std::string JinjaTitle(std::string_view s) {
  auto separator = [](char32_t c) {
    return IsPyWhitespace(c) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<';
  };
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    size_t next = i;
    const char32_t c = NextCodePoint(s, &next);
    if (separator(c)) {
      out.append(s.substr(i, next - i));
      i = next;
      continue;
    }
    size_t end = next;
    while (end < s.size()) {
      size_t after = end;
      if (separator(NextCodePoint(s, &after))) break;
      end = after;
    }
    out += PyUpper(s.substr(i, next - i));
    out += PyLower(s.substr(next, end - next));
    i = end;
  }
  return out;
}

bool PyIsDigit(std::string_view s) { return AllOf(s, IsPyDigitChar); }
bool PyIsAlpha(std::string_view s) { return AllOf(s, IsPyAlphaChar); }
bool PyIsAlnum(std::string_view s) { return AllOf(s, IsPyAlnumChar); }
bool PyIsSpace(std::string_view s) { return AllOf(s, IsPyWhitespace); }
bool PyIsLower(std::string_view s) { return CasedAll(s, true); }
bool PyIsUpper(std::string_view s) { return CasedAll(s, false); }

int64_t PyWordCount(std::string_view s) {
  int64_t words = 0;
  bool in_word = false;
  for (size_t i = 0; i < s.size();) {
    const char32_t c = NextCodePoint(s, &i);
    const bool word = c == '_' || IsPyAlnumChar(c) ||
                      (c >= 0x80 && (U_GET_GC_MASK(static_cast<UChar32>(c)) & U_GC_M_MASK) != 0);
    if (word && !in_word) ++words;
    in_word = word;
  }
  return words;
}

void AppendPyStrRepr(std::string_view s, std::string* out) {
  const bool has_single = s.find('\'') != std::string_view::npos;
  const bool has_double = s.find('"') != std::string_view::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  out->push_back(quote);
  for (size_t i = 0; i < s.size();) {
    const size_t at = i;
    const char32_t c = NextCodePoint(s, &i);
    if (c == static_cast<char32_t>(quote) || c == '\\') {
      out->push_back('\\');
      out->push_back(static_cast<char>(c));
    } else if (c == '\n') {
      out->append("\\n");
    } else if (c == '\r') {
      out->append("\\r");
    } else if (c == '\t') {
      out->append("\\t");
    } else if (IsPyPrintable(c)) {
      out->append(s.substr(at, i - at));
    } else {
      char buf[16];
      if (c < 0x100) {
        std::snprintf(buf, sizeof(buf), "\\x%02x", static_cast<unsigned>(c));
      } else if (c < 0x10000) {
        std::snprintf(buf, sizeof(buf), "\\u%04x", static_cast<unsigned>(c));
      } else {
        std::snprintf(buf, sizeof(buf), "\\U%08x", static_cast<unsigned>(c));
      }
      out->append(buf);
    }
  }
  out->push_back(quote);
}

}  // namespace mamba::tokenizer::jinja
