// Python's str semantics on UTF-8 text, for the Jinja renderer. Chat templates are written
// against Python strings, so length, indexing and slicing count code points, and case mapping,
// stripping and splitting follow Python's Unicode rules (str.isspace for whitespace, full case
// mappings such as "ß".upper() == "SS"). Every function takes valid UTF-8 and returns valid
// UTF-8; the renderer refuses anything else at its boundary.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mamba::tokenizer::jinja {

std::u32string DecodeUtf8(std::string_view s);
std::string EncodeUtf8(std::u32string_view s);
void AppendCodePoint(char32_t c, std::string* out);
size_t CodePointCount(std::string_view s);

// Python's str.isspace() for one code point (also what `\s` matches in Python's re).
bool IsPyWhitespace(char32_t c);

// str.strip / lstrip / rstrip: removes whitespace (no `chars`) or any code point of `chars`.
std::string PyStrip(std::string_view s, const std::optional<std::string>& chars, bool left,
                    bool right);
// str.split / rsplit. Without `sep`, splits on runs of whitespace and drops empty pieces; with
// it, on each occurrence (`sep` must not be empty). maxsplit < 0: no limit.
std::vector<std::string> PySplit(std::string_view s, const std::optional<std::string>& sep,
                                 int64_t maxsplit);
std::vector<std::string> PyRSplit(std::string_view s, const std::optional<std::string>& sep,
                                  int64_t maxsplit);
// str.splitlines(keepends): Python's line boundaries (\n \r \r\n \v \f \x1c-\x1e \x85 \u2028
// \u2029); a final line break does not start an empty line.
std::vector<std::string> PySplitLines(std::string_view s, bool keepends);
// str.replace(old, new, count); an empty `old` inserts `replacement` around every code point.
// count < 0: all.
std::string PyReplace(std::string_view s, std::string_view old, std::string_view replacement,
                      int64_t count);
// str.find / rfind / count, in code points (-1 when absent).
int64_t PyFind(std::string_view s, std::string_view sub);
int64_t PyRFind(std::string_view s, std::string_view sub);
int64_t PyCount(std::string_view s, std::string_view sub);

std::string PyUpper(std::string_view s);
std::string PyLower(std::string_view s);
// str.title(): a cased character after an uncased one is titlecased, others lowercased.
std::string PyTitle(std::string_view s);
// str.capitalize(): the first character titlecased, the rest lowercased.
std::string PyCapitalize(std::string_view s);
// jinja2's `title` filter (not str.title): each word, split at runs of whitespace and
// "-({[<", gets its first character uppercased and the rest lowercased.
std::string JinjaTitle(std::string_view s);

// str.isdigit / isalpha / isalnum / isspace / islower / isupper.
bool PyIsDigit(std::string_view s);
bool PyIsAlpha(std::string_view s);
bool PyIsAlnum(std::string_view s);
bool PyIsSpace(std::string_view s);
bool PyIsLower(std::string_view s);
bool PyIsUpper(std::string_view s);
// Runs of word characters (Python re's \w+), as jinja2's `wordcount` counts them.
int64_t PyWordCount(std::string_view s);

// repr() of a str: quoted with ' (or " when the text has ' and no "), escapes as Python's.
void AppendPyStrRepr(std::string_view s, std::string* out);

}  // namespace mamba::tokenizer::jinja
