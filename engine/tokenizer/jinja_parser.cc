#include "engine/tokenizer/jinja_parser.h"

#include <functional>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/tokenizer/jinja_expression_parser.h"
#include "engine/tokenizer/jinja_lexer.h"

namespace mamba::tokenizer::jinja {
namespace {

using TokenType = Token::Type;

// The tags jinja2 knows that this engine refuses (they need a loader, or are not used by chat
// templates), so that the error says so rather than "unknown tag".
constexpr std::string_view kUnsupportedTags[] = {"include", "import", "from",  "extends",
                                                 "block",   "do",     "trans", "autoescape"};

std::string QuoteAll(std::initializer_list<std::string_view> names) {
  std::vector<std::string> quoted;
  for (std::string_view n : names) quoted.push_back(absl::StrCat("'", AsAbsl(n), "'"));
  if (quoted.size() <= 1) return absl::StrJoin(quoted, "");
  return absl::StrCat(absl::StrJoin(quoted.begin(), quoted.end() - 1, ", "), " or ", quoted.back());
}

// Calls fn(name) for every variable name an expression or statement reads.
void ForEachName(const Expr* e, const std::function<void(const std::string&)>& fn) {
  if (e == nullptr) return;
  if (e->type == Expr::Type::kName) fn(e->name);
  for (const ExprPtr& o : e->operands) ForEachName(o.get(), fn);
  for (const auto& kw : e->kwargs) ForEachName(kw.second.get(), fn);
}

void ForEachName(const Body& body, const std::function<void(const std::string&)>& fn) {
  for (const StmtPtr& s : body) {
    ForEachName(s->expr.get(), fn);
    ForEachName(s->condition.get(), fn);
    ForEachName(s->filter.get(), fn);
    for (const ExprPtr& v : s->values) ForEachName(v.get(), fn);
    for (const IfBranch& b : s->branches) {
      ForEachName(b.condition.get(), fn);
      ForEachName(b.body, fn);
    }
    for (const Param& p : s->params) ForEachName(p.default_value.get(), fn);
    ForEachName(s->body, fn);
    ForEachName(s->else_body, fn);
  }
}

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : cursor_(std::move(tokens)), expressions_(&cursor_) {}

  absl::StatusOr<std::unique_ptr<Program>> Run() {
    auto program = std::make_unique<Program>();
    std::string end;
    if (absl::Status s = ParseBody(&program->body, {}, nullptr, &end); !s.ok()) return s;
    return program;
  }

 private:
  // What a body is closing, for error messages: "the 'for' of line 3".
  struct Opener {
    std::string_view tag;
    int line;
  };

  const Token& Cur() const { return cursor_.Cur(); }
  const Token& Peek(size_t k = 1) const { return cursor_.Peek(k); }
  void Advance() { cursor_.Advance(); }
  bool IsOp(std::string_view op) const { return cursor_.IsOp(op); }
  bool IsName(std::string_view name) const { return cursor_.IsName(name); }
  absl::Status ErrorAt(const Token& t, std::string_view message) const {
    return cursor_.ErrorAt(t, message);
  }
  absl::Status Expected(std::string_view what) const { return cursor_.Expected(what); }
  absl::Status ExpectOp(std::string_view op) { return cursor_.ExpectOp(op); }
  absl::Status ExpectBlockEnd() { return cursor_.ExpectBlockEnd(); }
  absl::StatusOr<std::string> ExpectName(std::string_view what) { return cursor_.ExpectName(what); }
  absl::Status TooDeep() const { return cursor_.TooDeep(); }
  absl::StatusOr<ExprPtr> ParseTuple(bool with_condexpr, bool explicit_parens,
                                     std::string_view extra_end = "") {
    return expressions_.ParseTuple(with_condexpr, explicit_parens, extra_end);
  }
  absl::StatusOr<ExprPtr> ParseExpression(bool with_condexpr) {
    return expressions_.ParseExpression(with_condexpr);
  }
  absl::StatusOr<ExprPtr> ParseFilterChain(ExprPtr input, bool leading_pipe = true) {
    return expressions_.ParseFilterChain(std::move(input), leading_pipe);
  }

  // ------------------------------------------------------------------------------------------
  // Statements.

