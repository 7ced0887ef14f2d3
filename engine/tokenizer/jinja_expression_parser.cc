#include "engine/tokenizer/jinja_expression_parser.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace mamba::tokenizer::jinja {

using TokenType = Token::Type;

std::string DescribeToken(const Token& t) {
  switch (t.type) {
    case TokenType::kText:
      return "template text";
    case TokenType::kVariableBegin:
      return "'{{'";
    case TokenType::kVariableEnd:
      return "'}}'";
    case TokenType::kBlockBegin:
      return "'{%'";
    case TokenType::kBlockEnd:
      return "'%}'";
    case TokenType::kName:
    case TokenType::kOperator:
      return absl::StrCat("'", t.text, "'");
    case TokenType::kString:
      return "a string";
    case TokenType::kInteger:
      return "an integer";
    case TokenType::kFloat:
      return "a number";
    case TokenType::kEnd:
      return "end of template";
  }
  return "a token";
}

absl::Status TokenCursor::ErrorAt(const Token& t, std::string_view message) const {
  return absl::InvalidArgumentError(absl::StrCat(Where(t.line, t.column), ": ", AsAbsl(message)));
}

absl::Status TokenCursor::Expected(std::string_view what) const {
  return ErrorAt(Cur(), absl::StrCat("expected ", AsAbsl(what), ", got ", DescribeToken(Cur())));
}

absl::Status TokenCursor::ExpectOp(std::string_view op) {
  if (!IsOp(op)) return Expected(absl::StrCat("'", AsAbsl(op), "'"));
  Advance();
  return absl::OkStatus();
}

absl::Status TokenCursor::ExpectBlockEnd() {
  if (Cur().type != Token::Type::kBlockEnd) return Expected("'%}'");
  Advance();
  return absl::OkStatus();
}

absl::StatusOr<std::string> TokenCursor::ExpectName(std::string_view what) {
  if (Cur().type != Token::Type::kName) return Expected(what);
  std::string name = Cur().text;
  Advance();
  return name;
}

absl::Status TokenCursor::TooDeep() const {
  return ErrorAt(Cur(), absl::StrCat("nested more than ", kMaxSyntaxDepth, " levels deep"));
}

ExprPtr ExpressionParser::MakeExpr(Expr::Type type, int line) {
  auto e = std::make_unique<Expr>();
  e->type = type;
  e->line = line;
  return e;
}

bool ExpressionParser::IsTupleEnd(std::string_view extra_end) const {
  const TokenType t = Cur().type;
  return t == TokenType::kVariableEnd || t == TokenType::kBlockEnd || IsOp(")") ||
         (!extra_end.empty() && IsName(extra_end));
}

// Comma-separated expressions: one without a comma is itself, otherwise a tuple.
absl::StatusOr<ExprPtr> ExpressionParser::ParseTuple(bool with_condexpr, bool explicit_parens,
                                                     std::string_view extra_end) {
  const int line = Cur().line;
  std::vector<ExprPtr> items;
  bool is_tuple = false;
  while (true) {
    if (!items.empty()) {
      if (absl::Status st = ExpectOp(","); !st.ok()) return st;
    }
    if (IsTupleEnd(extra_end)) break;
    absl::StatusOr<ExprPtr> e = ParseExpression(with_condexpr);
    if (!e.ok()) return e.status();
    items.push_back(*std::move(e));
    if (!IsOp(",")) break;
    is_tuple = true;
  }
  if (!is_tuple) {
    if (!items.empty()) return std::move(items[0]);
    if (!explicit_parens) return Expected("an expression");
  }
  ExprPtr tuple = MakeExpr(Expr::Type::kTuple, line);
  tuple->operands = std::move(items);
  return tuple;
}

absl::StatusOr<ExprPtr> ExpressionParser::ParseExpression(bool with_condexpr) {
  return with_condexpr ? ParseCondExpr() : ParseOr();
}

