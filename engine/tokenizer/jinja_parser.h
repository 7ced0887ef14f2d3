// Builds the syntax tree of a Jinja template from its tokens, with jinja2's grammar: the
// statements here, the expressions in jinja_expression_parser.h (operator precedence, lowest
// first: `a if c else b`, or, and, not, comparisons and `in`, + -, ~, * / // %, **, unary - +,
// then filters `|` and tests `is`, binding tightest after postfix `.attr`, `[index]`,
// `[a:b:c]` and calls). Filter and test names are resolved while parsing, so an unknown one is a
// syntax error, as in jinja2.
#pragma once

#include <memory>
#include <string_view>

#include "absl/status/statusor.h"
#include "engine/tokenizer/jinja_ast.h"

namespace mamba::tokenizer::jinja {

// Parses `source`; errors are INVALID_ARGUMENT "line L, column C: expected ..., got ...".
absl::StatusOr<std::unique_ptr<Program>> ParseProgram(std::string_view source);

}  // namespace mamba::tokenizer::jinja