  // Parses statements into *body until a block tag named in `end_tags` (its name is consumed
  // and stored in *found; the rest of that tag is the caller's), or the end of the template
  // when `end_tags` is empty.
  absl::Status ParseBody(Body* body, std::initializer_list<std::string_view> end_tags,
                         const Opener* opener, std::string* found) {
    DepthGuard guard(&statement_depth_);
    if (statement_depth_ > kMaxSyntaxDepth) return TooDeep();
    while (true) {
      const Token& t = Cur();
      switch (t.type) {
        case TokenType::kText: {
          auto s = std::make_unique<Stmt>();
          s->type = Stmt::Type::kText;
          s->line = t.line;
          s->text = t.text;
          body->push_back(std::move(s));
          Advance();
          break;
        }
        case TokenType::kVariableBegin: {
          Advance();
          auto s = std::make_unique<Stmt>();
          s->type = Stmt::Type::kOutput;
          s->line = t.line;
          absl::StatusOr<ExprPtr> e = ParseTuple(true, false);
          if (!e.ok()) return e.status();
          s->expr = *std::move(e);
          if (Cur().type != TokenType::kVariableEnd) return Expected("'}}'");
          Advance();
          body->push_back(std::move(s));
          break;
        }
        case TokenType::kBlockBegin: {
          const Token& name = Peek();
          if (name.type == TokenType::kName) {
            for (std::string_view end : end_tags) {
              if (name.text == end) {
                Advance();
                Advance();
                *found = name.text;
                return absl::OkStatus();
              }
            }
          }
          Advance();
          if (absl::Status s = ParseStatement(body, end_tags, opener); !s.ok()) return s;
          break;
        }
        case TokenType::kEnd:
          if (end_tags.size() == 0) return absl::OkStatus();
          return ErrorAt(t, absl::StrCat("expected ", QuoteAll(end_tags), " to close the '",
                                         AsAbsl(opener->tag), "' of line ", opener->line,
                                         ", got end of template"));
        default:
          return ErrorAt(t, absl::StrCat("unexpected ", DescribeToken(t)));
      }
    }
  }

  absl::Status ParseStatement(Body* body, std::initializer_list<std::string_view> end_tags,
                              const Opener* opener) {
    const Token tag = Cur();
    if (tag.type != TokenType::kName) return Expected("a tag name");
    const std::string& name = tag.text;
    for (std::string_view unsupported : kUnsupportedTags) {
      if (name == unsupported) {
        return ErrorAt(
            tag, absl::StrCat("the '", AsAbsl(name), "' tag is not supported in chat templates"));
      }
    }
    auto s = std::make_unique<Stmt>();
    s->line = tag.line;
    Advance();
    absl::Status status;
    if (name == "for") {
      status = ParseFor(s.get());
    } else if (name == "if") {
      status = ParseIf(s.get());
    } else if (name == "set") {
      status = ParseSet(s.get());
    } else if (name == "macro") {
      status = ParseMacro(s.get());
    } else if (name == "call") {
      status = ParseCallBlock(s.get());
    } else if (name == "filter") {
      status = ParseFilterBlock(s.get());
    } else if (name == "with") {
      status = ParseWith(s.get());
    } else if (name == "generation") {
      // transformers' AssistantTracker extension: marks the assistant's text; renders as is.
      s->type = Stmt::Type::kScope;
      status = ParseBlockBody(s.get(), "generation", "endgeneration");
    } else if (name == "break" || name == "continue") {
      if (loop_depth_ == 0) {
        return ErrorAt(tag, absl::StrCat("'", AsAbsl(name), "' outside of a for loop"));
      }
      s->type = name == "break" ? Stmt::Type::kBreak : Stmt::Type::kContinue;
      status = ExpectBlockEnd();
    } else if (end_tags.size() > 0) {
      return ErrorAt(
          tag, absl::StrCat("unexpected '", AsAbsl(name), "': expected ", QuoteAll(end_tags),
                            " to close the '", AsAbsl(opener->tag), "' of line ", opener->line));
    } else {
      return ErrorAt(tag, absl::StrCat("unknown tag '", AsAbsl(name), "'"));
    }
    if (!status.ok()) return status;
    body->push_back(std::move(s));
    return absl::OkStatus();
  }

  // "%}", the body, then the end tag and its "%}".
  absl::Status ParseBlockBody(Stmt* s, std::string_view tag, std::string_view end) {
    if (absl::Status st = ExpectBlockEnd(); !st.ok()) return st;
    const Opener opener{tag, s->line};
    std::string found;
    if (absl::Status st = ParseBody(&s->body, {end}, &opener, &found); !st.ok()) return st;
    return ExpectBlockEnd();
  }