absl::StatusOr<ExprPtr> ExpressionParser::ParseCondExpr() {
  DepthGuard guard(&depth_);
  if (depth_ > kMaxSyntaxDepth) return TooDeep();
  absl::StatusOr<ExprPtr> expr = ParseOr();
  if (!expr.ok()) return expr;
  while (IsName("if")) {
    const int line = Cur().line;
    Advance();
    absl::StatusOr<ExprPtr> cond = ParseOr();
    if (!cond.ok()) return cond;
    ExprPtr otherwise;
    if (IsName("else")) {
      Advance();
      absl::StatusOr<ExprPtr> e = ParseCondExpr();
      if (!e.ok()) return e;
      otherwise = *std::move(e);
    }
    ExprPtr node = MakeExpr(Expr::Type::kCondExpr, line);
    node->operands.push_back(*std::move(cond));
    node->operands.push_back(*std::move(expr));
    node->operands.push_back(std::move(otherwise));
    expr = std::move(node);
  }
  return expr;
}

absl::StatusOr<ExprPtr> ExpressionParser::ParseLogical(bool is_or) {
  absl::StatusOr<ExprPtr> left = is_or ? ParseLogical(false) : ParseNot();
  if (!left.ok()) return left;
  while (IsName(is_or ? "or" : "and")) {
    const int line = Cur().line;
    Advance();
    absl::StatusOr<ExprPtr> right = is_or ? ParseLogical(false) : ParseNot();
    if (!right.ok()) return right;
    ExprPtr node = MakeExpr(is_or ? Expr::Type::kOr : Expr::Type::kAnd, line);
    node->operands.push_back(*std::move(left));
    node->operands.push_back(*std::move(right));
    left = std::move(node);
  }
  return left;
}
absl::StatusOr<ExprPtr> ExpressionParser::ParseNot() {
  if (!IsName("not")) return ParseCompare();
  DepthGuard guard(&depth_);
  if (depth_ > kMaxSyntaxDepth) return TooDeep();
  const int line = Cur().line;
  Advance();
  absl::StatusOr<ExprPtr> operand = ParseNot();
  if (!operand.ok()) return operand;
  ExprPtr node = MakeExpr(Expr::Type::kNot, line);
  node->operands.push_back(*std::move(operand));
  return node;
}

absl::StatusOr<ExprPtr> ExpressionParser::ParseCompare() {
  const int line = Cur().line;
  absl::StatusOr<ExprPtr> first = ParseMath1();
  if (!first.ok()) return first;
  ExprPtr node = MakeExpr(Expr::Type::kCompare, line);
  node->operands.push_back(*std::move(first));
  while (true) {
    CompareOp op;
    if (IsOp("==")) {
      op = CompareOp::kEq;
    } else if (IsOp("!=")) {
      op = CompareOp::kNe;
    } else if (IsOp("<")) {
      op = CompareOp::kLt;
    } else if (IsOp("<=")) {
      op = CompareOp::kLe;
    } else if (IsOp(">")) {
      op = CompareOp::kGt;
    } else if (IsOp(">=")) {
      op = CompareOp::kGe;
    } else if (IsName("in")) {
      op = CompareOp::kIn;
    } else if (IsName("not") && Peek().type == TokenType::kName && Peek().text == "in") {
      Advance();
      op = CompareOp::kNotIn;
    } else {
      break;
    }
    Advance();
    absl::StatusOr<ExprPtr> operand = ParseMath1();
    if (!operand.ok()) return operand;
    node->compare_ops.push_back(op);
    node->operands.push_back(*std::move(operand));
  }
  if (node->compare_ops.empty()) return std::move(node->operands[0]);
  return node;
}

absl::StatusOr<ExprPtr> ExpressionParser::Binary(BinaryOp op, ExprPtr left, ExprPtr right,
                                                 int line) {
  ExprPtr node = MakeExpr(Expr::Type::kBinary, line);
  node->op = op;
  node->operands.push_back(std::move(left));
  node->operands.push_back(std::move(right));
  return node;
}

absl::StatusOr<ExprPtr> ExpressionParser::ParseMath1() {
  absl::StatusOr<ExprPtr> left = ParseConcat();
  if (!left.ok()) return left;
  while (IsOp("+") || IsOp("-")) {
    const BinaryOp op = IsOp("+") ? BinaryOp::kAdd : BinaryOp::kSub;
    const int line = Cur().line;
    Advance();
    absl::StatusOr<ExprPtr> right = ParseConcat();
    if (!right.ok()) return right;
    left = Binary(op, *std::move(left), *std::move(right), line);
  }
  return left;
}

