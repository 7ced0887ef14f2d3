#include "server/metrics/text_format.h"

#include <cmath>
#include <limits>
#include <string>

#include "gtest/gtest.h"

namespace mamba::metrics {
namespace {

TEST(TextFormatTest, MetricNames) {
  struct Case {
    std::string name;
    bool ok;
  } cases[] = {
      {"mamba_requests_total", true},
      {"a", true},
      {"_x", true},
      {"ns:sub_metric", true},
      {"x9", true},
      {"", false},
      {"9x", false},
      {"has-dash", false},
      {"has space", false},
      {"é_metric", false},
      {"a.b", false},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(ValidateMetricName(c.name).ok(), c.ok) << c.name;
  }
  EXPECT_NE(std::string(ValidateMetricName("9x").message()).find("[a-zA-Z_:]"), std::string::npos);
}

TEST(TextFormatTest, LabelNames) {
  struct Case {
    std::string name;
    bool ok;
  } cases[] = {
      {"method", true}, {"_private", true}, {"code2", true}, {"__name__", false},
      {"", false},      {"2code", false},   {"a:b", false},  {"a-b", false},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(ValidateLabelName(c.name).ok(), c.ok) << c.name;
  }
}

TEST(TextFormatTest, Utf8) {
  struct Case {
    std::string text;
    bool ok;
  } cases[] = {
      {"", true},
      {"plain ascii", true},
      {"caf\xc3\xa9", true},        // é
      {"\xe2\x82\xac", true},       // €
      {"\xf0\x9f\x98\x80", true},   // emoji
      {"\xc3", false},              // truncated
      {"\xc0\xaf", false},          // overlong '/'
      {"\xed\xa0\x80", false},      // surrogate
      {"\xf4\x90\x80\x80", false},  // past U+10FFFF
      {"\xff", false},              // never valid
      {"ok\x80", false},            // stray continuation byte
  };
  for (const Case& c : cases) {
    EXPECT_EQ(ValidateUtf8(c.text).ok(), c.ok) << "case of " << c.text.size() << " bytes";
  }
}

TEST(TextFormatTest, EscapesHelp) {
  struct Case {
    std::string in, out;
  } cases[] = {
      {"plain", "plain"},
      {"back\\slash", "back\\\\slash"},
      {"two\nlines", "two\\nlines"},
      {"quotes \"stay\"", "quotes \"stay\""},  // HELP does not escape quotes
      {"\\n literal", "\\\\n literal"},
  };
  for (const Case& c : cases) {
    std::string out;
    AppendEscapedHelp(c.in, &out);
    EXPECT_EQ(out, c.out);
  }
}

TEST(TextFormatTest, EscapesLabelValues) {
  struct Case {
    std::string in, out;
  } cases[] = {
      {"Generate", "Generate"},        {"a\"b", "a\\\"b"},        {"C:\\path", "C:\\\\path"},
      {"line\nbreak", "line\\nbreak"}, {"\\\"\n", "\\\\\\\"\\n"}, {"tab\tstays", "tab\tstays"},
      {"caf\xc3\xa9", "caf\xc3\xa9"},
  };
  for (const Case& c : cases) {
    std::string out;
    AppendEscapedLabelValue(c.in, &out);
    EXPECT_EQ(out, c.out);
  }
}

TEST(TextFormatTest, FormatsValues) {
  const double inf = std::numeric_limits<double>::infinity();
  struct Case {
    double value;
    std::string text;
  } cases[] = {
      {0, "0"},
      {-0.0, "0"},
      {1, "1"},
      {-3, "-3"},
      {0.25, "0.25"},
      {0.1, "0.1"},
      {1e-05, "1e-05"},
      {0.0001, "0.0001"},
      {259500000, "259500000"},
      {9007199254740992.0, "9007199254740992"},
      {1e300, "1e+300"},
      {inf, "+Inf"},
      {-inf, "-Inf"},
      {std::nan(""), "NaN"},
      {1.5e-7, "1.5e-07"},
      {1795389645.17, "1795389645.17"},
      {-0.000125, "-0.000125"},
      {123456789.000001, "123456789.000001"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(FormatSampleValue(c.value), c.text) << c.text;
  }
  // Whatever the form, it reads back to the same double.
  for (double v : {0.1, 1.0 / 3, 2.5e-4, 123456.789, 6.02214076e23, 1e-300}) {
    EXPECT_EQ(std::stod(FormatSampleValue(v)), v);
  }
}

}  // namespace
}  // namespace mamba::metrics
