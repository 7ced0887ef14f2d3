#include "engine/tokenizer/jinja_lexer.h"

#include <algorithm>
#include <cstdlib>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/jinja_text.h"
#include "engine/tokenizer/jinja_value.h"
#include "engine/tokenizer/tokenizer.h"

namespace mamba::tokenizer::jinja {
namespace {

enum class TagKind { kVariable, kBlock, kComment };

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsNameStart(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool IsNameChar(char c) { return IsNameStart(c) || IsDigit(c); }

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

class Lexer {
 public:
  explicit Lexer(std::string source) : src_(std::move(source)) {
    line_starts_.push_back(0);
    for (size_t i = 0; i < src_.size(); ++i) {
      if (src_[i] == '\n') line_starts_.push_back(i + 1);
    }
  }

  absl::StatusOr<std::vector<Token>> Run() {
    size_t pos = 0;
    bool line_starting = true;
    while (pos < src_.size()) {
      const size_t tag = FindTagStart(pos);
      std::string_view text(src_.data() + pos, tag - pos);
      if (tag == src_.size()) {
        EmitText(text, pos);
        break;
      }
      const TagKind kind = src_[tag + 1] == '{'   ? TagKind::kVariable
                           : src_[tag + 1] == '%' ? TagKind::kBlock
                                                  : TagKind::kComment;
      size_t body = tag + 2;
      char sign = 0;
      if (body < src_.size() && (src_[body] == '-' || src_[body] == '+')) sign = src_[body++];
      if (sign == '-') {
        text = RStripWhitespace(text);
      } else if (sign != '+' && kind != TagKind::kVariable) {
        // lstrip_blocks: spaces before the tag, when only they stand between it and the start
        // of its line, go.
        const size_t newline = text.rfind('\n');
        const size_t line_start = newline == std::string_view::npos ? 0 : newline + 1;
        if ((line_start > 0 || line_starting) && line_start < text.size() &&
            AllWhitespace(text.substr(line_start))) {
          text = text.substr(0, line_start);
        }
      }
      EmitText(text, pos);
      absl::StatusOr<size_t> end;
      if (kind == TagKind::kComment) {
        end = SkipComment(tag, body);
      } else if (size_t raw_end = MatchRawBegin(body); kind == TagKind::kBlock && raw_end != 0) {
        end = LexRaw(tag, raw_end);
      } else {
        end = LexTag(kind, tag, body);
      }
      if (!end.ok()) return end.status();
      line_starting = *end > 0 && src_[*end - 1] == '\n';
      pos = *end;
    }
    tokens_.push_back(Make(Token::Type::kEnd, src_.size()));
    return std::move(tokens_);
  }

 private:
  Token Make(Token::Type type, size_t offset) const {
    Token t;
    t.type = type;
    const auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), offset) - 1;
    t.line = static_cast<int>(it - line_starts_.begin()) + 1;
    t.column =
        static_cast<int>(CodePointCount(std::string_view(src_).substr(*it, offset - *it))) + 1;
    return t;
  }

  absl::Status ErrorAt(size_t offset, std::string_view message) const {
    const Token t = Make(Token::Type::kEnd, offset);
    return absl::InvalidArgumentError(absl::StrCat(Where(t.line, t.column), ": ", AsAbsl(message)));
  }

  void EmitText(std::string_view text, size_t offset) {
    if (text.empty()) return;
    Token t = Make(Token::Type::kText, offset);
    t.text = std::string(text);
    tokens_.push_back(std::move(t));
  }

  size_t FindTagStart(size_t pos) const {
    for (size_t i = src_.find('{', pos); i != std::string::npos; i = src_.find('{', i + 1)) {
      if (i + 1 < src_.size() && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) {
        return i;
      }
    }
    return src_.size();
  }

  // Length of the whitespace (Python's \s) at src_[i], in bytes.
  size_t WhitespaceAt(size_t i) const {
    size_t j = i;
    while (j < src_.size()) {
      const auto b = static_cast<uint8_t>(src_[j]);
      if (b < 0x80) {
        if (!IsPyWhitespace(b)) break;
        ++j;
        continue;
      }
      const size_t len = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : 2;
      const std::u32string c = DecodeUtf8(std::string_view(src_).substr(j, len));
      if (c.empty() || !IsPyWhitespace(c[0])) break;
      j += len;
    }
    return j - i;
  }

  static bool AllWhitespace(std::string_view s) {
    for (char32_t c : DecodeUtf8(s)) {
      if (!IsPyWhitespace(c)) return false;
    }
    return true;
  }