  // A name, "ns.attr" (when `namespace_ok`), or a tuple of names ("a, b" or "(a, b)").
  absl::Status ParseTargets(Stmt* s, bool namespace_ok, std::string_view end_name) {
    const bool parenthesized = IsOp("(");
    if (parenthesized) Advance();
    while (true) {
      Target target;
      absl::StatusOr<std::string> name = ExpectName("a variable name");
      if (!name.ok()) return name.status();
      target.name = *std::move(name);
      if (IsOp(".") && namespace_ok && s->targets.empty() && !parenthesized) {
        Advance();
        absl::StatusOr<std::string> attr = ExpectName("an attribute name");
        if (!attr.ok()) return attr.status();
        target.attr = *std::move(attr);
        s->targets.push_back(std::move(target));
        return absl::OkStatus();
      }
      s->targets.push_back(std::move(target));
      if (!IsOp(",")) break;
      s->unpack = true;
      Advance();
      if ((parenthesized && IsOp(")")) || IsName(end_name)) break;
    }
    if (parenthesized) {
      s->unpack = true;
      return ExpectOp(")");
    }
    return absl::OkStatus();
  }

  absl::Status ParseFor(Stmt* s) {
    s->type = Stmt::Type::kFor;
    if (absl::Status st = ParseTargets(s, false, "in"); !st.ok()) return st;
    if (!IsName("in")) return Expected("'in'");
    Advance();
    absl::StatusOr<ExprPtr> iter = ParseTuple(false, false, "recursive");
    if (!iter.ok()) return iter.status();
    s->expr = *std::move(iter);
    if (IsName("if")) {
      Advance();
      absl::StatusOr<ExprPtr> cond = ParseExpression(true);
      if (!cond.ok()) return cond.status();
      s->condition = *std::move(cond);
    }
    if (IsName("recursive")) return ErrorAt(Cur(), "recursive loops are not supported");
    if (absl::Status st = ExpectBlockEnd(); !st.ok()) return st;
    const Opener opener{"for", s->line};
    std::string found;
    ++loop_depth_;
    absl::Status st = ParseBody(&s->body, {"endfor", "else"}, &opener, &found);
    --loop_depth_;
    if (!st.ok()) return st;
    if (found == "else") {
      if (absl::Status e = ExpectBlockEnd(); !e.ok()) return e;
      const int saved = loop_depth_;
      loop_depth_ = 0;  // the else body runs when the loop did not: nothing to break out of
      st = ParseBody(&s->else_body, {"endfor"}, &opener, &found);
      loop_depth_ = saved;
      if (!st.ok()) return st;
    }
    return ExpectBlockEnd();
  }

  absl::Status ParseIf(Stmt* s) {
    s->type = Stmt::Type::kIf;
    const Opener opener{"if", s->line};
    std::string found = "if";
    while (found == "if" || found == "elif") {
      IfBranch branch;
      absl::StatusOr<ExprPtr> cond = ParseTuple(false, false);
      if (!cond.ok()) return cond.status();
      branch.condition = *std::move(cond);
      if (absl::Status st = ExpectBlockEnd(); !st.ok()) return st;
      if (absl::Status st = ParseBody(&branch.body, {"elif", "else", "endif"}, &opener, &found);
          !st.ok()) {
        return st;
      }
      s->branches.push_back(std::move(branch));
    }
    if (found == "else") {
      IfBranch branch;
      if (absl::Status st = ExpectBlockEnd(); !st.ok()) return st;
      if (absl::Status st = ParseBody(&branch.body, {"endif"}, &opener, &found); !st.ok())
        return st;
      s->branches.push_back(std::move(branch));
    }
    return ExpectBlockEnd();
  }

  absl::Status ParseSet(Stmt* s) {
    if (absl::Status st = ParseTargets(s, true, ""); !st.ok()) return st;
    if (IsOp("=")) {
      Advance();
      s->type = Stmt::Type::kSet;
      absl::StatusOr<ExprPtr> value = ParseTuple(true, false);
      if (!value.ok()) return value.status();
      s->expr = *std::move(value);
      return ExpectBlockEnd();
    }
    s->type = Stmt::Type::kSetBlock;
    if (s->unpack) return Expected("'='");
    if (IsOp("|")) {
      absl::StatusOr<ExprPtr> filter = ParseFilterChain(nullptr);
      if (!filter.ok()) return filter.status();
      s->filter = *std::move(filter);
    }
    return ParseCallableBody(s, "set", "endset");
  }

