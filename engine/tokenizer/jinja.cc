#include "engine/tokenizer/jinja.h"

#include <nlohmann/json.hpp>
#include <utility>

#include "absl/strings/cord.h"
#include "engine/tokenizer/jinja_ast.h"
#include "engine/tokenizer/jinja_parser.h"
#include "engine/tokenizer/jinja_renderer.h"
#include "engine/tokenizer/jinja_value.h"

namespace mamba::tokenizer::jinja {
namespace {

template <typename Json>
absl::StatusOr<std::string> RenderJson(const Program& program, const Json& context,
                                       const RenderOptions& options) {
  if (!context.is_object() && !context.is_null()) {
    return absl::InvalidArgumentError("the render context must be a JSON object");
  }
  absl::StatusOr<Value> vars = FromJson(context);
  if (!vars.ok()) return vars.status();
  static const Dict* const kEmpty = new Dict();
  return RenderProgram(program, vars->is_dict() ? vars->dict() : *kEmpty, options);
}

}  // namespace

absl::Status RaisedByTemplate(std::string_view message) {
  absl::Status status =
      absl::InvalidArgumentError(absl::string_view(message.data(), message.size()));
  status.SetPayload(kRaisedByTemplatePayload, absl::Cord("1"));
  return status;
}

bool IsRaisedByTemplate(const absl::Status& status) {
  return status.GetPayload(kRaisedByTemplatePayload).has_value();
}

Template::Template(std::shared_ptr<const Program> program) : program_(std::move(program)) {}

absl::StatusOr<Template> Template::Parse(std::string_view source) {
  absl::StatusOr<std::unique_ptr<Program>> program = ParseProgram(source);
  if (!program.ok()) return program.status();
  return Template(std::shared_ptr<const Program>(*std::move(program)));
}

absl::StatusOr<std::string> Template::Render(const nlohmann::ordered_json& context,
                                             const RenderOptions& options) const {
  return RenderJson(*program_, context, options);
}

absl::StatusOr<std::string> Template::Render(const nlohmann::json& context,
                                             const RenderOptions& options) const {
  return RenderJson(*program_, context, options);
}

}  // namespace mamba::tokenizer::jinja