  static std::string_view RStripWhitespace(std::string_view s) {
    const std::u32string cps = DecodeUtf8(s);
    size_t keep = cps.size();
    while (keep > 0 && IsPyWhitespace(cps[keep - 1])) --keep;
    size_t bytes = 0;
    for (size_t i = 0; i < keep; ++i) {
      const char32_t c = cps[i];
      bytes += c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
    }
    return s.substr(0, bytes);
  }

  bool StartsWith(size_t i, std::string_view s) const { return src_.compare(i, s.size(), s) == 0; }

  // The end of a block tag's closing "%}" at src_[i] ("+%}", "-%}" plus whitespace, or "%}"
  // plus one newline), or 0 when none is there.
  size_t MatchBlockEnd(size_t i) const {
    if (StartsWith(i, "+%}")) return i + 3;
    if (StartsWith(i, "-%}")) return i + 3 + WhitespaceAt(i + 3);
    if (StartsWith(i, "%}")) return i + 2 + (i + 2 < src_.size() && src_[i + 2] == '\n');
    return 0;
  }

  // After "{%" and its sign: the end of "raw %}" when this is a raw block, else 0.
  size_t MatchRawBegin(size_t body) const {
    size_t i = body + WhitespaceAt(body);
    if (!StartsWith(i, "raw")) return 0;
    i += 3;
    if (i < src_.size() && IsNameChar(src_[i])) return 0;
    i += WhitespaceAt(i);
    if (StartsWith(i, "-%}")) return i + 3 + WhitespaceAt(i + 3);
    if (StartsWith(i, "%}")) return i + 2;  // no trim_blocks newline after raw's opening tag
    return 0;
  }

  absl::StatusOr<size_t> SkipComment(size_t tag, size_t body) const {
    for (size_t i = body; i + 1 < src_.size(); ++i) {
      if (StartsWith(i, "+#}")) return i + 3;
      if (StartsWith(i, "-#}")) return i + 3 + WhitespaceAt(i + 3);
      if (StartsWith(i, "#}")) return i + 2 + (i + 2 < src_.size() && src_[i + 2] == '\n');
    }
    return ErrorAt(tag, "missing end of comment tag '#}'");
  }

  // The text of a raw block, up to its {% endraw %}, with the same whitespace control.
  absl::StatusOr<size_t> LexRaw(size_t tag, size_t content) {
    for (size_t i = src_.find("{%", content); i != std::string::npos; i = src_.find("{%", i + 1)) {
      size_t j = i + 2;
      char sign = 0;
      if (j < src_.size() && (src_[j] == '-' || src_[j] == '+')) sign = src_[j++];
      j += WhitespaceAt(j);
      if (!StartsWith(j, "endraw")) continue;
      j += 6;
      j += WhitespaceAt(j);
      const size_t end = MatchBlockEnd(j);
      if (end == 0) continue;
      std::string_view text(src_.data() + content, i - content);
      if (sign == '-') {
        text = RStripWhitespace(text);
      } else if (sign != '+') {
        const size_t newline = text.rfind('\n');
        const size_t line_start = newline == std::string_view::npos ? 0 : newline + 1;
        if (line_start > 0 && line_start < text.size() && AllWhitespace(text.substr(line_start))) {
          text = text.substr(0, line_start);
        }
      }
      EmitText(text, content);
      return end;
    }
    return ErrorAt(tag, "missing {% endraw %} for this {% raw %}");
  }

  absl::StatusOr<size_t> LexTag(TagKind kind, size_t tag, size_t body) {
    tokens_.push_back(Make(
        kind == TagKind::kBlock ? Token::Type::kBlockBegin : Token::Type::kVariableBegin, tag));
    std::vector<std::pair<char, size_t>> open;  // brackets awaiting their closing one
    size_t i = body;
    while (true) {
      i += WhitespaceAt(i);
      if (open.empty()) {
        size_t end = 0;
        if (kind == TagKind::kBlock) {
          end = MatchBlockEnd(i);
        } else if (StartsWith(i, "-}}")) {
          end = i + 3 + WhitespaceAt(i + 3);
        } else if (StartsWith(i, "}}")) {
          end = i + 2;
        }
        if (end != 0) {
          tokens_.push_back(Make(
              kind == TagKind::kBlock ? Token::Type::kBlockEnd : Token::Type::kVariableEnd, i));
          return end;
        }
      }
      if (i >= src_.size()) {
        if (!open.empty()) {
          return ErrorAt(open.back().second,
                         absl::StrCat("unclosed '", std::string(1, open.back().first), "'"));
        }
        return ErrorAt(tag, kind == TagKind::kBlock ? "missing end of block tag '%}'"
                                                    : "missing end of variable tag '}}'");
      }
      absl::StatusOr<size_t> next = LexExpressionToken(i, &open);
      if (!next.ok()) return next.status();
      i = *next;
    }
  }