absl::StatusOr<ExprPtr> ExpressionParser::ParseConcat() {
  const int line = Cur().line;
  absl::StatusOr<ExprPtr> first = ParseMath2();
  if (!first.ok() || !IsOp("~")) return first;
  ExprPtr node = MakeExpr(Expr::Type::kConcat, line);
  node->operands.push_back(*std::move(first));
  while (IsOp("~")) {
    Advance();
    absl::StatusOr<ExprPtr> next = ParseMath2();
    if (!next.ok()) return next;
    node->operands.push_back(*std::move(next));
  }
  return node;
}

absl::StatusOr<ExprPtr> ExpressionParser::ParseMath2() {
  absl::StatusOr<ExprPtr> left = ParsePow();
  if (!left.ok()) return left;
  while (IsOp("*") || IsOp("/") || IsOp("//") || IsOp("%")) {
    const BinaryOp op = IsOp("*")    ? BinaryOp::kMul
                        : IsOp("/")  ? BinaryOp::kDiv
                        : IsOp("//") ? BinaryOp::kFloorDiv
                                     : BinaryOp::kMod;
    const int line = Cur().line;
    Advance();
    absl::StatusOr<ExprPtr> right = ParsePow();
    if (!right.ok()) return right;
    left = Binary(op, *std::move(left), *std::move(right), line);
  }
  return left;
}

absl::StatusOr<ExprPtr> ExpressionParser::ParsePow() {
  absl::StatusOr<ExprPtr> left = ParseUnary(true);
  if (!left.ok()) return left;
  while (IsOp("**")) {
    const int line = Cur().line;
    Advance();
    absl::StatusOr<ExprPtr> right = ParseUnary(true);
    if (!right.ok()) return right;
    left = Binary(BinaryOp::kPow, *std::move(left), *std::move(right), line);
  }
  return left;
}

absl::StatusOr<ExprPtr> ExpressionParser::ParseUnary(bool with_filter) {
  DepthGuard guard(&depth_);
  if (depth_ > kMaxSyntaxDepth) return TooDeep();
  absl::StatusOr<ExprPtr> node;
  if (IsOp("-") || IsOp("+")) {
    const Expr::Type type = IsOp("-") ? Expr::Type::kNeg : Expr::Type::kPos;
    const int line = Cur().line;
    Advance();
    absl::StatusOr<ExprPtr> operand = ParseUnary(false);
    if (!operand.ok()) return operand;
    ExprPtr n = MakeExpr(type, line);
    n->operands.push_back(*std::move(operand));
    node = std::move(n);
  } else {
    node = ParsePrimary();
  }
  if (!node.ok()) return node;
  node = ParsePostfix(*std::move(node));
  if (node.ok() && with_filter) node = ParseFilterTests(*std::move(node));
  return node;
}

absl::StatusOr<ExprPtr> ExpressionParser::ParsePrimary() {
  const Token& t = Cur();
  switch (t.type) {
    case TokenType::kName: {
      ExprPtr e = MakeExpr(Expr::Type::kLiteral, t.line);
      if (t.text == "true" || t.text == "True") {
        e->literal = Value::Bool(true);
      } else if (t.text == "false" || t.text == "False") {
        e->literal = Value::Bool(false);
      } else if (t.text == "none" || t.text == "None") {
        e->literal = Value::None();
      } else {
        e->type = Expr::Type::kName;
        e->name = t.text;
      }
      Advance();
      return e;
    }
    case TokenType::kString: {
      ExprPtr e = MakeExpr(Expr::Type::kLiteral, t.line);
      std::string s;
      while (Cur().type == TokenType::kString) {  // adjacent literals concatenate
        s += Cur().text;
        Advance();
      }
      e->literal = Value::String(std::move(s));
      return e;
    }
    case TokenType::kInteger:
    case TokenType::kFloat: {
      ExprPtr e = MakeExpr(Expr::Type::kLiteral, t.line);
      e->literal =
          t.type == TokenType::kInteger ? Value::Int(t.int_value) : Value::Float(t.float_value);
      Advance();
      return e;
    }
    case TokenType::kOperator:
      if (t.text == "(") {
        Advance();
        absl::StatusOr<ExprPtr> e = ParseTuple(true, true);
        if (!e.ok()) return e;
        if (absl::Status st = ExpectOp(")"); !st.ok()) return st;
        return e;
      }
      if (t.text == "[" || t.text == "{") return ParseCollection(t.text == "{");
      break;
    default:
      break;
  }
  return Expected("an expression");
}

