// Byte-for-byte agreement with jinja2, in the environment transformers renders chat templates
// with, on the fixtures tools/make_chat_template_fixtures.py made
// (tests/data/chat_templates/expected.json): every template of tests/data/chat_templates/ with
// every conversation of cases.json (through ChatTemplate::Apply), and every snippet of
// language_cases.json (through jinja::Template). Where jinja2 failed, the C++ side must fail
// too, and where the template raised the error itself (raise_exception), with exactly its
// message. When python3 can import jinja2, the fixtures are also regenerated live and must
// equal the committed ones.
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "engine/tokenizer/chat_template.h"
#include "engine/tokenizer/jinja.h"
#include "gtest/gtest.h"

namespace mamba {
namespace {

using Json = nlohmann::ordered_json;
using tokenizer::ChatSpecialTokens;
using tokenizer::ChatTemplate;
namespace jinja = tokenizer::jinja;

std::string DataDir() { return std::string(MAMBA_TEST_DATA_DIR) + "/chat_templates"; }

std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

Json ReadJson(const std::string& path) { return Json::parse(ReadText(path)); }

// The clock the fixtures were rendered with: 2024-07-26 09:05:03.
jinja::RenderOptions FixedClock() {
  std::tm tm{};
  tm.tm_year = 2024 - 1900;
  tm.tm_mon = 6;
  tm.tm_mday = 26;
  tm.tm_hour = 9;
  tm.tm_min = 5;
  tm.tm_sec = 3;
  const std::time_t t = timegm(&tm);  // fills in the weekday and the day of the year
  gmtime_r(&t, &tm);
  jinja::RenderOptions options;
  options.now = tm;
  return options;
}

// "differs at byte 12: got "...abc" want "...abd"", around the first difference.
std::string DescribeDifference(const std::string& got, const std::string& want) {
  size_t i = 0;
  while (i < got.size() && i < want.size() && got[i] == want[i]) ++i;
  const size_t from = i > 30 ? i - 30 : 0;
  std::ostringstream out;
  out << "differs at byte " << i << " (sizes " << got.size() << " vs " << want.size()
      << "):\n  got:  " << Json(got.substr(from, 60)).dump()
      << "\n  want: " << Json(want.substr(from, 60)).dump();
  return out.str();
}

// Checks a render (or parse) result against a fixture entry.
void ExpectMatches(const Json& want, const absl::StatusOr<std::string>& got,
                   const std::string& label) {
  if (want.contains("output")) {
    ASSERT_TRUE(got.ok()) << label << ": jinja2 rendered it, we failed: " << got.status()
                          << "\n  want: " << want["output"].dump();
    const std::string expected = want["output"].get<std::string>();
    EXPECT_EQ(*got, expected) << label << ": " << DescribeDifference(*got, expected);
    return;
  }
  ASSERT_FALSE(got.ok()) << label << ": jinja2 failed (" << want["error_type"].get<std::string>()
                         << ": " << want["error"].get<std::string>()
                         << "), we rendered: " << Json(*got).dump();
  if (want["raised"].get<bool>()) {
    EXPECT_TRUE(jinja::IsRaisedByTemplate(got.status())) << label << ": " << got.status();
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument) << label;
    EXPECT_EQ(std::string(got.status().message()), want["error"].get<std::string>()) << label;
  } else {
    EXPECT_FALSE(jinja::IsRaisedByTemplate(got.status())) << label << ": " << got.status();
  }
}

TEST(ChatTemplateFixturesTest, LanguageSnippetsMatchJinja2) {
  const Json cases = ReadJson(DataDir() + "/language_cases.json");
  const Json expected = ReadJson(DataDir() + "/expected.json");
  absl::flat_hash_map<std::string, const Json*> by_name;
  for (const Json& c : cases["cases"]) by_name[c["name"].get<std::string>()] = &c;
  const jinja::RenderOptions options = FixedClock();
  int checked = 0;
  for (const Json& want : expected["language"]) {
    const std::string name = want["name"].get<std::string>();
    ASSERT_TRUE(by_name.contains(name)) << name << " is in expected.json, not language_cases.json";
    const Json& c = *by_name[name];
    SCOPED_TRACE(c["template"].get<std::string>());
    absl::StatusOr<jinja::Template> t = jinja::Template::Parse(c["template"].get<std::string>());
    absl::StatusOr<std::string> got =
        t.ok() ? t->Render(c.contains("context") ? c["context"] : Json::object(), options)
               : absl::StatusOr<std::string>(t.status());
    ExpectMatches(want, got, name);
    ++checked;
  }
  EXPECT_EQ(checked, static_cast<int>(cases["cases"].size())) << "regenerate expected.json";
}

TEST(ChatTemplateFixturesTest, ChatTemplatesMatchJinja2) {
  const Json cases = ReadJson(DataDir() + "/cases.json");
  const Json expected = ReadJson(DataDir() + "/expected.json");
  absl::flat_hash_map<std::string, const Json*> by_name;
  for (const Json& c : cases["cases"]) by_name[c["name"].get<std::string>()] = &c;
  int checked = 0;
  for (const Json& want : expected["chat"]) {
    const std::string file = want["template"].get<std::string>();
    const std::string case_name = want["case"].get<std::string>();
    const std::string label = file + " / " + case_name;
    ASSERT_TRUE(by_name.contains(case_name)) << label;
    const Json& tokens = cases["templates"][file];
    ChatSpecialTokens special;
    if (tokens.contains("bos_token")) special.bos_token = tokens["bos_token"].get<std::string>();
    if (tokens.contains("eos_token")) special.eos_token = tokens["eos_token"].get<std::string>();
    absl::StatusOr<ChatTemplate> t =
        ChatTemplate::FromSource(ReadText(DataDir() + "/" + file), special, file);
    ASSERT_TRUE(t.ok()) << t.status();
    t->set_render_options(FixedClock());
    const Json& c = *by_name[case_name];
    absl::StatusOr<std::string> got =
        t->Apply(c["messages"], c["add_generation_prompt"].get<bool>(),
                 c.contains("extra") ? c["extra"] : Json());
    ExpectMatches(want, got, label);
    ++checked;
  }
  EXPECT_GE(checked, 8 * 17);
}

// The committed fixtures are what the jinja2 on this machine renders now (skipped without it).
TEST(ChatTemplateFixturesTest, CommittedFixturesMatchLiveJinja2) {
  if (std::system("python3 -c 'import jinja2' >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "python3 with jinja2 not available (Debian: apt-get install python3-jinja2)";
  }
  const std::string script =
      std::string(MAMBA_TEST_DATA_DIR) + "/../../tools/make_chat_template_fixtures.py";
  const std::string live = ::testing::TempDir() + "chat_template_expected_live.json";
  const std::string command = "python3 '" + script + "' --output '" + live + "'";
  ASSERT_EQ(std::system(command.c_str()), 0) << command;
  const std::string want = ReadText(live);
  const std::string committed = ReadText(DataDir() + "/expected.json");
  EXPECT_TRUE(committed == want) << "tests/data/chat_templates/expected.json is stale: run "
                                    "tools/make_chat_template_fixtures.py\n"
                                 << DescribeDifference(committed, want);
  std::remove(live.c_str());
}

}  // namespace
}  // namespace mamba
