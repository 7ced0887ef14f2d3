#include "engine/tokenizer/chat_template.h"

#include <filesystem>
#include <nlohmann/json.hpp>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/json_nesting.h"
#include "engine/tokenizer/tokenizer.h"

namespace mamba::tokenizer {
namespace {

namespace fs = std::filesystem;
using OrderedJson = nlohmann::ordered_json;

// tokenizer_config.json can be large (some list 100k+ added tokens); templates are small.
constexpr size_t kMaxConfigBytes = size_t{64} << 20;
constexpr size_t kMaxTemplateBytes = size_t{4} << 20;
// tokenizer_config.json nests three levels (added_tokens_decoder); a chat template list two.
constexpr int kMaxConfigNesting = 32;

constexpr char kHowToSupply[] =
    "pass --chat_template FILE (the model's Jinja chat template, or a JSON file with a "
    "\"chat_template\" key), or add a \"chat_template\" to the model's tokenizer_config.json";

absl::StatusOr<OrderedJson> ReadJsonFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFileMaybeGzipped(path, kMaxConfigBytes);
  if (!text.ok()) return text.status();
  if (!common::JsonNestingWithin(*text, kMaxConfigNesting)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": JSON nested deeper than ", kMaxConfigNesting, " levels"));
  }
  try {  // nlohmann::json reports errors by exception; none may leave this function
    return OrderedJson::parse(*text);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not valid JSON: ", e.what()));
  }
}

// A special token as tokenizer_config.json writes it: a string, or an added-token object.
std::optional<std::string> TokenText(const OrderedJson& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object()) {
    auto it = v.find("content");
    if (it != v.end() && it->is_string()) return it->get<std::string>();
  }
  return std::nullopt;
}

// Sets the special tokens `config` names (others keep their value).
void ReadSpecialTokens(const OrderedJson& config, ChatSpecialTokens* tokens) {
  if (!config.is_object()) return;
  const std::pair<const char*, std::optional<std::string>*> fields[] = {
      {"bos_token", &tokens->bos_token},   {"eos_token", &tokens->eos_token},
      {"unk_token", &tokens->unk_token},   {"sep_token", &tokens->sep_token},
      {"pad_token", &tokens->pad_token},   {"cls_token", &tokens->cls_token},
      {"mask_token", &tokens->mask_token},
  };
  for (const auto& [key, field] : fields) {
    auto it = config.find(key);
    if (it == config.end()) continue;
    if (std::optional<std::string> text = TokenText(*it)) *field = *std::move(text);
  }
  auto extra = config.find("additional_special_tokens");
  if (extra != config.end() && extra->is_array()) {
    tokens->additional_special_tokens.clear();
    for (const OrderedJson& t : *extra) {
      if (std::optional<std::string> text = TokenText(t)) {
        tokens->additional_special_tokens.push_back(*std::move(text));
      }
    }
  }
}

// The templates of a "chat_template" value: a string, or a list of {"name", "template"}.
absl::Status ReadTemplates(const OrderedJson& value, const std::string& origin,
                           std::map<std::string, std::string>* out) {
  if (value.is_string()) {
    (*out)["default"] = value.get<std::string>();
    return absl::OkStatus();
  }
  if (value.is_array()) {
    for (const OrderedJson& item : value) {
      if (!item.is_object() || !item.contains("name") || !item.contains("template") ||
          !item["name"].is_string() || !item["template"].is_string()) {
        return absl::InvalidArgumentError(
            absl::StrCat(origin,
                         ": each entry of the \"chat_template\" list must be {\"name\": string, "
                         "\"template\": string}"));
      }
      (*out)[item["name"].get<std::string>()] = item["template"].get<std::string>();
    }
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(
      origin, ": \"chat_template\" must be a string or a list of {\"name\", \"template\"}"));
}

