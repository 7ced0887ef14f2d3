// Runs a parsed Jinja program: statements write text, expressions evaluate to values
// (jinja_value.h) with the builtins of jinja_builtins.h. Scoping is jinja2's: each iteration
// of a for loop, each macro call and each with/set/filter block body has its own scope
// (`set` inside them does not leak out, hence namespace()); if blocks do not.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "engine/tokenizer/jinja.h"
#include "engine/tokenizer/jinja_ast.h"
#include "engine/tokenizer/jinja_value.h"

namespace mamba::tokenizer::jinja {

// Renders `program` with `context`'s items as variables (over the globals). Errors as
// Template::Render documents.
absl::StatusOr<std::string> RenderProgram(const Program& program, const Dict& context,
                                          const RenderOptions& options);

}  // namespace mamba::tokenizer::jinja
