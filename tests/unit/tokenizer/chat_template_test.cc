// ChatTemplate: where a model's template and special tokens come from (chat_template.jinja,
// chat_template.json, tokenizer_config.json as a string or a named list, special_tokens_map.json,
// the operator's --chat_template file), the errors that say how to supply one, and the context
// Apply renders with (transformers' apply_chat_template variables).
#include "engine/tokenizer/chat_template.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mamba {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using tokenizer::ChatSpecialTokens;
using tokenizer::ChatTemplate;
using Json = nlohmann::ordered_json;

// Prints the variables a template sees, so each test can check what Apply passed.
constexpr char kEcho[] =
    "bos={{ bos_token }} eos={{ eos_token }} unk={{ unk_token }}"
    "{% for m in messages %} {{ m.role }}:{{ m.content }}{% endfor %}"
    "{% if add_generation_prompt %} [gen]{% endif %}";

// A fresh folder under the test's temporary directory holding `files` (name -> content).
std::string MakeFolder(const std::string& name, const std::map<std::string, std::string>& files) {
  const fs::path dir = fs::path(::testing::TempDir()) / ("chat_template_test_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (const auto& [file, content] : files) {
    std::ofstream(dir / file, std::ios::binary) << content;
  }
  return dir.string();
}

std::string Config(const Json& fields) { return fields.dump(); }

const Json kOneUser = Json::parse(R"([{"role": "user", "content": "Hi"}])");

struct FolderCase {
  const char* name;
  std::map<std::string, std::string> files;
  const char* template_file;  // relative to the folder; "" for none
  const char* want;           // Apply(kOneUser, true), or "" when loading fails
  absl::StatusCode code;      // of the load
  const char* message_part;   // of the load's error
};

