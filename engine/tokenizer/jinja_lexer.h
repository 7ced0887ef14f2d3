// Splits Jinja template source into tokens the way jinja2's lexer does in the environment
// transformers renders chat templates with: trim_blocks (the newline after a block or comment
// tag is dropped) and lstrip_blocks (spaces and tabs before a block or comment tag at the start
// of a line are dropped) on; "-" on a tag strips all whitespace on that side, "+" keeps it;
// comments vanish; {% raw %}...{% endraw %} is text; \r\n and \r become \n; one newline at the
// very end of the template is dropped (keep_trailing_newline off).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace mamba::tokenizer::jinja {

struct Token {
  enum class Type : uint8_t {
    kText,           // literal template text (`text`)
    kVariableBegin,  // {{
    kVariableEnd,    // }}
    kBlockBegin,     // {%
    kBlockEnd,       // %}
    kName,           // identifier or keyword (`text`)
    kString,         // string literal (`text`: the decoded value)
    kInteger,        // `int_value`
    kFloat,          // `float_value`
    kOperator,       // `text`: one of + - * / // % ** ~ == != < <= > >= = . : | , ( ) [ ] { }
    kEnd,            // end of the template
  };
  Type type = Type::kEnd;
  std::string text;
  int64_t int_value = 0;
  double float_value = 0.0;
  int line = 1;    // 1-based
  int column = 1;  // 1-based, in characters
};

// Tokens of `source` (valid UTF-8, else INVALID_ARGUMENT), ending with kEnd. Errors name the
// line and column: an unterminated tag, comment, string or raw block, an unexpected character,
// unbalanced brackets, an integer literal beyond 64 bits.
absl::StatusOr<std::vector<Token>> Tokenize(std::string_view source);

// "line 3, column 7" for error messages.
std::string Where(int line, int column);

}  // namespace mamba::tokenizer::jinja