  // End of a run of digits with single underscores between them at src_[i], or i.
  size_t DigitRun(size_t i) const {
    if (i >= src_.size() || !IsDigit(src_[i])) return i;
    size_t j = i + 1;
    while (j < src_.size()) {
      if (IsDigit(src_[j])) {
        ++j;
      } else if (src_[j] == '_' && j + 1 < src_.size() && IsDigit(src_[j + 1])) {
        j += 2;
      } else {
        break;
      }
    }
    return j;
  }

  absl::StatusOr<size_t> LexNumber(size_t i) {
    const size_t int_end = DigitRun(i);
    size_t end = int_end;
    bool is_float = false;
    if (i == 0 || src_[i - 1] != '.') {  // "a.0.1" is two lookups, not a float
      if (end + 1 < src_.size() && src_[end] == '.' && IsDigit(src_[end + 1])) {
        end = DigitRun(end + 1);
        is_float = true;
      }
      if (end < src_.size() && (src_[end] == 'e' || src_[end] == 'E')) {
        size_t e = end + 1;
        if (e < src_.size() && (src_[e] == '+' || src_[e] == '-')) ++e;
        const size_t exp_end = DigitRun(e);
        if (exp_end > e) {
          end = exp_end;
          is_float = true;
        }
      }
    }
    std::string digits;
    if (!is_float && src_[i] == '0' && i + 1 < src_.size() &&
        std::string_view("bBoOxX").find(src_[i + 1]) != std::string_view::npos) {
      const int base = (src_[i + 1] | 0x20) == 'b' ? 2 : (src_[i + 1] | 0x20) == 'o' ? 8 : 16;
      end = i + 2;
      while (end < src_.size() &&
             (src_[end] == '_' || (HexValue(src_[end]) >= 0 && HexValue(src_[end]) < base))) {
        if (src_[end] != '_') digits.push_back(src_[end]);
        ++end;
      }
      return PushInteger(i, digits, base, end);
    }
    for (size_t k = i; k < end; ++k) {
      if (src_[k] != '_') digits.push_back(src_[k]);
    }
    if (is_float) {
      Token t = Make(Token::Type::kFloat, i);
      t.float_value = std::strtod(digits.c_str(), nullptr);
      tokens_.push_back(std::move(t));
      return end;
    }
    return PushInteger(i, digits, 10, end);
  }

  absl::StatusOr<size_t> PushInteger(size_t at, const std::string& digits, int base, size_t end) {
    if (digits.empty()) return ErrorAt(at, "malformed integer literal");
    Token t = Make(Token::Type::kInteger, at);
    uint64_t v = 0;
    for (char c : digits) {
      const auto d = static_cast<uint64_t>(HexValue(c));
      if (v > (static_cast<uint64_t>(INT64_MAX) - d) / static_cast<uint64_t>(base)) {
        return ErrorAt(at, "integer literal does not fit in 64 bits");
      }
      v = v * static_cast<uint64_t>(base) + d;
    }
    t.int_value = static_cast<int64_t>(v);
    tokens_.push_back(std::move(t));
    return end;
  }

  // Decodes Python's escapes in a string literal's body (jinja2 decodes with "unicode-escape").
  absl::StatusOr<std::string> DecodeString(size_t at, std::string_view body) const {
    std::string out;
    for (size_t i = 0; i < body.size(); ++i) {
      if (body[i] != '\\' || i + 1 >= body.size()) {
        out.push_back(body[i]);
        continue;
      }
      const char c = body[++i];
      switch (c) {
        case '\n':
          break;  // a backslash before a newline continues the line
        case '\\':
        case '\'':
        case '"':
          out.push_back(c);
          break;
        case 'a':
          out.push_back('\a');
          break;
        case 'b':
          out.push_back('\b');
          break;
        case 'f':
          out.push_back('\f');
          break;
        case 'n':
          out.push_back('\n');
          break;
        case 'r':
          out.push_back('\r');
          break;
        case 't':
          out.push_back('\t');
          break;
        case 'v':
          out.push_back('\v');
          break;
        case 'x':
        case 'u':
        case 'U': {
          const size_t n = c == 'x' ? 2 : c == 'u' ? 4 : 8;
          char32_t cp = 0;
          for (size_t k = 1; k <= n; ++k) {
            const int h = i + k < body.size() ? HexValue(body[i + k]) : -1;
            if (h < 0)
              return ErrorAt(at,
                             absl::StrCat("malformed \\", std::string(1, c), " escape in string"));
            cp = cp * 16 + static_cast<char32_t>(h);
          }
          if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
            return ErrorAt(at, "string escape is not a Unicode scalar value");
          }
          AppendCodePoint(cp, &out);
          i += n;
          break;
        }
        default:
          if (c >= '0' && c <= '7') {
            char32_t cp = static_cast<char32_t>(c - '0');
            for (int k = 0;
                 k < 2 && i + 1 < body.size() && body[i + 1] >= '0' && body[i + 1] <= '7'; ++k) {
              cp = cp * 8 + static_cast<char32_t>(body[++i] - '0');
            }
            AppendCodePoint(cp, &out);
          } else if (c == 'N') {
            return ErrorAt(at, "\\N{...} escapes are not supported");
          } else {
            out.push_back('\\');  // Python keeps unknown escapes as written
            out.push_back(c);
          }
      }
    }
    return out;
  }

