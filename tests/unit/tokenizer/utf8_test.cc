#include <string>
#include <string_view>

#include "engine/tokenizer/tokenizer.h"
#include "gtest/gtest.h"

namespace mamba {
namespace {

struct Utf8Case {
  std::string_view name;
  std::string bytes;
  bool valid;
  size_t first_invalid;    // FirstInvalidUtf8Byte
  size_t complete_prefix;  // CompleteUtf8Prefix
  std::string lossy;       // ToValidUtf8
};

TEST(Utf8Test, Table) {
  const std::string fffd = "\xef\xbf\xbd";
  const Utf8Case cases[] = {
      {"empty", "", true, 0, 0, ""},
      {"ascii", "abc", true, 3, 3, "abc"},
      {"two_byte", "\xc3\xa9", true, 2, 2, "\xc3\xa9"},
      {"three_byte", "\xe2\x82\xac", true, 3, 3, "\xe2\x82\xac"},
      {"four_byte", "\xf0\x9f\x98\x80", true, 4, 4, "\xf0\x9f\x98\x80"},
      {"max_code_point", "\xf4\x8f\xbf\xbf", true, 4, 4, "\xf4\x8f\xbf\xbf"},
      {"truncated_two", "a\xc3", false, 1, 1, "a" + fffd},
      {"truncated_three", "a\xe2\x82", false, 1, 1, "a" + fffd},
      {"truncated_four", "\xf0\x9f\x98", false, 0, 0, fffd},
      {"lone_continuation",
       "a\x80"
       "b",
       false, 1, 3, "a" + fffd + "b"},
      {"overlong_two", "\xc0\x80", false, 0, 2, fffd + fffd},
      {"overlong_three", "\xe0\x80\x80", false, 0, 3, fffd + fffd + fffd},
      {"overlong_four", "\xf0\x80\x80\x80", false, 0, 4, fffd + fffd + fffd + fffd},
      {"surrogate", "\xed\xa0\x80", false, 0, 3, fffd + fffd + fffd},
      {"above_max", "\xf4\x90\x80\x80", false, 0, 4, fffd + fffd + fffd + fffd},
      {"invalid_lead_f5", "\xf5\x80", false, 0, 2, fffd + fffd},
      {"byte_ff", "x\xff", false, 1, 2, "x" + fffd},
      // One U+FFFD for the maximal valid-looking prefix, then the next byte on its own.
      {"cut_by_ascii",
       "\xe2\x82"
       "A",
       false, 0, 3, fffd + "A"},
      {"cut_by_lead", "\xe2\xe2\x82\xac", false, 0, 4, fffd + "\xe2\x82\xac"},
      {"nul_is_valid", std::string("a\0b", 3), true, 3, 3, std::string("a\0b", 3)},
      {"valid_then_truncated", "\xc3\xa9\xe4\xbd", false, 2, 2, "\xc3\xa9" + fffd},
      {"long_ascii_then_bad", "0123456789abcdef\x80", false, 16, 17, "0123456789abcdef" + fffd},
  };
  for (const Utf8Case& c : cases) {
    SCOPED_TRACE(std::string(c.name));
    EXPECT_EQ(tokenizer::IsValidUtf8(c.bytes), c.valid);
    EXPECT_EQ(tokenizer::FirstInvalidUtf8Byte(c.bytes), c.valid ? c.bytes.size() : c.first_invalid);
    EXPECT_EQ(tokenizer::CompleteUtf8Prefix(c.bytes), c.complete_prefix);
    EXPECT_EQ(tokenizer::ToValidUtf8(c.bytes), c.lossy);
    EXPECT_TRUE(tokenizer::IsValidUtf8(tokenizer::ToValidUtf8(c.bytes)));
  }
}

TEST(Utf8Test, EveryTwoByteSequenceAgreesWithTheDefinition) {
  for (int a = 0; a < 256; ++a) {
    for (int b = 0; b < 256; ++b) {
      const std::string s = {static_cast<char>(a), static_cast<char>(b)};
      const bool want =
          (a < 0x80 && b < 0x80) || (a >= 0xc2 && a <= 0xdf && b >= 0x80 && b <= 0xbf);
      ASSERT_EQ(tokenizer::IsValidUtf8(s), want) << a << " " << b;
    }
  }
}

TEST(Utf8Test, ReadFileMaybeGzippedReportsMissingFiles) {
  absl::StatusOr<std::string> data = tokenizer::ReadFileMaybeGzipped("/nonexistent/tokenizer.json");
  EXPECT_EQ(data.status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace mamba
