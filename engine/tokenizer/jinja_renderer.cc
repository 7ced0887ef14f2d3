#include "engine/tokenizer/jinja_renderer.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "engine/tokenizer/jinja_builtins.h"
#include "engine/tokenizer/jinja_parser.h"

namespace mamba::tokenizer::jinja {

// A variable scope: its own variables over those of its parent.
struct Scope {
  std::shared_ptr<Scope> parent;
  absl::flat_hash_map<std::string, Value> vars;

  const Value* Find(std::string_view name) const {
    for (const Scope* s = this; s != nullptr; s = s->parent.get()) {
      auto it = s->vars.find(AsAbsl(name));
      if (it != s->vars.end()) return &it->second;
    }
    return nullptr;
  }
};

namespace {

using ScopePtr = std::shared_ptr<Scope>;

// namespace() objects one render may create: each is kept until the render ends (see
// Renderer::namespaces_), so this bounds that memory.
constexpr size_t kMaxNamespaces = 100000;
// Statements and expressions being evaluated inside one another at once (macro calls
// included): bounds the renderer's stack, whatever mix of nesting a template builds, to well
// under 1 MiB (a level takes about 700 bytes in a release build).
constexpr int kMaxNesting = 1000;

ScopePtr ChildScope(const ScopePtr& parent) {
  auto scope = std::make_shared<Scope>();
  scope->parent = parent;
  return scope;
}

class Renderer {
 public:
  explicit Renderer(const RenderOptions& options)
      : options_(options), steps_left_(options.max_steps), ctx_{&options_, &steps_left_} {}

  Renderer(const Renderer&) = delete;
  Renderer& operator=(const Renderer&) = delete;

  ~Renderer() {
    // Namespaces may hold each other (or themselves) in cycles that reference counting cannot
    // free: empty them all first, then let them go one by one (no deep chain of frees).
    for (const auto& ns : namespaces_) ns->attrs = Dict();
    namespaces_.clear();
  }

  absl::StatusOr<std::string> Run(const Program& program, const Dict& context) {
    auto globals = std::make_shared<Scope>();
    for (const auto& [name, value] : Globals().items) globals->vars[name] = value;
    ScopePtr root = ChildScope(globals);
    for (const auto& [name, value] : context.items) root->vars[name] = value;
    std::string out;
    out_ = &out;
    Flow flow = Flow::kNormal;
    if (absl::Status s = Exec(program.body, root, &flow); !s.ok()) return s;
    return out;
  }

 private:
  enum class Flow { kNormal, kBreak, kContinue };

  // Counts one level of evaluation nesting for as long as it lives.
  class Nesting {
   public:
    explicit Nesting(int* depth) : depth_(depth) { ++*depth_; }
    ~Nesting() { --*depth_; }
    Nesting(const Nesting&) = delete;
    Nesting& operator=(const Nesting&) = delete;
    bool too_deep() const { return *depth_ > kMaxNesting; }

   private:
    int* depth_;
  };

