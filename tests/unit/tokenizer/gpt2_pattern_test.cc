#include "engine/tokenizer/gpt2_pattern.h"

#include <string>
#include <string_view>
#include <vector>

#include "gtest/gtest.h"

namespace mamba::tokenizer::internal {
namespace {

std::vector<std::string> Pieces(std::string_view text) {
  std::vector<std::string> pieces;
  for (size_t pos = 0; pos < text.size();) {
    const size_t end = Gpt2MatchEnd(text, pos);
    EXPECT_GT(end, pos);
    pieces.emplace_back(text.substr(pos, end - pos));
    pos = end;
  }
  return pieces;
}

struct PatternCase {
  std::string text;
  std::vector<std::string> pieces;
};

// Expectations worked out by hand from the regex (leftmost-first alternation, backtracking
// lookahead), for the cases where engines or readers tend to differ.
TEST(Gpt2PatternTest, Table) {
  const PatternCase cases[] = {
      {"Hello world", {"Hello", " world"}},
      {"  hello", {" ", " hello"}},
      {"a  b", {"a", " ", " b"}},
      {"x   ", {"x", "   "}},
      {"  ", {"  "}},
      {"a\t\tb", {"a", "\t", "\t", "b"}},
      {"\n\nx", {"\n", "\n", "x"}},
      {"a \nb", {"a", " ", "\n", "b"}},
      {"it's", {"it", "'s"}},
      {"IT'S", {"IT", "'", "S"}},
      {"don't we'll've", {"don", "'t", " we", "'ll", "'ve"}},
      {"'re'", {"'re", "'"}},
      {"''s", {"''", "s"}},
      {" 's", {" '", "s"}},
      {"'", {"'"}},
      {"hello!!!", {"hello", "!!!"}},
      {" !!!x", {" !!!", "x"}},
      {"123abc 45", {"123", "abc", " 45"}},
      {"x\xc2\xb2", {"x", "\xc2\xb2"}},                            // U+00B2 is No: a number
      {"\xe2\x85\xab\xe2\x85\xab", {"\xe2\x85\xab\xe2\x85\xab"}},  // U+216B is Nl
      {"a\xc2\xa0"
       "b",
       {"a", "\xc2\xa0", "b"}},  // U+00A0 is \s, not ' '
      {"a\xc2\x85"
       "b",
       {"a", "\xc2\x85", "b"}},                          // U+0085 is \s
      {"a\xe2\x80\xa8", {"a", "\xe2\x80\xa8"}},          // U+2028 is \s
      {"a\xe3\x80\x80 b", {"a", "\xe3\x80\x80", " b"}},  // U+3000 then " b"
      {"\xc3\xa9t\xc3\xa9", {"\xc3\xa9t\xc3\xa9"}},      // composed: all letters
      {"e\xcc\x81", {"e", "\xcc\x81"}},                  // U+0301 is Mn: other
      {" \xcc\x81x", {" \xcc\x81", "x"}},
      {"\xe4\xbd\xa0\xe5\xa5\xbd!", {"\xe4\xbd\xa0\xe5\xa5\xbd", "!"}},
      {" \xf0\x9f\x8d\x95\xf0\x9f\x8d\x95", {" \xf0\x9f\x8d\x95\xf0\x9f\x8d\x95"}},
      {"\x1f"
       "a",
       {"\x1f", "a"}},  // U+001F is not White_Space
      {"x\x0b\x0cy", {"x", "\x0b", "\x0c", "y"}},
  };
  for (const PatternCase& c : cases) {
    EXPECT_EQ(Pieces(c.text), c.pieces) << "text: " << c.text;
  }
}

}  // namespace
}  // namespace mamba::tokenizer::internal