// The "chat_template" of a JSON file, which must have one.
absl::Status ReadTemplatesFromJsonFile(const std::string& path,
                                       std::map<std::string, std::string>* out,
                                       OrderedJson* document) {
  absl::StatusOr<OrderedJson> json = ReadJsonFile(path);
  if (!json.ok()) return json.status();
  auto it = json->is_object() ? json->find("chat_template") : json->end();
  if (it == json->end() || it->is_null()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": a JSON chat template file needs a \"chat_template\" key"));
  }
  if (absl::Status s = ReadTemplates(*it, path, out); !s.ok()) return s;
  *document = *std::move(json);
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadTemplateText(const std::string& path) {
  return ReadFileMaybeGzipped(path, kMaxTemplateBytes);
}

bool IsFile(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

}  // namespace

absl::StatusOr<ChatTemplate> ChatTemplate::Load(const std::string& template_file,
                                                const std::string& model_dir) {
  ChatSpecialTokens tokens;
  std::map<std::string, std::string> sources;
  std::string origin;
  OrderedJson config;  // the folder's tokenizer_config.json, when there is one
  bool have_config = false;

  if (!model_dir.empty()) {
    std::error_code ec;
    if (!fs::is_directory(model_dir, ec)) {
      return absl::NotFoundError(absl::StrCat("model folder '", model_dir, "' not found"));
    }
    const fs::path dir(model_dir);
    if (IsFile(dir / "tokenizer_config.json")) {
      absl::StatusOr<OrderedJson> json = ReadJsonFile((dir / "tokenizer_config.json").string());
      if (!json.ok()) return json.status();
      config = *std::move(json);
      have_config = config.is_object();
      ReadSpecialTokens(config, &tokens);
    }
    if (IsFile(dir / "special_tokens_map.json")) {
      absl::StatusOr<OrderedJson> json = ReadJsonFile((dir / "special_tokens_map.json").string());
      if (!json.ok()) return json.status();
      ReadSpecialTokens(*json, &tokens);
    }
  }

  if (!template_file.empty()) {
    origin = template_file;
    if (!IsFile(template_file)) {
      return absl::NotFoundError(
          absl::StrCat("chat template file '", template_file, "' not found"));
    }
    if (fs::path(template_file).extension() == ".json") {
      OrderedJson document;
      if (absl::Status s = ReadTemplatesFromJsonFile(template_file, &sources, &document); !s.ok()) {
        return s;
      }
      // A tokenizer_config.json given as the template file brings its special tokens along,
      // unless the model folder has its own.
      if (!have_config) ReadSpecialTokens(document, &tokens);
    } else {
      absl::StatusOr<std::string> text = ReadTemplateText(template_file);
      if (!text.ok()) return text.status();
      sources["default"] = *std::move(text);
    }
  } else if (!model_dir.empty()) {
    const fs::path dir(model_dir);
    if (IsFile(dir / "chat_template.jinja")) {
      origin = (dir / "chat_template.jinja").string();
      absl::StatusOr<std::string> text = ReadTemplateText(origin);
      if (!text.ok()) return text.status();
      sources["default"] = *std::move(text);
    } else if (IsFile(dir / "chat_template.json")) {
      origin = (dir / "chat_template.json").string();
      OrderedJson document;
      if (absl::Status s = ReadTemplatesFromJsonFile(origin, &sources, &document); !s.ok()) {
        return s;
      }
    } else if (have_config && config.contains("chat_template") &&
               !config["chat_template"].is_null()) {
      origin = (dir / "tokenizer_config.json").string();
      if (absl::Status s = ReadTemplates(config["chat_template"], origin, &sources); !s.ok()) {
        return s;
      }
    } else {
      return absl::FailedPreconditionError(absl::StrCat(
          "model folder '", model_dir,
          "' has no chat template (no chat_template.jinja, and no \"chat_template\" in "
          "tokenizer_config.json): ",
          kHowToSupply));
    }
  } else {
    return absl::FailedPreconditionError(absl::StrCat("no chat template: ", kHowToSupply));
  }

  if (sources.count("default") == 0) {
    std::vector<std::string> names;
    for (const auto& item : sources) names.push_back(item.first);
    return absl::FailedPreconditionError(
        absl::StrCat(origin, " lists chat templates (", absl::StrJoin(names, ", "),
                     ") but none named \"default\": ", kHowToSupply));
  }
  ChatTemplate result;
  result.special_tokens_ = std::move(tokens);
  result.origin_ = std::move(origin);
  for (auto& [name, source] : sources) {
    absl::StatusOr<jinja::Template> parsed = jinja::Template::Parse(source);
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          result.origin_, name == "default" ? "" : absl::StrCat(" (template '", name, "')"), ": ",
          parsed.status().message()));
    }
    result.templates_.emplace(name, Named{std::move(source), *std::move(parsed)});
  }
  return result;
}

