// The parser's two halves share a cursor over the tokens: TokenCursor (where the parser is, and
// the "line L, column C: expected X, got Y" errors), and ExpressionParser, jinja2's expression
// grammar. The statements (jinja_parser.cc) drive both.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/tokenizer/jinja_ast.h"
#include "engine/tokenizer/jinja_lexer.h"

namespace mamba::tokenizer::jinja {

// Nesting of expressions (parentheses, operators) and of block statements at most this deep:
// the parser and the renderer recurse once per level.
inline constexpr int kMaxSyntaxDepth = 200;

// How a token reads in an error message: "'}}'", "'endfor'", "a string", "end of template".
std::string DescribeToken(const Token& t);

// The position in a token list (which ends with Token::Type::kEnd) and its errors.
class TokenCursor {
 public:
  explicit TokenCursor(std::vector<Token> tokens) : tokens_(std::move(tokens)) {}

  const Token& Cur() const { return tokens_[pos_]; }
  const Token& Peek(size_t k = 1) const { return tokens_[std::min(pos_ + k, tokens_.size() - 1)]; }
  void Advance() {
    if (pos_ + 1 < tokens_.size()) ++pos_;
  }
  bool IsOp(std::string_view op) const {
    return Cur().type == Token::Type::kOperator && Cur().text == op;
  }
  bool IsName(std::string_view name) const {
    return Cur().type == Token::Type::kName && Cur().text == name;
  }

  // INVALID_ARGUMENT "line L, column C: message" at `t`.
  absl::Status ErrorAt(const Token& t, std::string_view message) const;
  // "expected <what>, got <the current token>".
  absl::Status Expected(std::string_view what) const;
  // Consumes the operator `op`, or fails as Expected.
  absl::Status ExpectOp(std::string_view op);
  absl::Status ExpectBlockEnd();
  // Consumes and returns a name token.
  absl::StatusOr<std::string> ExpectName(std::string_view what);
  // "nested more than kMaxSyntaxDepth levels deep" at the current token.
  absl::Status TooDeep() const;

 private:
  std::vector<Token> tokens_;
  size_t pos_ = 0;
};

// Counts one level of nesting for as long as it lives.
class DepthGuard {
 public:
  explicit DepthGuard(int* depth) : depth_(depth) { ++*depth_; }
  ~DepthGuard() { --*depth_; }
  DepthGuard(const DepthGuard&) = delete;
  DepthGuard& operator=(const DepthGuard&) = delete;

 private:
  int* depth_;
};

// jinja2's expression grammar over a TokenCursor, which it advances past what it parses.
class ExpressionParser {
 public:
  explicit ExpressionParser(TokenCursor* cursor) : cursor_(cursor) {}
  ExpressionParser(const ExpressionParser&) = delete;
  ExpressionParser& operator=(const ExpressionParser&) = delete;

  // Comma-separated expressions: one without a comma is itself, otherwise a tuple (empty
  // only with `explicit_parens`). Stops before "}}", "%}", ")" and the name `extra_end`.
  // Without `with_condexpr`, "a if b" is not parsed (for loops: "for x in xs if cond").
  absl::StatusOr<ExprPtr> ParseTuple(bool with_condexpr, bool explicit_parens,
                                     std::string_view extra_end = "");
  absl::StatusOr<ExprPtr> ParseExpression(bool with_condexpr);
  // "| f(args) | g" applied to `input` (null: the input of a {% filter %} block).
  absl::StatusOr<ExprPtr> ParseFilterChain(ExprPtr input, bool leading_pipe = true);

 private:
  const Token& Cur() const { return cursor_->Cur(); }
  const Token& Peek(size_t k = 1) const { return cursor_->Peek(k); }
  void Advance() { cursor_->Advance(); }
  bool IsOp(std::string_view op) const { return cursor_->IsOp(op); }
  bool IsName(std::string_view name) const { return cursor_->IsName(name); }
  absl::Status ErrorAt(const Token& t, std::string_view message) const {
    return cursor_->ErrorAt(t, message);
  }
  absl::Status Expected(std::string_view what) const { return cursor_->Expected(what); }
  absl::Status ExpectOp(std::string_view op) { return cursor_->ExpectOp(op); }
  absl::StatusOr<std::string> ExpectName(std::string_view what) {
    return cursor_->ExpectName(what);
  }
  absl::Status TooDeep() const { return cursor_->TooDeep(); }
  static ExprPtr MakeExpr(Expr::Type type, int line);

  bool IsTupleEnd(std::string_view extra_end) const;
  absl::StatusOr<ExprPtr> ParseCondExpr();
  absl::StatusOr<ExprPtr> ParseLogical(bool is_or);
  absl::StatusOr<ExprPtr> ParseOr() { return ParseLogical(true); }
  absl::StatusOr<ExprPtr> ParseNot();
  absl::StatusOr<ExprPtr> ParseCompare();
  absl::StatusOr<ExprPtr> Binary(BinaryOp op, ExprPtr left, ExprPtr right, int line);
  absl::StatusOr<ExprPtr> ParseMath1();
  absl::StatusOr<ExprPtr> ParseConcat();
  absl::StatusOr<ExprPtr> ParseMath2();
  absl::StatusOr<ExprPtr> ParsePow();
  absl::StatusOr<ExprPtr> ParseUnary(bool with_filter);
  absl::StatusOr<ExprPtr> ParsePrimary();
  absl::StatusOr<ExprPtr> ParseCollection(bool dict);
  absl::StatusOr<ExprPtr> ParsePostfix(ExprPtr node);
  absl::StatusOr<ExprPtr> ParseSubscript(ExprPtr object, int line);
  absl::Status ParseArgs(Expr* node);
  absl::StatusOr<ExprPtr> ParseCall(ExprPtr callee);
  absl::StatusOr<ExprPtr> ParseFilter(ExprPtr input);
  absl::StatusOr<ExprPtr> ParseTest(ExprPtr input);
  absl::StatusOr<ExprPtr> ParseFilterTests(ExprPtr node);

  TokenCursor* cursor_;
  int depth_ = 0;
};

}  // namespace mamba::tokenizer::jinja