  // "(a, b=1, ...)" of a macro or a call block.
  absl::Status ParseParams(std::vector<Param>* params) {
    if (absl::Status st = ExpectOp("("); !st.ok()) return st;
    while (!IsOp(")")) {
      if (!params->empty()) {
        if (absl::Status st = ExpectOp(","); !st.ok()) return st;
        if (IsOp(")")) break;
      }
      Param p;
      const Token at = Cur();
      absl::StatusOr<std::string> name = ExpectName("a parameter name");
      if (!name.ok()) return name.status();
      p.name = *std::move(name);
      if (IsOp("=")) {
        Advance();
        absl::StatusOr<ExprPtr> def = ParseExpression(true);
        if (!def.ok()) return def.status();
        p.default_value = *std::move(def);
      } else if (!params->empty() && params->back().default_value != nullptr) {
        return ErrorAt(at, "non-default argument follows default argument");
      }
      params->push_back(std::move(p));
    }
    Advance();
    return absl::OkStatus();
  }

  // The body of a macro, call block, set block or filter block: it is rendered on its own, so
  // loops around it are not its loops.
  absl::Status ParseCallableBody(Stmt* s, std::string_view tag, std::string_view end) {
    const int saved = loop_depth_;
    loop_depth_ = 0;
    absl::Status st = ParseBlockBody(s, tag, end);
    loop_depth_ = saved;
    if (!st.ok()) return st;
    ForEachName(s->body, [s](const std::string& n) {
      s->uses_varargs |= n == "varargs";
      s->uses_kwargs |= n == "kwargs";
      s->uses_caller |= n == "caller";
    });
    return absl::OkStatus();
  }

  absl::Status ParseMacro(Stmt* s) {
    s->type = Stmt::Type::kMacro;
    absl::StatusOr<std::string> name = ExpectName("a macro name");
    if (!name.ok()) return name.status();
    s->text = *std::move(name);
    if (absl::Status st = ParseParams(&s->params); !st.ok()) return st;
    return ParseCallableBody(s, "macro", "endmacro");
  }

  absl::Status ParseCallBlock(Stmt* s) {
    s->type = Stmt::Type::kCallBlock;
    s->text = "caller";
    if (IsOp("(")) {
      if (absl::Status st = ParseParams(&s->params); !st.ok()) return st;
    }
    const Token at = Cur();
    absl::StatusOr<ExprPtr> call = ParseExpression(true);
    if (!call.ok()) return call.status();
    if ((*call)->type != Expr::Type::kCall) return ErrorAt(at, "expected a macro call");
    s->expr = *std::move(call);
    return ParseCallableBody(s, "call", "endcall");
  }

  absl::Status ParseFilterBlock(Stmt* s) {
    s->type = Stmt::Type::kFilterBlock;
    absl::StatusOr<ExprPtr> filter = ParseFilterChain(nullptr, /*leading_pipe=*/false);
    if (!filter.ok()) return filter.status();
    s->filter = *std::move(filter);
    return ParseCallableBody(s, "filter", "endfilter");
  }

  absl::Status ParseWith(Stmt* s) {
    s->type = Stmt::Type::kWith;
    while (Cur().type != TokenType::kBlockEnd) {
      if (!s->targets.empty()) {
        if (absl::Status st = ExpectOp(","); !st.ok()) return st;
      }
      absl::StatusOr<std::string> name = ExpectName("a variable name");
      if (!name.ok()) return name.status();
      if (absl::Status st = ExpectOp("="); !st.ok()) return st;
      absl::StatusOr<ExprPtr> value = ParseExpression(true);
      if (!value.ok()) return value.status();
      s->targets.push_back(Target{*std::move(name), ""});
      s->values.push_back(*std::move(value));
    }
    return ParseBlockBody(s, "with", "endwith");
  }

  TokenCursor cursor_;
  ExpressionParser expressions_;
  int loop_depth_ = 0;
  int statement_depth_ = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Program>> ParseProgram(std::string_view source) {
  absl::StatusOr<std::vector<Token>> tokens = Tokenize(source);
  if (!tokens.ok()) return tokens.status();
  return Parser(*std::move(tokens)).Run();
}

}  // namespace mamba::tokenizer::jinja