absl::StatusOr<ChatTemplate> ChatTemplate::FromSource(std::string_view source,
                                                      ChatSpecialTokens special_tokens,
                                                      std::string origin) {
  absl::StatusOr<jinja::Template> parsed = jinja::Template::Parse(source);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(origin, ": ", parsed.status().message()));
  }
  ChatTemplate result;
  result.special_tokens_ = std::move(special_tokens);
  result.origin_ = std::move(origin);
  result.templates_.emplace("default", Named{std::string(source), *std::move(parsed)});
  return result;
}

const std::string& ChatTemplate::source() const { return templates_.at("default").source; }

const ChatTemplate::Named* ChatTemplate::Choose(bool has_tools) const {
  if (has_tools) {
    auto it = templates_.find("tool_use");
    if (it != templates_.end()) return &it->second;
  }
  return &templates_.at("default");
}

absl::StatusOr<std::string> ChatTemplate::Render(const OrderedJson& messages,
                                                 bool add_generation_prompt,
                                                 const OrderedJson& extra_context) const {
  if (!messages.is_array()) {
    return absl::InvalidArgumentError("messages must be a JSON array of message objects");
  }
  if (!extra_context.is_null() && !extra_context.is_object()) {
    return absl::InvalidArgumentError("the extra chat template context must be a JSON object");
  }
  // What transformers renders with: the special tokens, then the caller's keyword arguments,
  // and tools/documents as None unless given.
  OrderedJson context = OrderedJson::object();
  const std::pair<const char*, const std::optional<std::string>*> fields[] = {
      {"bos_token", &special_tokens_.bos_token},   {"eos_token", &special_tokens_.eos_token},
      {"unk_token", &special_tokens_.unk_token},   {"sep_token", &special_tokens_.sep_token},
      {"pad_token", &special_tokens_.pad_token},   {"cls_token", &special_tokens_.cls_token},
      {"mask_token", &special_tokens_.mask_token},
  };
  for (const auto& [key, value] : fields) {
    if (value->has_value()) context[key] = **value;
  }
  if (!special_tokens_.additional_special_tokens.empty()) {
    context["additional_special_tokens"] = special_tokens_.additional_special_tokens;
  }
  context["tools"] = nullptr;
  context["documents"] = nullptr;
  if (extra_context.is_object()) {
    for (auto it = extra_context.begin(); it != extra_context.end(); ++it) {
      if (it.key() == "messages" || it.key() == "add_generation_prompt") {
        return absl::InvalidArgumentError(
            absl::StrCat("the extra chat template context may not set \"", it.key(), "\""));
      }
      context[it.key()] = it.value();
    }
  }
  context["messages"] = messages;
  context["add_generation_prompt"] = add_generation_prompt;
  const Named* chosen = Choose(!context["tools"].is_null());
  return chosen->parsed.Render(context, render_options_);
}

absl::StatusOr<std::string> ChatTemplate::Apply(const OrderedJson& messages,
                                                bool add_generation_prompt) const {
  return Render(messages, add_generation_prompt, OrderedJson());
}

absl::StatusOr<std::string> ChatTemplate::Apply(const OrderedJson& messages,
                                                bool add_generation_prompt,
                                                const OrderedJson& extra_context) const {
  return Render(messages, add_generation_prompt, extra_context);
}

absl::StatusOr<std::string> ChatTemplate::Apply(const nlohmann::json& messages,
                                                bool add_generation_prompt) const {
  return Render(OrderedJson(messages), add_generation_prompt, OrderedJson());
}

absl::StatusOr<std::string> ChatTemplate::Apply(const nlohmann::json& messages,
                                                bool add_generation_prompt,
                                                const nlohmann::json& extra_context) const {
  return Render(OrderedJson(messages), add_generation_prompt, OrderedJson(extra_context));
}

}  // namespace mamba::tokenizer
