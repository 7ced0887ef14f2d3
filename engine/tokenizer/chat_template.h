// A model's chat template: turns a conversation (OpenAI-style messages) into the prompt text
// the model was trained on, exactly as Hugging Face transformers' apply_chat_template renders
// it (see jinja.h for the template language, docs/chat_templates.md for what is supported).
//
// Where the template comes from, in order:
//   1. the operator's file (--chat_template FILE): the raw Jinja text, or a .json file holding
//      {"chat_template": ...} (tokenizer_config.json itself will do);
//   2. the model folder's chat_template.jinja (what transformers saves since 4.50);
//   3. the folder's chat_template.json ({"chat_template": "..."});
//   4. the folder's tokenizer_config.json "chat_template".
// A "chat_template" may be a string or a list of {"name", "template"}: "default" is used, and
// "tool_use" instead when the request passes tools (transformers' choice).
// The special tokens (bos_token, eos_token, unk_token, pad_token, ..., strings or added-token
// objects {"content": ...}) come from the folder's tokenizer_config.json, overridden by its
// special_tokens_map.json, as transformers loads them.
//
// Thread-safety: immutable once loaded; Apply may run on any number of threads at once.
#pragma once

#include <map>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/tokenizer/jinja.h"

namespace mamba::tokenizer {

// The special tokens a template sees as variables; unset ones are undefined there.
struct ChatSpecialTokens {
  std::optional<std::string> bos_token;
  std::optional<std::string> eos_token;
  std::optional<std::string> unk_token;
  std::optional<std::string> sep_token;
  std::optional<std::string> pad_token;
  std::optional<std::string> cls_token;
  std::optional<std::string> mask_token;
  std::vector<std::string> additional_special_tokens;
};

class ChatTemplate {
 public:
  // Loads from a model folder (template_file empty), or from the operator's file with the
  // folder's special tokens (model_dir may be empty, or hold no tokenizer_config.json). Errors:
  // NOT_FOUND for a file or folder that is not there; FAILED_PRECONDITION when neither names a
  // template, saying how to supply one; INVALID_ARGUMENT for malformed JSON or a template that
  // does not parse, naming the file and the line.
  static absl::StatusOr<ChatTemplate> Load(const std::string& template_file,
                                           const std::string& model_dir);
  static absl::StatusOr<ChatTemplate> FromModelDir(const std::string& model_dir) {
    return Load("", model_dir);
  }

  // From template text (`origin` names it in errors).
  static absl::StatusOr<ChatTemplate> FromSource(std::string_view source,
                                                 ChatSpecialTokens special_tokens = {},
                                                 std::string origin = "chat template");

  // Renders `messages` (a JSON array of {"role", "content", ...}) with the variables
  // transformers gives a chat template: messages, add_generation_prompt, tools and documents
  // (None unless `extra_context` has them), the special tokens, and every other key of
  // `extra_context` (a JSON object or null; its keys override the special tokens, and may not
  // be "messages" or "add_generation_prompt"). Errors: INVALID_ARGUMENT for malformed input
  // or a failed render ("line N: ..."); a template's raise_exception(message) is
  // INVALID_ARGUMENT with exactly `message` (jinja::IsRaisedByTemplate tells it apart: the
  // client sent a conversation the model does not accept); RESOURCE_EXHAUSTED past
  // render_options(). With ordered_json, dicts keep the request's key order (what tojson
  // prints, as transformers does); nlohmann::json sorts keys.
  absl::StatusOr<std::string> Apply(const nlohmann::ordered_json& messages,
                                    bool add_generation_prompt) const;
  absl::StatusOr<std::string> Apply(const nlohmann::ordered_json& messages,
                                    bool add_generation_prompt,
                                    const nlohmann::ordered_json& extra_context) const;
  absl::StatusOr<std::string> Apply(const nlohmann::json& messages,
                                    bool add_generation_prompt) const;
  absl::StatusOr<std::string> Apply(const nlohmann::json& messages, bool add_generation_prompt,
                                    const nlohmann::json& extra_context) const;

  // Where the template came from ("models/x/tokenizer_config.json"), for logs.
  const std::string& origin() const { return origin_; }
  // The text of the template Apply uses without tools (the "default" one of a list).
  const std::string& source() const;
  const ChatSpecialTokens& special_tokens() const { return special_tokens_; }
  const jinja::RenderOptions& render_options() const { return render_options_; }
  void set_render_options(const jinja::RenderOptions& options) { render_options_ = options; }

 private:
  struct Named {
    std::string source;
    jinja::Template parsed;
  };

  ChatTemplate() = default;
  const Named* Choose(bool has_tools) const;
  absl::StatusOr<std::string> Render(const nlohmann::ordered_json& messages,
                                     bool add_generation_prompt,
                                     const nlohmann::ordered_json& extra_context) const;

  std::map<std::string, Named> templates_;  // by name; a single template is "default"
  ChatSpecialTokens special_tokens_;
  std::string origin_;
  jinja::RenderOptions render_options_;
};

}  // namespace mamba::tokenizer
