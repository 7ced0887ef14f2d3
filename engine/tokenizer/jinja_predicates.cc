// The tests of jinja_builtins.h (`x is defined`, `x is string`, `x is divisibleby 3`, ...), as
// jinja2 3.1 defines them. Python's types decide: a bool is a number but not an integer test's
// int; undefined is iterable and a sequence (it iterates as empty), a generator only iterable.
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "engine/tokenizer/jinja_builtins.h"
#include "engine/tokenizer/jinja_text.h"

namespace mamba::tokenizer::jinja {
namespace {

using Bound = std::vector<Value>;

absl::StatusOr<bool> NoArgs(std::string_view name, const Args& args) {
  Bound a;
  if (absl::Status s = BindArgs(name, args, {}, &a); !s.ok()) return s;
  return true;
}

#define MAMBA_JINJA_SIMPLE_TEST(fn, name, expr)                                     \
  absl::StatusOr<bool> fn(CallContext&, const Value& v, const Args& args) {         \
    if (absl::StatusOr<bool> ok = NoArgs(name, args); !ok.ok()) return ok.status(); \
    return (expr);                                                                  \
  }

MAMBA_JINJA_SIMPLE_TEST(TestDefined, "defined", !v.is_undefined())
MAMBA_JINJA_SIMPLE_TEST(TestUndefined, "undefined", v.is_undefined())
MAMBA_JINJA_SIMPLE_TEST(TestNone, "none", v.is_none())
MAMBA_JINJA_SIMPLE_TEST(TestBoolean, "boolean", v.kind() == Value::Kind::kBool)
MAMBA_JINJA_SIMPLE_TEST(TestTrue, "true", v.kind() == Value::Kind::kBool && v.as_bool())
MAMBA_JINJA_SIMPLE_TEST(TestFalse, "false", v.kind() == Value::Kind::kBool && !v.as_bool())
MAMBA_JINJA_SIMPLE_TEST(TestInteger, "integer", v.kind() == Value::Kind::kInt)
MAMBA_JINJA_SIMPLE_TEST(TestFloat, "float", v.kind() == Value::Kind::kFloat)
MAMBA_JINJA_SIMPLE_TEST(TestNumber, "number", v.is_number())
MAMBA_JINJA_SIMPLE_TEST(TestString, "string", v.is_string())
MAMBA_JINJA_SIMPLE_TEST(TestMapping, "mapping", v.is_dict())
MAMBA_JINJA_SIMPLE_TEST(TestIterable, "iterable",
                        v.is_undefined() || v.is_string() || v.is_list() || v.is_dict())
MAMBA_JINJA_SIMPLE_TEST(TestSequence, "sequence",
                        v.is_undefined() || v.is_string() || v.is_dict() ||
                            (v.is_list() && v.list_kind() != ListKind::kGenerator))
MAMBA_JINJA_SIMPLE_TEST(TestCallable, "callable",
                        v.kind() == Value::Kind::kCallable || v.is_undefined())
MAMBA_JINJA_SIMPLE_TEST(TestEscaped, "escaped", (static_cast<void>(v), false))

#undef MAMBA_JINJA_SIMPLE_TEST

absl::StatusOr<bool> TestCase(CallContext& ctx, const Value& v, const Args& args, bool lower) {
  if (absl::StatusOr<bool> ok = NoArgs(lower ? "lower" : "upper", args); !ok.ok())
    return ok.status();
  absl::StatusOr<std::string> s = SoftStr(ctx, v);
  if (!s.ok()) return s.status();
  return lower ? PyIsLower(*s) : PyIsUpper(*s);
}
absl::StatusOr<bool> TestLower(CallContext& ctx, const Value& v, const Args& args) {
  return TestCase(ctx, v, args, true);
}
absl::StatusOr<bool> TestUpper(CallContext& ctx, const Value& v, const Args& args) {
  return TestCase(ctx, v, args, false);
}

absl::StatusOr<bool> Divisible(CallContext& ctx, const Value& v, const Value& by) {
  absl::StatusOr<Value> r = ApplyBinary(ctx, BinaryOp::kMod, v, by);
  if (!r.ok()) return r.status();
  return r->as_double() == 0.0;
}

absl::StatusOr<bool> TestEven(CallContext& ctx, const Value& v, const Args& args) {
  if (absl::StatusOr<bool> ok = NoArgs("even", args); !ok.ok()) return ok.status();
  return Divisible(ctx, v, Value::Int(2));
}
absl::StatusOr<bool> TestOdd(CallContext& ctx, const Value& v, const Args& args) {
  if (absl::StatusOr<bool> ok = NoArgs("odd", args); !ok.ok()) return ok.status();
  absl::StatusOr<bool> even = Divisible(ctx, v, Value::Int(2));
  if (!even.ok()) return even.status();
  return !*even;
}
absl::StatusOr<bool> TestDivisibleby(CallContext& ctx, const Value& v, const Args& args) {
  Bound a;
  if (absl::Status s = BindArgs("divisibleby", args, {{"num", Value(), true}}, &a); !s.ok())
    return s;
  return Divisible(ctx, v, a[0]);
}

absl::StatusOr<bool> TestIn(CallContext& ctx, const Value& v, const Args& args) {
  Bound a;
  if (absl::Status s = BindArgs("in", args, {{"seq", Value(), true}}, &a); !s.ok()) return s;
  return Contains(ctx, a[0], v);
}

absl::StatusOr<bool> TestSameas(CallContext& ctx, const Value& v, const Args& args) {
  Bound a;
  if (absl::Status s = BindArgs("sameas", args, {{"other", Value(), true}}, &a); !s.ok()) return s;
  const Value& o = a[0];
  if (v.kind() != o.kind()) return false;
  switch (v.kind()) {
    case Value::Kind::kNone:
    case Value::Kind::kUndefined:
      return v.is_none();
    case Value::Kind::kBool:
    case Value::Kind::kInt:
    case Value::Kind::kFloat:
    case Value::Kind::kString:
      return Equal(v, o, ctx.budget);
    default:
      return v.SameObject(o);
  }
}

enum class Relation { kEq, kNe, kLt, kLe, kGt, kGe };

template <Relation R>
absl::StatusOr<bool> TestCompare(CallContext& ctx, const Value& v, const Args& args) {
  Bound a;
  if (absl::Status s = BindArgs("comparison", args, {{"other", Value(), true}}, &a); !s.ok())
    return s;
  if (R == Relation::kEq) return Equal(v, a[0], ctx.budget);
  if (R == Relation::kNe) return !Equal(v, a[0], ctx.budget);
  absl::StatusOr<int> c = Compare(v, a[0], ctx.budget);
  if (!c.ok()) return c.status();
  switch (R) {
    case Relation::kLt:
      return *c < 0;
    case Relation::kLe:
      return *c <= 0;
    case Relation::kGt:
      return *c > 0;
    default:
      return *c >= 0;
  }
}

absl::StatusOr<bool> TestFilter(CallContext&, const Value& v, const Args& args) {
  if (absl::StatusOr<bool> ok = NoArgs("filter", args); !ok.ok()) return ok.status();
  return v.is_string() && FindFilter(v.str()) != nullptr;
}
absl::StatusOr<bool> TestTest(CallContext&, const Value& v, const Args& args) {
  if (absl::StatusOr<bool> ok = NoArgs("test", args); !ok.ok()) return ok.status();
  return v.is_string() && FindTest(v.str()) != nullptr;
}

}  // namespace

TestFn FindTest(std::string_view name) {
  static const auto* const kTests = new absl::flat_hash_map<std::string_view, TestFn>({
      {"boolean", TestBoolean},
      {"callable", TestCallable},
      {"defined", TestDefined},
      {"divisibleby", TestDivisibleby},
      {"eq", TestCompare<Relation::kEq>},
      {"equalto", TestCompare<Relation::kEq>},
      {"==", TestCompare<Relation::kEq>},
      {"escaped", TestEscaped},
      {"even", TestEven},
      {"false", TestFalse},
      {"filter", TestFilter},
      {"float", TestFloat},
      {"ge", TestCompare<Relation::kGe>},
      {">=", TestCompare<Relation::kGe>},
      {"gt", TestCompare<Relation::kGt>},
      {"greaterthan", TestCompare<Relation::kGt>},
      {">", TestCompare<Relation::kGt>},
      {"in", TestIn},
      {"integer", TestInteger},
      {"iterable", TestIterable},
      {"le", TestCompare<Relation::kLe>},
      {"<=", TestCompare<Relation::kLe>},
      {"lower", TestLower},
      {"lt", TestCompare<Relation::kLt>},
      {"lessthan", TestCompare<Relation::kLt>},
      {"<", TestCompare<Relation::kLt>},
      {"mapping", TestMapping},
      {"ne", TestCompare<Relation::kNe>},
      {"!=", TestCompare<Relation::kNe>},
      {"none", TestNone},
      {"number", TestNumber},
      {"odd", TestOdd},
      {"sameas", TestSameas},
      {"sequence", TestSequence},
      {"string", TestString},
      {"test", TestTest},
      {"true", TestTrue},
      {"undefined", TestUndefined},
      {"upper", TestUpper},
  });
  auto it = kTests->find(name);
  return it == kTests->end() ? nullptr : it->second;
}

}  // namespace mamba::tokenizer::jinja