  static absl::Status TooDeep(int line) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "line ", line, ": the template nests evaluation more than ", kMaxNesting, " levels deep"));
  }

  // Ends a loop's hold on its items however the loop is left.
  class LoopRelease {
   public:
    explicit LoopRelease(LoopState* loop) : loop_(loop) {}
    ~LoopRelease() {
      loop_->items.reset();
      loop_->changed_value.clear();
    }
    LoopRelease(const LoopRelease&) = delete;
    LoopRelease& operator=(const LoopRelease&) = delete;

   private:
    LoopState* loop_;
  };

  static absl::Status Error(int line, std::string_view message) {
    return absl::InvalidArgumentError(absl::StrCat("line ", line, ": ", AsAbsl(message)));
  }

  // A builtin's error, with the line added (raise_exception's message stays exact).
  static absl::Status AtLine(int line, const absl::Status& status) {
    if (status.ok() || IsRaisedByTemplate(status)) return status;
    return absl::Status(status.code(), absl::StrCat("line ", line, ": ", status.message()));
  }

  absl::Status Step(int line) {
    if (--steps_left_ >= 0) return absl::OkStatus();
    return absl::ResourceExhaustedError(absl::StrCat(
        "line ", line, ": the template took more than ", options_.max_steps, " steps"));
  }

  // After a builtin that may have spent steps (comparisons, sorting).
  absl::Status CheckSteps(int line) const {
    if (steps_left_ >= 0) return absl::OkStatus();
    return absl::ResourceExhaustedError(absl::StrCat(
        "line ", line, ": the template took more than ", options_.max_steps, " steps"));
  }

  absl::Status Emit(std::string_view text, int line) {
    if (out_->size() + text.size() > options_.max_output_bytes) {
      return absl::ResourceExhaustedError(absl::StrCat("line ", line,
                                                       ": rendered text larger than the limit of ",
                                                       options_.max_output_bytes, " bytes"));
    }
    out_->append(text);
    return absl::OkStatus();
  }

  // ------------------------------------------------------------------------------------------
  // Statements.

  absl::Status Exec(const Body& body, const ScopePtr& scope, Flow* flow) {
    Nesting nesting(&nesting_);
    if (nesting.too_deep()) return TooDeep(body.empty() ? 0 : body[0]->line);
    for (const StmtPtr& s : body) {
      if (absl::Status st = Step(s->line); !st.ok()) return st;
      if (absl::Status st = ExecOne(*s, scope, flow); !st.ok()) return st;
      if (*flow != Flow::kNormal) return absl::OkStatus();
    }
    return absl::OkStatus();
  }

  // Renders `body` in `scope` into a string of its own.
  absl::StatusOr<std::string> Capture(const Body& body, const ScopePtr& scope) {
    std::string text;
    std::string* saved = out_;
    out_ = &text;
    Flow flow = Flow::kNormal;
    absl::Status s = Exec(body, scope, &flow);
    out_ = saved;
    if (!s.ok()) return s;
    return text;
  }

  absl::Status ExecOne(const Stmt& s, const ScopePtr& scope, Flow* flow) {
    switch (s.type) {
      case Stmt::Type::kText:
        return Emit(s.text, s.line);
      case Stmt::Type::kOutput: {
        absl::StatusOr<Value> v = Eval(*s.expr, scope);
        if (!v.ok()) return v.status();
        if (v->is_string()) return Emit(v->str(), s.line);
        const size_t before = out_->size();
        absl::Status st = AppendStr(*v, options_.max_output_bytes, out_);
        if (!st.ok()) out_->resize(before);
        return AtLine(s.line, st);
      }
      case Stmt::Type::kIf:
        for (const IfBranch& branch : s.branches) {
          if (branch.condition != nullptr) {
            absl::StatusOr<Value> cond = Eval(*branch.condition, scope);
            if (!cond.ok()) return cond.status();
            if (!Truthy(*cond)) continue;
          }
          return Exec(branch.body, scope, flow);
        }
        return absl::OkStatus();
      case Stmt::Type::kFor:
        return ExecFor(s, scope);
      case Stmt::Type::kSet: {
        absl::StatusOr<Value> v = Eval(*s.expr, scope);
        if (!v.ok()) return v.status();
        return Assign(s, *std::move(v), scope);
      }
      case Stmt::Type::kSetBlock: {
        absl::StatusOr<std::string> text = Capture(s.body, ChildScope(scope));
        if (!text.ok()) return text.status();
        Value v = Value::String(*std::move(text));
        if (s.filter != nullptr) {
          absl::StatusOr<Value> filtered = EvalWithInput(*s.filter, scope, v);
          if (!filtered.ok()) return filtered.status();
          v = *std::move(filtered);
        }
        return Assign(s, std::move(v), scope);
      }
      case Stmt::Type::kMacro: {
        auto fn = std::make_shared<Callable>();
        fn->type = Callable::Type::kMacro;
        fn->name = s.text;
        fn->node = &s;
        fn->scope = scope;
        scope->vars[s.text] = Value::MakeCallable(std::move(fn));
        return absl::OkStatus();
      }
      case Stmt::Type::kCallBlock: {
        const Expr& call = *s.expr;
        absl::StatusOr<Value> callee = Eval(*call.operands[0], scope);
        if (!callee.ok()) return callee.status();
        absl::StatusOr<Args> args = EvalArgs(call, 1, scope);
        if (!args.ok()) return args.status();
        auto caller = std::make_shared<Callable>();
        caller->type = Callable::Type::kCaller;
        caller->name = "caller";
        caller->node = &s;
        caller->scope = scope;
        absl::StatusOr<Value> result =
            CallValue(*callee, *std::move(args), s.line, Value::MakeCallable(std::move(caller)));
        if (!result.ok()) return result.status();
        return ExecOutputValue(*result, s.line);
      }
      case Stmt::Type::kFilterBlock: {
        absl::StatusOr<std::string> text = Capture(s.body, ChildScope(scope));
        if (!text.ok()) return text.status();
        absl::StatusOr<Value> filtered =
            EvalWithInput(*s.filter, scope, Value::String(*std::move(text)));
        if (!filtered.ok()) return filtered.status();
        return ExecOutputValue(*filtered, s.line);
      }
      case Stmt::Type::kWith: {
        ScopePtr inner = ChildScope(scope);
        for (size_t i = 0; i < s.targets.size(); ++i) {
          absl::StatusOr<Value> v = Eval(*s.values[i], scope);
          if (!v.ok()) return v.status();
          inner->vars[s.targets[i].name] = *std::move(v);
        }
        return Exec(s.body, inner, flow);
      }
      case Stmt::Type::kScope:
        return Exec(s.body, scope, flow);
      case Stmt::Type::kBreak:
        *flow = Flow::kBreak;
        return absl::OkStatus();
      case Stmt::Type::kContinue:
        *flow = Flow::kContinue;
        return absl::OkStatus();
    }
    return Error(s.line, "unknown statement");
  }

  absl::Status ExecOutputValue(const Value& v, int line) {
    if (v.is_string()) return Emit(v.str(), line);
    const size_t before = out_->size();
    absl::Status st = AppendStr(v, options_.max_output_bytes, out_);
    if (!st.ok()) out_->resize(before);
    return AtLine(line, st);
  }

  // The values to bind to `count` names: `v` itself, or its items when unpacking.
  absl::StatusOr<std::vector<Value>> Unpack(const Value& v, size_t count, bool unpack, int line) {
    if (!unpack) return std::vector<Value>{v};
    absl::StatusOr<std::shared_ptr<const List>> items = Iterate(v);
    if (!items.ok()) return AtLine(line, items.status());
    if ((*items)->size() < count) {
      return Error(line, absl::StrCat("not enough values to unpack (expected ", count, ", got ",
                                      (*items)->size(), ")"));
    }
    if ((*items)->size() > count) {
      return Error(line, absl::StrCat("too many values to unpack (expected ", count, ")"));
    }
    return std::vector<Value>((*items)->begin(), (*items)->end());
  }

  absl::Status Assign(const Stmt& s, Value v, const ScopePtr& scope) {
    if (!s.unpack && !s.targets[0].attr.empty()) {
      const Target& t = s.targets[0];
      const Value* ns = scope->Find(t.name);
      if (ns == nullptr || ns->kind() != Value::Kind::kNamespace) {
        return Error(s.line, absl::StrCat("cannot assign attribute '", t.attr, "' on '", t.name,
                                          "': it is not a namespace"));
      }
      ns->ns().attrs.Set(t.attr, std::move(v));
      return absl::OkStatus();
    }
    absl::StatusOr<std::vector<Value>> values = Unpack(v, s.targets.size(), s.unpack, s.line);
    if (!values.ok()) return values.status();
    for (size_t i = 0; i < s.targets.size(); ++i) scope->vars[s.targets[i].name] = (*values)[i];
    return absl::OkStatus();
  }

  absl::Status ExecFor(const Stmt& s, const ScopePtr& scope) {
    absl::StatusOr<Value> iterable = Eval(*s.expr, scope);
    if (!iterable.ok()) return iterable.status();
    absl::StatusOr<std::shared_ptr<const List>> all = Iterate(*iterable);
    if (!all.ok()) return AtLine(s.line, all.status());
    std::shared_ptr<const List> items = *std::move(all);
    if (s.condition != nullptr) {
      // "for x in xs if cond": the loop sees only the items that pass (loop.length included).
      List kept;
      for (const Value& item : *items) {
        if (absl::Status st = Step(s.line); !st.ok()) return st;
        ScopePtr probe = ChildScope(scope);
        if (absl::Status st = BindLoopTargets(s, item, probe.get()); !st.ok()) return st;
        absl::StatusOr<Value> pass = Eval(*s.condition, probe);
        if (!pass.ok()) return pass.status();
        if (Truthy(*pass)) kept.push_back(item);
      }
      items = std::make_shared<const List>(std::move(kept));
    }
    if (items->empty()) {
      Flow flow = Flow::kNormal;
      return Exec(s.else_body, ChildScope(scope), &flow);
    }
    auto loop = std::make_shared<LoopState>();
    loop->items = items;
    loop->length = static_cast<int64_t>(items->size());
    LoopRelease release(loop.get());
    const Value loop_value = Value::MakeLoop(loop);
    for (size_t i = 0; i < items->size(); ++i) {
      if (absl::Status st = Step(s.line); !st.ok()) return st;
      loop->index0 = static_cast<int64_t>(i);
      ScopePtr iteration = ChildScope(scope);
      if (absl::Status st = BindLoopTargets(s, (*items)[i], iteration.get()); !st.ok()) return st;
      iteration->vars["loop"] = loop_value;
      Flow flow = Flow::kNormal;
      if (absl::Status st = Exec(s.body, iteration, &flow); !st.ok()) return st;
      if (flow == Flow::kBreak) break;
    }
    return absl::OkStatus();
  }

  absl::Status BindLoopTargets(const Stmt& s, const Value& item, Scope* scope) {
    absl::StatusOr<std::vector<Value>> values = Unpack(item, s.targets.size(), s.unpack, s.line);
    if (!values.ok()) return values.status();
    for (size_t i = 0; i < s.targets.size(); ++i) scope->vars[s.targets[i].name] = (*values)[i];
    return absl::OkStatus();
  }

  // ------------------------------------------------------------------------------------------
  // Calls.

  absl::StatusOr<Args> EvalArgs(const Expr& e, size_t first, const ScopePtr& scope) {
    Args args;
    for (size_t i = first; i < e.operands.size(); ++i) {
      absl::StatusOr<Value> v = Eval(*e.operands[i], scope);
      if (!v.ok()) return v.status();
      args.positional.push_back(*std::move(v));
    }
    for (const auto& [name, expr] : e.kwargs) {
      absl::StatusOr<Value> v = Eval(*expr, scope);
      if (!v.ok()) return v.status();
      args.keyword.emplace_back(name, *std::move(v));
    }
    return args;
  }

  absl::StatusOr<Value> CallValue(const Value& callee, Args args, int line,
                                  const Value& caller = Value()) {
    if (callee.is_undefined()) {
      return Error(line, callee.str().empty() ? "value is undefined" : callee.str());
    }
    if (callee.kind() != Value::Kind::kCallable) {
      return Error(line, absl::StrCat("'", TypeName(callee), "' object is not callable"));
    }
    const Callable& fn = callee.callable();
    if (fn.type == Callable::Type::kMacro || fn.type == Callable::Type::kCaller) {
      return CallMacro(fn, std::move(args), line, caller);
    }
    if (!caller.is_undefined()) {
      return Error(line, absl::StrCat("{% call %} needs a macro, not '", fn.name, "'"));
    }
    absl::StatusOr<Value> result = CallBuiltin(ctx_, fn, args);
    if (!result.ok()) return AtLine(line, result.status());
    if (absl::Status s = CheckSteps(line); !s.ok()) return s;
    if (result->kind() == Value::Kind::kNamespace) {
      if (namespaces_.size() >= kMaxNamespaces) {
        return absl::ResourceExhaustedError(
            absl::StrCat("line ", line, ": more than ", kMaxNamespaces, " namespace() objects"));
      }
      namespaces_.push_back(result->shared_ns());
    }
    return result;
  }

  // A macro, or the body of a {% call %} block as `caller`: binds the arguments in a scope
  // over the one it was defined in and renders its body to a string.
  absl::StatusOr<Value> CallMacro(const Callable& fn, Args args, int line, const Value& caller) {
    const Stmt& m = *fn.node;
    ScopePtr defined_in = fn.scope.lock();
    if (defined_in == nullptr) {
      return Error(
          line, absl::StrCat("macro '", fn.name, "' called outside the scope it was defined in"));
    }
    if (call_depth_ >= options_.max_call_depth) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "line ", line, ": macro calls nested more than ", options_.max_call_depth, " deep"));
    }
    ScopePtr scope = ChildScope(defined_in);
    const size_t n = m.params.size();
    List varargs;
    if (args.positional.size() > n) {
      if (!m.uses_varargs) {
        return Error(line,
                     absl::StrCat("macro '", fn.name, "' takes not more than ", n, " argument(s)"));
      }
      varargs.assign(args.positional.begin() + static_cast<ptrdiff_t>(n), args.positional.end());
      args.positional.resize(n);
    }
    std::vector<const Value*> given(n, nullptr);
    for (size_t i = 0; i < args.positional.size(); ++i) given[i] = &args.positional[i];
    if (!caller.is_undefined() && !m.uses_caller) {
      // jinja2 refuses this too: the call block's body would be silently dropped.
      return Error(line, absl::StrCat("macro '", fn.name,
                                      "' was called with a {% call %} block but never calls "
                                      "caller()"));
    }
    Dict kwargs;
    Value caller_value = caller;
    for (const auto& [name, value] : args.keyword) {
      size_t i = 0;
      while (i < n && m.params[i].name != name) ++i;
      if (i < n) {
        if (given[i] != nullptr) {
          return Error(line,
                       absl::StrCat("macro '", fn.name, "' got multiple values for argument '",
                                    AsAbsl(name), "'"));
        }
        given[i] = &value;
      } else if (name == "caller" && m.uses_caller && m.type == Stmt::Type::kMacro) {
        caller_value = value;
      } else if (m.uses_kwargs) {
        kwargs.Set(name, value);
      } else {
        return Error(line, absl::StrCat("macro '", fn.name, "' takes no keyword argument '",
                                        AsAbsl(name), "'"));
      }
    }
    for (size_t i = 0; i < n; ++i) {
      const Param& p = m.params[i];
      if (given[i] != nullptr) {
        scope->vars[p.name] = *given[i];
      } else if (p.default_value != nullptr) {
        absl::StatusOr<Value> v = Eval(*p.default_value, scope);
        if (!v.ok()) return v.status();
        scope->vars[p.name] = *std::move(v);
      } else {
        scope->vars[p.name] =
            Value::Undefined(absl::StrCat("parameter '", AsAbsl(p.name), "' was not provided"));
      }
    }
    if (m.type == Stmt::Type::kMacro) {
      scope->vars["varargs"] = Value::MakeList(std::move(varargs), ListKind::kTuple);
      scope->vars["kwargs"] = Value::MakeDict(std::move(kwargs));
      if (!caller_value.is_undefined()) scope->vars["caller"] = caller_value;
    }
    ++call_depth_;
    absl::StatusOr<std::string> text = Capture(m.body, scope);
    --call_depth_;
    if (!text.ok()) return text.status();
    return Value::String(*std::move(text));
  }

  // ------------------------------------------------------------------------------------------
  // Expressions.

  // Evaluates a filter chain whose innermost input is null ({% filter %}, {% set x | f %}).
  absl::StatusOr<Value> EvalWithInput(const Expr& chain, const ScopePtr& scope,
                                      const Value& input) {
    const Value* saved = filter_input_;
    filter_input_ = &input;
    absl::StatusOr<Value> v = Eval(chain, scope);
    filter_input_ = saved;
    return v;
  }

  absl::StatusOr<Value> CheckBuilt(Value v, int line) {
    if (v.depth() > kMaxValueDepth) {
      return Error(
          line, absl::StrCat("lists and dicts nested more than ", kMaxValueDepth, " levels deep"));
    }
    return v;
  }

  absl::StatusOr<Value> Eval(const Expr& e, const ScopePtr& scope) {
    if (absl::Status s = Step(e.line); !s.ok()) return s;
    Nesting nesting(&nesting_);
    if (nesting.too_deep()) return TooDeep(e.line);
    switch (e.type) {
      case Expr::Type::kLiteral:
        return e.literal;
      case Expr::Type::kName:
        if (const Value* v = scope->Find(e.name)) return *v;
        return Value::Undefined(absl::StrCat("'", e.name, "' is undefined"));
      case Expr::Type::kList:
      case Expr::Type::kTuple: {
        List items;
        items.reserve(e.operands.size());
        for (const ExprPtr& o : e.operands) {
          absl::StatusOr<Value> v = Eval(*o, scope);
          if (!v.ok()) return v;
          items.push_back(*std::move(v));
        }
        return CheckBuilt(
            Value::MakeList(std::move(items),
                            e.type == Expr::Type::kTuple ? ListKind::kTuple : ListKind::kList),
            e.line);
      }
      case Expr::Type::kDict: {
        Dict dict;
        for (size_t i = 0; i + 1 < e.operands.size(); i += 2) {
          absl::StatusOr<Value> key = Eval(*e.operands[i], scope);
          if (!key.ok()) return key;
          if (!key->is_string()) {
            return Error(
                e.line, absl::StrCat("dict keys must be strings here, not '", TypeName(*key), "'"));
          }
          absl::StatusOr<Value> value = Eval(*e.operands[i + 1], scope);
          if (!value.ok()) return value;
          dict.Set(key->str(), *std::move(value));
        }
        return CheckBuilt(Value::MakeDict(std::move(dict)), e.line);
      }
      case Expr::Type::kGetAttr: {
        absl::StatusOr<Value> obj = Eval(*e.operands[0], scope);
        if (!obj.ok()) return obj;
        absl::StatusOr<Value> v = GetAttr(*obj, e.name);
        if (!v.ok()) return AtLine(e.line, v.status());
        return v;
      }
      case Expr::Type::kGetItem: {
        absl::StatusOr<Value> obj = Eval(*e.operands[0], scope);
        if (!obj.ok()) return obj;
        absl::StatusOr<Value> key = Eval(*e.operands[1], scope);
        if (!key.ok()) return key;
        absl::StatusOr<Value> v = GetItem(*obj, *key);
        if (!v.ok()) return AtLine(e.line, v.status());
        return v;
      }
      case Expr::Type::kSlice: {
        Value parts[4];
        for (size_t i = 0; i < 4; ++i) {
          if (e.operands[i] == nullptr) {
            parts[i] = Value::None();
            continue;
          }
          absl::StatusOr<Value> v = Eval(*e.operands[i], scope);
          if (!v.ok()) return v;
          parts[i] = *std::move(v);
        }
        absl::StatusOr<Value> v = GetSlice(parts[0], parts[1], parts[2], parts[3]);
        if (!v.ok()) return AtLine(e.line, v.status());
        return v;
      }
      case Expr::Type::kCall: {
        absl::StatusOr<Value> callee = Eval(*e.operands[0], scope);
        if (!callee.ok()) return callee;
        absl::StatusOr<Args> args = EvalArgs(e, 1, scope);
        if (!args.ok()) return args.status();
        absl::StatusOr<Value> v = CallValue(*callee, *std::move(args), e.line);
        if (!v.ok()) return v;
        return CheckBuilt(*std::move(v), e.line);
      }
      case Expr::Type::kFilter: {
        Value input;
        if (e.operands[0] != nullptr) {
          absl::StatusOr<Value> v = Eval(*e.operands[0], scope);
          if (!v.ok()) return v;
          input = *std::move(v);
        } else if (filter_input_ != nullptr) {
          input = *filter_input_;
        }
        absl::StatusOr<Args> args = EvalArgs(e, 1, scope);
        if (!args.ok()) return args.status();
        absl::StatusOr<Value> v = e.filter(ctx_, input, *args);
        if (!v.ok()) return AtLine(e.line, v.status());
        if (absl::Status s = CheckSteps(e.line); !s.ok()) return s;
        return CheckBuilt(*std::move(v), e.line);
      }
      case Expr::Type::kTest: {
        absl::StatusOr<Value> input = Eval(*e.operands[0], scope);
        if (!input.ok()) return input;
        absl::StatusOr<Args> args = EvalArgs(e, 1, scope);
        if (!args.ok()) return args.status();
        absl::StatusOr<bool> r = e.test(ctx_, *input, *args);
        if (!r.ok()) return AtLine(e.line, r.status());
        if (absl::Status s = CheckSteps(e.line); !s.ok()) return s;
        return Value::Bool(*r != e.negated);
      }
      case Expr::Type::kNeg:
      case Expr::Type::kPos: {
        absl::StatusOr<Value> v = Eval(*e.operands[0], scope);
        if (!v.ok()) return v;
        absl::StatusOr<Value> r = Negate(*v, e.type == Expr::Type::kNeg);
        if (!r.ok()) return AtLine(e.line, r.status());
        return r;
      }
      case Expr::Type::kNot: {
        absl::StatusOr<Value> v = Eval(*e.operands[0], scope);
        if (!v.ok()) return v;
        return Value::Bool(!Truthy(*v));
      }
      case Expr::Type::kBinary: {
        absl::StatusOr<Value> a = Eval(*e.operands[0], scope);
        if (!a.ok()) return a;
        absl::StatusOr<Value> b = Eval(*e.operands[1], scope);
        if (!b.ok()) return b;
        absl::StatusOr<Value> r = ApplyBinary(ctx_, e.op, *a, *b);
        if (!r.ok()) return AtLine(e.line, r.status());
        return CheckBuilt(*std::move(r), e.line);
      }
      case Expr::Type::kAnd:
      case Expr::Type::kOr: {
        absl::StatusOr<Value> a = Eval(*e.operands[0], scope);
        if (!a.ok()) return a;
        // Python returns the deciding operand itself: `x or "default"`.
        if (Truthy(*a) == (e.type == Expr::Type::kOr)) return a;
        return Eval(*e.operands[1], scope);
      }
      case Expr::Type::kCompare:
        return EvalCompare(e, scope);
      case Expr::Type::kConcat: {
        std::string out;
        for (const ExprPtr& o : e.operands) {
          absl::StatusOr<Value> v = Eval(*o, scope);
          if (!v.ok()) return v;
          if (absl::Status s = AppendStr(*v, options_.max_output_bytes, &out); !s.ok()) {
            return AtLine(e.line, s);
          }
        }
        return Value::String(std::move(out));
      }
      case Expr::Type::kCondExpr: {
        absl::StatusOr<Value> cond = Eval(*e.operands[0], scope);
        if (!cond.ok()) return cond;
        if (Truthy(*cond)) return Eval(*e.operands[1], scope);
        if (e.operands[2] != nullptr) return Eval(*e.operands[2], scope);
        return Value::Undefined(
            absl::StrCat("the inline if-expression on line ", e.line,
                         " evaluated to false and no else section was defined."));
      }
    }
    return Error(e.line, "unknown expression");
  }

  absl::StatusOr<Value> EvalCompare(const Expr& e, const ScopePtr& scope) {
    absl::StatusOr<Value> left = Eval(*e.operands[0], scope);
    if (!left.ok()) return left;
    for (size_t i = 0; i < e.compare_ops.size(); ++i) {
      absl::StatusOr<Value> right = Eval(*e.operands[i + 1], scope);
      if (!right.ok()) return right;
      bool holds = false;
      const CompareOp op = e.compare_ops[i];
      if (op == CompareOp::kEq || op == CompareOp::kNe) {
        holds = Equal(*left, *right, &steps_left_) == (op == CompareOp::kEq);
      } else if (op == CompareOp::kIn || op == CompareOp::kNotIn) {
        absl::StatusOr<bool> in = Contains(ctx_, *right, *left);
        if (!in.ok()) return AtLine(e.line, in.status());
        holds = *in == (op == CompareOp::kIn);
      } else {
        absl::StatusOr<int> c = Compare(*left, *right, &steps_left_);
        if (!c.ok()) return AtLine(e.line, c.status());
        holds = op == CompareOp::kLt   ? *c < 0
                : op == CompareOp::kLe ? *c <= 0
                : op == CompareOp::kGt ? *c > 0
                                       : *c >= 0;
      }
      if (absl::Status s = CheckSteps(e.line); !s.ok()) return s;
      if (!holds) return Value::Bool(false);
      left = std::move(right);
    }
    return Value::Bool(true);
  }

  const RenderOptions& options_;
  int64_t steps_left_;
  CallContext ctx_;
  std::string* out_ = nullptr;
  int call_depth_ = 0;
  int nesting_ = 0;
  const Value* filter_input_ = nullptr;
  // Every namespace() this render created, alive until it ends (see ~Renderer).
  std::vector<std::shared_ptr<Namespace>> namespaces_;
};

}  // namespace

absl::StatusOr<std::string> RenderProgram(const Program& program, const Dict& context,
                                          const RenderOptions& options) {
  Renderer renderer(options);
  return renderer.Run(program, context);
}

}  // namespace mamba::tokenizer::jinja