TEST(ChatTemplateTest, LoadsFromModelFolders) {
  const std::string echo = kEcho;
  const FolderCase cases[] = {
      {"config string, token strings",
       {{"tokenizer_config.json",
         Config({{"chat_template", echo}, {"bos_token", "<s>"}, {"eos_token", "</s>"}})}},
       "",
       "bos=<s> eos=</s> unk= user:Hi [gen]",
       absl::StatusCode::kOk,
       ""},
      {"added-token objects",
       {{"tokenizer_config.json",
         Config({{"chat_template", echo},
                 {"bos_token",
                  {{"__type", "AddedToken"}, {"content", "<|begin|>"}, {"lstrip", false}}},
                 {"eos_token", {{"content", "<|end|>"}}},
                 {"unk_token", nullptr}})}},
       "",
       "bos=<|begin|> eos=<|end|> unk= user:Hi [gen]",
       absl::StatusCode::kOk,
       ""},
      {"named list uses default",
       {{"tokenizer_config.json",
         Config({{"chat_template", Json::array({{{"name", "tool_use"}, {"template", "TOOLS"}},
                                                {{"name", "default"}, {"template", echo}}})},
                 {"eos_token", "E"}})}},
       "",
       "bos= eos=E unk= user:Hi [gen]",
       absl::StatusCode::kOk,
       ""},
      {"chat_template.jinja wins",
       {{"chat_template.jinja", "from jinja file {{ eos_token }}\n"},
        {"chat_template.json", Config({{"chat_template", "from json file"}})},
        {"tokenizer_config.json", Config({{"chat_template", "from config"}, {"eos_token", "E"}})}},
       "",
       "from jinja file E",
       absl::StatusCode::kOk,
       ""},
      {"chat_template.json next",
       {{"chat_template.json", Config({{"chat_template", "from json file"}})},
        {"tokenizer_config.json", Config({{"chat_template", "from config"}})}},
       "",
       "from json file",
       absl::StatusCode::kOk,
       ""},
      {"special_tokens_map overrides",
       {{"tokenizer_config.json",
         Config({{"chat_template", echo}, {"bos_token", "<s>"}, {"eos_token", "</s>"}})},
        {"special_tokens_map.json",
         Config({{"eos_token", {{"content", "<eos>"}}}, {"unk_token", "<unk>"}})}},
       "",
       "bos=<s> eos=<eos> unk=<unk> user:Hi [gen]",
       absl::StatusCode::kOk,
       ""},
      {"operator's raw file, folder's tokens",
       {{"tokenizer_config.json", Config({{"chat_template", "ignored"}, {"bos_token", "<s>"}})},
        {"mine.jinja", "custom {{ bos_token }}{{ messages[0].content }}"}},
       "mine.jinja",
       "custom <s>Hi",
       absl::StatusCode::kOk,
       ""},
      {"operator's json file",
       {{"mine.json", Config({{"chat_template", "json {{ messages | length }}"}})}},
       "mine.json",
       "json 1",
       absl::StatusCode::kOk,
       ""},
      {"operator's file is a tokenizer_config.json",
       {{"other_config.json", Config({{"chat_template", echo}, {"eos_token", "X"}})}},
       "other_config.json",
       "bos= eos=X unk= user:Hi [gen]",
       absl::StatusCode::kOk,
       ""},
      {"no template anywhere",
       {{"tokenizer_config.json", Config({{"bos_token", "<s>"}})}},
       "",
       "",
       absl::StatusCode::kFailedPrecondition,
       "pass --chat_template FILE"},
      {"null template",
       {{"tokenizer_config.json", Config({{"chat_template", nullptr}})}},
       "",
       "",
       absl::StatusCode::kFailedPrecondition,
       "has no chat template"},
      {"empty folder",
       {},
       "",
       "",
       absl::StatusCode::kFailedPrecondition,
       "add a \"chat_template\" to the model's tokenizer_config.json"},
      {"list without default",
       {{"tokenizer_config.json",
         Config({{"chat_template", Json::array({{{"name", "tool_use"}, {"template", "x"}}})}})}},
       "",
       "",
       absl::StatusCode::kFailedPrecondition,
       "none named \"default\""},
      {"malformed list",
       {{"tokenizer_config.json", Config({{"chat_template", Json::array({"just a string"})}})}},
       "",
       "",
       absl::StatusCode::kInvalidArgument,
       "{\"name\": string, \"template\": string}"},
      {"malformed json",
       {{"tokenizer_config.json", "{\"chat_template\": "}},
       "",
       "",
       absl::StatusCode::kInvalidArgument,
       "tokenizer_config.json: not valid JSON"},
      {"template syntax error",
       {{"tokenizer_config.json",
         Config({{"chat_template", "line one\n{% for m in messages %}"}})}},
       "",
       "",
       absl::StatusCode::kInvalidArgument,
       "tokenizer_config.json: line 2, column 24: expected 'endfor' or 'else'"},
      {"json file without a template",
       {{"mine.json", Config({{"bos_token", "<s>"}})}},
       "mine.json",
       "",
       absl::StatusCode::kInvalidArgument,
       "needs a \"chat_template\" key"},
      {"missing template file",
       {},
       "nope.jinja",
       "",
       absl::StatusCode::kNotFound,
       "chat template file"},
  };
  int index = 0;
  for (const FolderCase& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string dir = MakeFolder(std::to_string(index++), c.files);
    const std::string file = *c.template_file ? (fs::path(dir) / c.template_file).string() : "";
    absl::StatusOr<ChatTemplate> t = ChatTemplate::Load(file, dir);
    if (c.code != absl::StatusCode::kOk) {
      ASSERT_FALSE(t.ok());
      EXPECT_EQ(t.status().code(), c.code) << t.status();
      EXPECT_THAT(std::string(t.status().message()), HasSubstr(c.message_part));
      continue;
    }
    ASSERT_TRUE(t.ok()) << t.status();
    absl::StatusOr<std::string> got = t->Apply(kOneUser, true);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, c.want);
  }
}

TEST(ChatTemplateTest, MissingFolderAndNoSource) {
  absl::StatusOr<ChatTemplate> t = ChatTemplate::FromModelDir("/nonexistent/model/folder");
  EXPECT_EQ(t.status().code(), absl::StatusCode::kNotFound);
  t = ChatTemplate::Load("", "");
  EXPECT_EQ(t.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(t.status().message()), HasSubstr("--chat_template"));
}

TEST(ChatTemplateTest, ToolUseTemplateWhenToolsAreGiven) {
  const std::string dir = MakeFolder(
      "tool_use",
      {{"tokenizer_config.json",
        Config({{"chat_template",
                 Json::array({{{"name", "default"}, {"template", "plain"}},
                              {{"name", "tool_use"},
                               {"template",
                                "tools={{ tools | map(attribute='name') | join(',') }}"}}})}})}});
  absl::StatusOr<ChatTemplate> t = ChatTemplate::FromModelDir(dir);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(*t->Apply(kOneUser, false), "plain");
  EXPECT_EQ(*t->Apply(kOneUser, false, Json{{"tools", nullptr}}), "plain");
  EXPECT_EQ(
      *t->Apply(kOneUser, false, Json{{"tools", Json::array({{{"name", "f"}}, {{"name", "g"}}})}}),
      "tools=f,g");
  EXPECT_EQ(t->source(), "plain");
}