  absl::StatusOr<size_t> LexExpressionToken(size_t i, std::vector<std::pair<char, size_t>>* open) {
    const char c = src_[i];
    if (IsDigit(c)) return LexNumber(i);
    if (IsNameStart(c)) {
      size_t end = i + 1;
      while (end < src_.size() && IsNameChar(src_[end])) ++end;
      Token t = Make(Token::Type::kName, i);
      t.text = src_.substr(i, end - i);
      tokens_.push_back(std::move(t));
      return end;
    }
    if (c == '\'' || c == '"') {
      size_t end = i + 1;
      while (end < src_.size() && src_[end] != c) end += src_[end] == '\\' ? 2 : 1;
      if (end >= src_.size()) return ErrorAt(i, "unterminated string literal");
      absl::StatusOr<std::string> value =
          DecodeString(i, std::string_view(src_).substr(i + 1, end - i - 1));
      if (!value.ok()) return value.status();
      Token t = Make(Token::Type::kString, i);
      t.text = *std::move(value);
      tokens_.push_back(std::move(t));
      return end + 1;
    }
    static constexpr std::string_view kTwoChar[] = {"//", "**", "==", "!=", ">=", "<="};
    for (std::string_view op : kTwoChar) {
      if (StartsWith(i, op)) {
        Token t = Make(Token::Type::kOperator, i);
        t.text = std::string(op);
        tokens_.push_back(std::move(t));
        return i + 2;
      }
    }
    if (std::string_view("+-/*%~[](){}><=.:|,").find(c) == std::string_view::npos) {
      size_t len = 1;
      while (i + len < src_.size() && (static_cast<uint8_t>(src_[i + len]) & 0xc0) == 0x80) ++len;
      return ErrorAt(i, absl::StrCat("unexpected character '", src_.substr(i, len), "'"));
    }
    if (c == '(' || c == '[' || c == '{') {
      open->emplace_back(c, i);
    } else if (c == ')' || c == ']' || c == '}') {
      const char want = c == ')' ? '(' : c == ']' ? '[' : '{';
      if (open->empty()) return ErrorAt(i, absl::StrCat("unexpected '", std::string(1, c), "'"));
      if (open->back().first != want) {
        const char expected = open->back().first == '('   ? ')'
                              : open->back().first == '[' ? ']'
                                                          : '}';
        return ErrorAt(i, absl::StrCat("unexpected '", std::string(1, c), "', expected '",
                                       std::string(1, expected), "'"));
      }
      open->pop_back();
    }
    Token t = Make(Token::Type::kOperator, i);
    t.text = std::string(1, c);
    tokens_.push_back(std::move(t));
    return i + 1;
  }

  const std::string src_;
  std::vector<size_t> line_starts_;
  std::vector<Token> tokens_;
};

}  // namespace

std::string Where(int line, int column) { return absl::StrCat("line ", line, ", column ", column); }

absl::StatusOr<std::vector<Token>> Tokenize(std::string_view source) {
  if (!IsValidUtf8(source)) {
    return absl::InvalidArgumentError(
        absl::StrCat("template is not valid UTF-8 (first bad byte at offset ",
                     FirstInvalidUtf8Byte(source), ")"));
  }
  std::string normalized;
  normalized.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      normalized.push_back('\n');
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      normalized.push_back(source[i]);
    }
  }
  if (!normalized.empty() && normalized.back() == '\n') normalized.pop_back();
  return Lexer(std::move(normalized)).Run();
}

}  // namespace mamba::tokenizer::jinja