absl::StatusOr<ExprPtr> ExpressionParser::ParseCollection(bool dict) {
  ExprPtr node = MakeExpr(dict ? Expr::Type::kDict : Expr::Type::kList, Cur().line);
  const std::string_view close = dict ? "}" : "]";
  Advance();
  while (!IsOp(close)) {
    if (!node->operands.empty()) {
      if (absl::Status st = ExpectOp(","); !st.ok()) return st;
      if (IsOp(close)) break;
    }
    absl::StatusOr<ExprPtr> item = ParseExpression(true);
    if (!item.ok()) return item;
    node->operands.push_back(*std::move(item));
    if (dict) {
      if (absl::Status st = ExpectOp(":"); !st.ok()) return st;
      absl::StatusOr<ExprPtr> value = ParseExpression(true);
      if (!value.ok()) return value;
      node->operands.push_back(*std::move(value));
    }
  }
  Advance();
  return node;
}

absl::StatusOr<ExprPtr> ExpressionParser::ParsePostfix(ExprPtr node) {
  while (true) {
    const int line = Cur().line;
    if (IsOp(".")) {
      Advance();
      if (Cur().type == TokenType::kName) {
        ExprPtr n = MakeExpr(Expr::Type::kGetAttr, line);
        n->name = Cur().text;
        n->operands.push_back(std::move(node));
        node = std::move(n);
      } else if (Cur().type == TokenType::kInteger) {
        ExprPtr n = MakeExpr(Expr::Type::kGetItem, line);
        ExprPtr index = MakeExpr(Expr::Type::kLiteral, line);
        index->literal = Value::Int(Cur().int_value);
        n->operands.push_back(std::move(node));
        n->operands.push_back(std::move(index));
        node = std::move(n);
      } else {
        return Expected("an attribute name");
      }
      Advance();
    } else if (IsOp("[")) {
      Advance();
      absl::StatusOr<ExprPtr> n = ParseSubscript(std::move(node), line);
      if (!n.ok()) return n;
      node = *std::move(n);
    } else if (IsOp("(")) {
      absl::StatusOr<ExprPtr> n = ParseCall(std::move(node));
      if (!n.ok()) return n;
      node = *std::move(n);
    } else {
      return node;
    }
  }
}

// After "[": an index, or a slice with any of its three parts.
absl::StatusOr<ExprPtr> ExpressionParser::ParseSubscript(ExprPtr object, int line) {
  ExprPtr parts[3];
  bool slice = false;
  for (int part = 0; part < 3; ++part) {
    if (!IsOp(":") && !IsOp("]")) {
      absl::StatusOr<ExprPtr> e = ParseExpression(true);
      if (!e.ok()) return e;
      parts[part] = *std::move(e);
    }
    if (!IsOp(":") || part == 2) break;
    slice = true;
    Advance();
  }
  if (IsOp(",")) return ErrorAt(Cur(), "tuple subscripts are not supported");
  if (absl::Status st = ExpectOp("]"); !st.ok()) return st;
  if (!slice) {
    if (parts[0] == nullptr) return ErrorAt(Cur(), "expected an index between '[' and ']'");
    ExprPtr n = MakeExpr(Expr::Type::kGetItem, line);
    n->operands.push_back(std::move(object));
    n->operands.push_back(std::move(parts[0]));
    return n;
  }
  ExprPtr n = MakeExpr(Expr::Type::kSlice, line);
  n->operands.push_back(std::move(object));
  for (ExprPtr& p : parts) n->operands.push_back(std::move(p));
  return n;
}

// "(args, name=value, ...)" into node->operands (after any already there) and kwargs.
absl::Status ExpressionParser::ParseArgs(Expr* node) {
  if (absl::Status st = ExpectOp("("); !st.ok()) return st;
  bool first = true;
  while (!IsOp(")")) {
    if (!first) {
      if (absl::Status st = ExpectOp(","); !st.ok()) return st;
      if (IsOp(")")) break;
    }
    first = false;
    if (IsOp("*") || IsOp("**")) {
      return ErrorAt(Cur(), "*args and **kwargs in calls are not supported");
    }
    if (Cur().type == TokenType::kName && Peek().type == TokenType::kOperator &&
        Peek().text == "=") {
      std::string name = Cur().text;
      Advance();
      Advance();
      absl::StatusOr<ExprPtr> value = ParseExpression(true);
      if (!value.ok()) return value.status();
      node->kwargs.emplace_back(std::move(name), *std::move(value));
      continue;
    }
    if (!node->kwargs.empty()) {
      return ErrorAt(Cur(), "positional argument follows keyword argument");
    }
    absl::StatusOr<ExprPtr> value = ParseExpression(true);
    if (!value.ok()) return value.status();
    node->operands.push_back(*std::move(value));
  }
  Advance();
  return absl::OkStatus();
}