ChatTemplate FromSource(const std::string& source, ChatSpecialTokens tokens = {}) {
  absl::StatusOr<ChatTemplate> t = ChatTemplate::FromSource(source, std::move(tokens), "test");
  EXPECT_TRUE(t.ok()) << t.status();
  return *std::move(t);
}

TEST(ChatTemplateTest, ApplyPassesTransformersVariables) {
  ChatSpecialTokens tokens;
  tokens.bos_token = "<s>";
  tokens.additional_special_tokens = {"<a>", "<b>"};
  const ChatTemplate t = FromSource(
      "{{ bos_token }}|{{ tools is none }}|{{ documents is none }}|{{ eos_token is defined }}|"
      "{{ add_generation_prompt }}|{{ messages | length }}|{{ additional_special_tokens | join }}|"
      "{{ custom | default('-') }}",
      tokens);
  EXPECT_EQ(*t.Apply(kOneUser, true), "<s>|True|True|False|True|1|<a><b>|-");
  EXPECT_EQ(*t.Apply(kOneUser, false, Json{{"custom", "c"}, {"bos_token", "<override>"}}),
            "<override>|True|True|False|False|1|<a><b>|c");
  // nlohmann::json (sorted keys) works too.
  EXPECT_EQ(*t.Apply(nlohmann::json::parse(R"([{"role": "user", "content": "x"}])"), true),
            "<s>|True|True|False|True|1|<a><b>|-");
}

TEST(ChatTemplateTest, ApplyErrors) {
  const ChatTemplate t = FromSource(
      "{% for m in messages %}{% if m.role not in ['user', 'assistant'] %}"
      "{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}"
      "{{ m.content }}{% endfor %}");
  struct Case {
    const char* name;
    Json messages;
    Json extra;
    absl::StatusCode code;
    const char* message;
    bool raised;
  };
  const Case cases[] = {
      {"not a list", Json::object(), Json(), absl::StatusCode::kInvalidArgument,
       "messages must be a JSON array of message objects", false},
      {"extra not an object", kOneUser, Json::array(), absl::StatusCode::kInvalidArgument,
       "the extra chat template context must be a JSON object", false},
      {"extra sets messages", kOneUser, Json{{"messages", Json::array()}},
       absl::StatusCode::kInvalidArgument,
       "the extra chat template context may not set \"messages\"", false},
      {"raised by the template", Json::parse(R"([{"role": "system", "content": "s"}])"), Json(),
       absl::StatusCode::kInvalidArgument, "Only user and assistant roles are supported!", true},
      {"content not a string", Json::parse(R"([{"role": "user", "content": null}])"), Json(),
       absl::StatusCode::kOk, "", false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    absl::StatusOr<std::string> got = t.Apply(c.messages, true, c.extra);
    if (c.code == absl::StatusCode::kOk) {
      EXPECT_TRUE(got.ok()) << got.status();
      continue;
    }
    ASSERT_FALSE(got.ok());
    EXPECT_EQ(got.status().code(), c.code);
    EXPECT_EQ(std::string(got.status().message()), c.message);
    EXPECT_EQ(tokenizer::jinja::IsRaisedByTemplate(got.status()), c.raised);
  }
}

TEST(ChatTemplateTest, RenderOptionsBoundTheOutput) {
  ChatTemplate t = FromSource("{% for m in messages %}{{ m.content * 1000 }}{% endfor %}");
  tokenizer::jinja::RenderOptions options;
  options.max_output_bytes = 10000;
  t.set_render_options(options);
  absl::StatusOr<std::string> got = t.Apply(kOneUser, false);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->size(), 2000u);
  got = t.Apply(Json::parse(R"([{"role": "user", "content": "0123456789ab"}])"), false);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kResourceExhausted);
}

TEST(ChatTemplateTest, SyntaxErrorNamesItsOrigin) {
  absl::StatusOr<ChatTemplate> t =
      ChatTemplate::FromSource("{{ x", {}, "models/m/tokenizer_config.json");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(std::string(t.status().message()),
            "models/m/tokenizer_config.json: line 1, column 1: missing end of variable tag '}}'");
}

}  // namespace
}  // namespace mamba
