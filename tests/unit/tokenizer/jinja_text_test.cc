// Python's str semantics on UTF-8 (jinja_text.h), each function against what CPython 3.11
// returns for the same input.
#include "engine/tokenizer/jinja_text.h"

#include <optional>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mamba {
namespace {

using ::testing::ElementsAre;
namespace jinja = tokenizer::jinja;

TEST(JinjaTextTest, CodePoints) {
  EXPECT_EQ(jinja::CodePointCount("héllo 😀"), 7u);
  EXPECT_EQ(jinja::EncodeUtf8(jinja::DecodeUtf8("aé€😀")), "aé€😀");
  EXPECT_EQ(jinja::DecodeUtf8("é€😀"), (std::u32string{0xe9, 0x20ac, 0x1f600}));
}

TEST(JinjaTextTest, Whitespace) {
  for (char32_t c : {U' ', U'\t', U'\n', U'\r', U'\v', U'\f', U'\x1c', U'\x1f', U'\x85', U'\xa0',
                     U'\u2003', U'\u2028', U'\u3000'}) {
    EXPECT_TRUE(jinja::IsPyWhitespace(c)) << static_cast<int>(c);
  }
  for (char32_t c : {U'a', U'\x1b', U'\u200b', U'\ufeff'}) {
    EXPECT_FALSE(jinja::IsPyWhitespace(c)) << static_cast<int>(c);
  }
}

TEST(JinjaTextTest, Strip) {
  struct Case {
    const char* in;
    std::optional<std::string> chars;
    bool left, right;
    const char* want;
  };
  const Case cases[] = {
      {"  a b \n", std::nullopt, true, true, "a b"},
      {"  a b \n", std::nullopt, true, false, "a b \n"},
      {"  a b \n", std::nullopt, false, true, "  a b"},
      {"\u3000x\u00a0", std::nullopt, true, true, "x"},
      {"xxaxx", "x", true, true, "a"},
      {"éaé", "é", true, true, "a"},
      {"\n\nthink\n", "\n", true, true, "think"},
      {"   ", std::nullopt, true, true, ""},
      {"abc", "", true, true, "abc"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(jinja::PyStrip(c.in, c.chars, c.left, c.right), c.want) << c.in;
  }
}

TEST(JinjaTextTest, Split) {
  EXPECT_THAT(jinja::PySplit(" a  b\tc\n", std::nullopt, -1), ElementsAre("a", "b", "c"));
  EXPECT_THAT(jinja::PySplit(" a  b  c  ", std::nullopt, 1), ElementsAre("a", "b  c  "));
  EXPECT_THAT(jinja::PySplit("", std::nullopt, -1), ElementsAre());
  EXPECT_THAT(jinja::PySplit("a,b,,c", std::string(","), -1), ElementsAre("a", "b", "", "c"));
  EXPECT_THAT(jinja::PySplit("a,b,c", std::string(","), 1), ElementsAre("a", "b,c"));
  EXPECT_THAT(jinja::PySplit("", std::string(","), -1), ElementsAre(""));
  EXPECT_THAT(jinja::PySplit("x</think>y", std::string("</think>"), -1), ElementsAre("x", "y"));
  EXPECT_THAT(jinja::PyRSplit("a b c", std::string(" "), 1), ElementsAre("a b", "c"));
  EXPECT_THAT(jinja::PyRSplit("  a b  c ", std::nullopt, 1), ElementsAre("  a b", "c"));
  EXPECT_THAT(jinja::PySplitLines("a\nb\r\nc\rd\n", false), ElementsAre("a", "b", "c", "d"));
  EXPECT_THAT(jinja::PySplitLines("a\n\nb", true), ElementsAre("a\n", "\n", "b"));
  EXPECT_THAT(jinja::PySplitLines("a\u2028b", false), ElementsAre("a", "b"));
}

TEST(JinjaTextTest, ReplaceFindCount) {
  EXPECT_EQ(jinja::PyReplace("banana", "a", "o", -1), "bonono");
  EXPECT_EQ(jinja::PyReplace("banana", "a", "o", 2), "bonona");
  EXPECT_EQ(jinja::PyReplace("ab", "", "-", -1), "-a-b-");
  EXPECT_EQ(jinja::PyReplace("ab", "", "-", 2), "-a-b");
  EXPECT_EQ(jinja::PyReplace("éé", "", "|", -1), "|é|é|");
  EXPECT_EQ(jinja::PyFind("héllo", "l"), 2);
  EXPECT_EQ(jinja::PyRFind("héllo", "l"), 3);
  EXPECT_EQ(jinja::PyFind("abc", "z"), -1);
  EXPECT_EQ(jinja::PyCount("aaaa", "aa"), 2);
  EXPECT_EQ(jinja::PyCount("abc", ""), 4);
}

TEST(JinjaTextTest, CaseMapping) {
  struct Case {
    const char* in;
    const char* upper;
    const char* lower;
    const char* title;
    const char* capitalize;
    const char* jinja_title;
  };
  const Case cases[] = {
      {"hello wORLD", "HELLO WORLD", "hello world", "Hello World", "Hello world", "Hello World"},
      {"they're bill's", "THEY'RE BILL'S", "they're bill's", "They'Re Bill'S", "They're bill's",
       "They're Bill's"},
      {"x-ray (test) [a] <b> {c}", "X-RAY (TEST) [A] <B> {C}", "x-ray (test) [a] <b> {c}",
       "X-Ray (Test) [A] <B> {C}", "X-ray (test) [a] <b> {c}", "X-Ray (Test) [A] <B> {C}"},
      {"straße", "STRASSE", "straße", "Straße", "Straße", "Straße"},
      {"ǆemal", "ǄEMAL", "ǆemal", "ǅemal", "ǅemal", "Ǆemal"},
      {"ÉCOLE été", "ÉCOLE ÉTÉ", "école été", "École Été", "École été", "École Été"},
      {"1st place", "1ST PLACE", "1st place", "1St Place", "1st place", "1st Place"},
      {"", "", "", "", "", ""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.in);
    EXPECT_EQ(jinja::PyUpper(c.in), c.upper);
    EXPECT_EQ(jinja::PyLower(c.in), c.lower);
    EXPECT_EQ(jinja::PyTitle(c.in), c.title);
    EXPECT_EQ(jinja::PyCapitalize(c.in), c.capitalize);
    EXPECT_EQ(jinja::JinjaTitle(c.in), c.jinja_title);
  }
}

TEST(JinjaTextTest, Predicates) {
  EXPECT_TRUE(jinja::PyIsDigit("0123"));
  EXPECT_TRUE(jinja::PyIsDigit("²"));
  EXPECT_FALSE(jinja::PyIsDigit(""));
  EXPECT_FALSE(jinja::PyIsDigit("1.5"));
  EXPECT_TRUE(jinja::PyIsAlpha("héllo"));
  EXPECT_FALSE(jinja::PyIsAlpha("a1"));
  EXPECT_TRUE(jinja::PyIsAlnum("a1½"));
  EXPECT_TRUE(jinja::PyIsSpace(" \t\u3000"));
  EXPECT_TRUE(jinja::PyIsLower("abc1"));
  EXPECT_FALSE(jinja::PyIsLower("123"));
  EXPECT_TRUE(jinja::PyIsUpper("ABC 1"));
  EXPECT_FALSE(jinja::PyIsUpper("AbC"));
  EXPECT_EQ(jinja::PyWordCount("Hello, big_world! 42x"), 3);
}

TEST(JinjaTextTest, Repr) {
  struct Case {
    const char* in;
    const char* want;
  };
  const Case cases[] = {
      {"abc", "'abc'"},
      {"it's", "\"it's\""},
      {"both ' and \"", "'both \\' and \"'"},
      {"a\nb\tc\\", "'a\\nb\\tc\\\\'"},
      {"\x01\x7f", "'\\x01\\x7f'"},
      {"é😀", "'é😀'"},
      {"\u00a0\u2028\u200b", "'\\xa0\\u2028\\u200b'"},
  };
  for (const Case& c : cases) {
    std::string out;
    jinja::AppendPyStrRepr(c.in, &out);
    EXPECT_EQ(out, c.want) << c.in;
  }
}

}  // namespace
}  // namespace mamba