absl::StatusOr<ExprPtr> ExpressionParser::ParseCall(ExprPtr callee) {
  ExprPtr node = MakeExpr(Expr::Type::kCall, Cur().line);
  node->operands.push_back(std::move(callee));
  if (absl::Status st = ParseArgs(node.get()); !st.ok()) return st;
  return node;
}

// One filter application after "|": name, optional arguments.
absl::StatusOr<ExprPtr> ExpressionParser::ParseFilter(ExprPtr input) {
  const Token at = Cur();
  absl::StatusOr<std::string> name = ExpectName("a filter name");
  if (!name.ok()) return name.status();
  ExprPtr node = MakeExpr(Expr::Type::kFilter, at.line);
  node->name = *std::move(name);
  node->filter = FindFilter(node->name);
  if (node->filter == nullptr)
    return ErrorAt(at, absl::StrCat("no filter named '", node->name, "'"));
  node->operands.push_back(std::move(input));
  if (IsOp("(")) {
    if (absl::Status st = ParseArgs(node.get()); !st.ok()) return st;
  }
  return node;
}

// The filters of {% filter %} and {% set x | f %}: a chain over a null input.
absl::StatusOr<ExprPtr> ExpressionParser::ParseFilterChain(ExprPtr input, bool leading_pipe) {
  if (leading_pipe) {
    if (absl::Status st = ExpectOp("|"); !st.ok()) return st;
  }
  absl::StatusOr<ExprPtr> node = ParseFilter(std::move(input));
  while (node.ok() && IsOp("|")) {
    Advance();
    node = ParseFilter(*std::move(node));
  }
  return node;
}

absl::StatusOr<ExprPtr> ExpressionParser::ParseTest(ExprPtr input) {
  const int line = Cur().line;
  ExprPtr node = MakeExpr(Expr::Type::kTest, line);
  if (IsName("not")) {
    node->negated = true;
    Advance();
  }
  const Token at = Cur();
  if (at.type != TokenType::kName) return Expected("a test name");
  node->name = at.text;
  node->test = FindTest(node->name);
  if (node->test == nullptr) return ErrorAt(at, absl::StrCat("no test named '", node->name, "'"));
  Advance();
  node->operands.push_back(std::move(input));
  if (IsOp("(")) {
    if (absl::Status st = ParseArgs(node.get()); !st.ok()) return st;
    return node;
  }
  // One argument without parentheses: "x is divisibleby 3", "x is sameas none".
  const TokenType t = Cur().type;
  const bool starts_primary = t == TokenType::kName || t == TokenType::kString ||
                              t == TokenType::kInteger || t == TokenType::kFloat || IsOp("(") ||
                              IsOp("[") || IsOp("{");
  if (starts_primary && !IsName("else") && !IsName("or") && !IsName("and")) {
    if (IsName("is")) return ErrorAt(Cur(), "tests cannot be chained with 'is'");
    absl::StatusOr<ExprPtr> arg = ParsePrimary();
    if (!arg.ok()) return arg;
    arg = ParsePostfix(*std::move(arg));
    if (!arg.ok()) return arg;
    node->operands.push_back(*std::move(arg));
  }
  return node;
}

absl::StatusOr<ExprPtr> ExpressionParser::ParseFilterTests(ExprPtr node) {
  while (true) {
    absl::StatusOr<ExprPtr> next;
    if (IsOp("|")) {
      Advance();
      next = ParseFilter(std::move(node));
    } else if (IsName("is")) {
      Advance();
      next = ParseTest(std::move(node));
    } else if (IsOp("(")) {
      next = ParseCall(std::move(node));
    } else {
      return node;
    }
    if (!next.ok()) return next;
    node = *std::move(next);
  }
}

}  // namespace mamba::tokenizer::jinja
