// The operators, attribute and item access, slicing and iteration of jinja_builtins.h, with
// Python's semantics (floor division and modulo round toward negative infinity; 64-bit ints,
// where Python's are unbounded, so overflow is reported instead of silently wrapping).
#include <cmath>
#include <cstdio>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/jinja_builtins.h"
#include "engine/tokenizer/jinja_text.h"

namespace mamba::tokenizer::jinja {
namespace {

const char* OpSymbol(BinaryOp op) {
  switch (op) {
    case BinaryOp::kAdd:
      return "+";
    case BinaryOp::kSub:
      return "-";
    case BinaryOp::kMul:
      return "*";
    case BinaryOp::kDiv:
      return "/";
    case BinaryOp::kFloorDiv:
      return "//";
    case BinaryOp::kMod:
      return "%";
    case BinaryOp::kPow:
      return "** or pow()";
  }
  return "?";
}

absl::Status Unsupported(BinaryOp op, const Value& a, const Value& b) {
  if (op == BinaryOp::kAdd && a.is_string()) {
    return absl::InvalidArgumentError(
        absl::StrCat("can only concatenate str (not \"", TypeName(b), "\") to str"));
  }
  return absl::InvalidArgumentError(absl::StrCat("unsupported operand type(s) for ", OpSymbol(op),
                                                 ": '", TypeName(a), "' and '", TypeName(b), "'"));
}

absl::Status Overflow() {
  return absl::InvalidArgumentError("integer overflow (values beyond 64 bits are not supported)");
}

// CPython's float divmod: the quotient floored, the remainder with the divisor's sign.
std::pair<double, double> FloatDivMod(double a, double b) {
  double mod = std::fmod(a, b);
  double div = (a - mod) / b;
  if (mod != 0.0) {
    if ((b < 0) != (mod < 0)) {
      mod += b;
      div -= 1.0;
    }
  } else {
    mod = std::copysign(0.0, b);
  }
  double floordiv;
  if (div != 0.0) {
    floordiv = std::floor(div);
    if (div - floordiv > 0.5) floordiv += 1.0;
  } else {
    floordiv = std::copysign(0.0, a / b);
  }
  return {floordiv, mod};
}

absl::StatusOr<Value> Repeat(CallContext& ctx, const Value& seq, int64_t n) {
  if (n < 0) n = 0;
  if (seq.is_string()) {
    const std::string& s = seq.str();
    if (n > 0 && s.size() > 0) {
      if (absl::Status st = CheckSize(ctx, s.size() * std::min<uint64_t>(n, ctx.max_bytes() + 1));
          !st.ok()) {
        return st;
      }
    }
    std::string out;
    out.reserve(s.size() * static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) out += s;
    return Value::String(std::move(out));
  }
  const List& items = seq.list();
  if (n > 0 && !items.empty()) {
    if (absl::Status st = CheckSize(ctx, items.size() * std::min<uint64_t>(n, ctx.max_bytes() + 1));
        !st.ok()) {
      return st;
    }
  }
  List out;
  out.reserve(items.size() * static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out.insert(out.end(), items.begin(), items.end());
  return Value::MakeList(std::move(out), seq.list_kind());
}

absl::StatusOr<Value> IntPow(int64_t base, int64_t exp) {
  if (exp < 0) return Value::Float(std::pow(static_cast<double>(base), static_cast<double>(exp)));
  int64_t result = 1;
  while (exp > 0) {
    if (exp & 1) {
      if (__builtin_mul_overflow(result, base, &result)) return Overflow();
    }
    exp >>= 1;
    if (exp > 0 && __builtin_mul_overflow(base, base, &base)) {
      // base*base overflowing only matters when another factor is still to come.
      return Overflow();
    }
  }
  return Value::Int(result);
}

// Python's printf-style "fmt % args" for the conversions templates use: s r d i f F e E g G x X
// o c %, with flags, width and precision.
absl::StatusOr<Value> PercentFormat(CallContext& ctx, const std::string& fmt, const Value& args) {
  List values;
  if (args.is_list() && args.list_kind() == ListKind::kTuple) {
    values = args.list();
  } else {
    values.push_back(args);
  }
  size_t next = 0;
  std::string out;
  for (size_t i = 0; i < fmt.size(); ++i) {
    if (fmt[i] != '%') {
      out.push_back(fmt[i]);
      continue;
    }
    std::string spec = "%";
    ++i;
    while (i < fmt.size() && std::string_view("-+ #0").find(fmt[i]) != std::string_view::npos) {
      spec.push_back(fmt[i++]);
    }
    while (i < fmt.size() && fmt[i] >= '0' && fmt[i] <= '9') spec.push_back(fmt[i++]);
    if (i < fmt.size() && fmt[i] == '.') {
      spec.push_back(fmt[i++]);
      while (i < fmt.size() && fmt[i] >= '0' && fmt[i] <= '9') spec.push_back(fmt[i++]);
    }
    if (i >= fmt.size()) return absl::InvalidArgumentError("incomplete format");
    const char conv = fmt[i];
    if (conv == '%') {
      out.push_back('%');
      continue;
    }
    if (next >= values.size()) {
      return absl::InvalidArgumentError("not enough arguments for format string");
    }
    const Value& v = values[next++];
    char buf[512];
    switch (conv) {
      case 's':
      case 'r':
      case 'a': {
        std::string text;
        if (conv == 's') {
          absl::StatusOr<std::string> s = ToStr(v, ctx.max_bytes());
          if (!s.ok()) return s.status();
          text = *std::move(s);
        } else if (absl::Status s = AppendRepr(v, ctx.max_bytes(), &text); !s.ok()) {
          return s;
        }
        if (spec == "%") {
          out += text;
        } else {
          // Width and precision count characters; pad by hand to stay UTF-8 safe.
          size_t dot = spec.find('.');
          const bool left = spec.find('-') != std::string::npos;
          std::u32string cps = DecodeUtf8(text);
          if (dot != std::string::npos) {
            const size_t precision = std::strtoul(spec.c_str() + dot + 1, nullptr, 10);
            if (cps.size() > precision) cps.resize(precision);
          }
          const std::string width_digits =
              spec.substr(1, dot == std::string::npos ? std::string::npos : dot - 1);
          size_t width = 0;
          for (char c : width_digits) {
            if (c >= '0' && c <= '9') width = width * 10 + static_cast<size_t>(c - '0');
          }
          width = std::min<size_t>(width, 4096);
          std::string body = EncodeUtf8(cps);
          const std::string pad(width > cps.size() ? width - cps.size() : 0, ' ');
          out += left ? body + pad : pad + body;
        }
        break;
      }
      case 'd':
      case 'i':
      case 'u':
      case 'x':
      case 'X':
      case 'o':
      case 'c': {
        if (!v.is_number()) {
          return absl::InvalidArgumentError(absl::StrCat(
              "%", std::string(1, conv), " format: a number is required, not ", TypeName(v)));
        }
        const int64_t n = v.is_integer() ? v.as_int() : static_cast<int64_t>(v.as_double());
        if (conv == 'c') {
          if (n < 0 || n > 0x10ffff)
            return absl::InvalidArgumentError("%c arg not in range(0x110000)");
          AppendCodePoint(static_cast<char32_t>(n), &out);
          break;
        }
        const char c = conv == 'i' || conv == 'u' ? 'd' : conv;
        std::snprintf(buf, sizeof(buf), (spec + "ll" + c).c_str(), static_cast<long long>(n));
        out += buf;
        break;
      }
      case 'f':
      case 'F':
      case 'e':
      case 'E':
      case 'g':
      case 'G': {
        if (!v.is_number()) {
          return absl::InvalidArgumentError(absl::StrCat("must be real number, not ", TypeName(v)));
        }
        std::snprintf(buf, sizeof(buf), (spec + conv).c_str(), v.as_double());
        out += buf;
        break;
      }
      default:
        return absl::InvalidArgumentError(
            absl::StrCat("unsupported format character '", std::string(1, conv), "'"));
    }
    if (absl::Status s = CheckSize(ctx, out.size()); !s.ok()) return s;
  }
  if (next < values.size() && !(values.size() == 1 && values[0].is_dict())) {
    return absl::InvalidArgumentError("not all arguments converted during string formatting");
  }
  return Value::String(std::move(out));
}

// Python's slice.indices(): the start, stop and step a slice visits over `len` items.
absl::Status SliceBounds(const Value& start, const Value& stop, const Value& step, int64_t len,
                         int64_t* first, int64_t* last, int64_t* stride) {
  for (const Value* v : {&start, &stop, &step}) {
    if (!v->is_none() && !v->is_undefined() && !v->is_integer()) {
      return absl::InvalidArgumentError("slice indices must be integers or None");
    }
  }
  *stride = step.is_integer() ? step.as_int() : 1;
  if (*stride == 0) return absl::InvalidArgumentError("slice step cannot be zero");
  const int64_t lower = *stride > 0 ? 0 : -1;
  const int64_t upper = *stride > 0 ? len : len - 1;
  auto clamp = [&](const Value& v, int64_t missing) {
    if (!v.is_integer()) return missing;
    int64_t i = v.as_int();
    if (i < 0) {
      i += len;
      if (i < lower) i = lower;
    } else if (i > upper) {
      i = upper;
    }
    return i;
  };
  *first = clamp(start, *stride > 0 ? lower : upper);
  *last = clamp(stop, *stride > 0 ? upper : lower);
  return absl::OkStatus();
}

Value LoopAttribute(const LoopState& loop, std::string_view name) {
  const int64_t i = loop.index0;
  const List* items = loop.items.get();
  if (name == "index") return Value::Int(i + 1);
  if (name == "index0") return Value::Int(i);
  if (name == "revindex") return Value::Int(loop.length - i);
  if (name == "revindex0") return Value::Int(loop.length - i - 1);
  if (name == "first") return Value::Bool(i == 0);
  if (name == "last") return Value::Bool(i == loop.length - 1);
  if (name == "length") return Value::Int(loop.length);
  if (name == "depth") return Value::Int(loop.depth0 + 1);
  if (name == "depth0") return Value::Int(loop.depth0);
  if (name == "previtem") {
    if (i > 0 && items != nullptr && static_cast<size_t>(i - 1) < items->size()) {
      return (*items)[static_cast<size_t>(i - 1)];
    }
    return Value::Undefined("there is no previous item");
  }
  if (name == "nextitem") {
    if (items != nullptr && static_cast<size_t>(i + 1) < items->size()) {
      return (*items)[static_cast<size_t>(i + 1)];
    }
    return Value::Undefined("there is no next item");
  }
  return Value::Undefined(
      absl::StrCat("'LoopContext object' has no attribute '", AsAbsl(name), "'"));
}

// jinja2 refuses the methods that would modify a list or dict (ImmutableSandboxedEnvironment):
// they read as undefined, and calling one is this error.
bool IsModifyingMethod(const Value& obj, std::string_view name) {
  static constexpr std::string_view kList[] = {"append", "clear",  "extend",  "insert",
                                               "pop",    "remove", "reverse", "sort"};
  static constexpr std::string_view kDict[] = {"clear", "pop", "popitem", "setdefault", "update"};
  if (obj.is_list() && obj.list_kind() == ListKind::kList) {
    for (std::string_view m : kList) {
      if (m == name) return true;
    }
  }
  if (obj.is_dict()) {
    for (std::string_view m : kDict) {
      if (m == name) return true;
    }
  }
  return false;
}

Value BoundMethod(const Value& obj, std::string_view name) {
  auto fn = std::make_shared<Callable>();
  fn->type = Callable::Type::kMethod;
  fn->name = std::string(name);
  fn->receiver = obj;
  return Value::MakeCallable(std::move(fn));
}

}  // namespace

absl::Status CheckSize(const CallContext& ctx, size_t bytes) {
  if (bytes <= ctx.max_bytes()) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrCat(
      "a value of the render grew larger than the limit of ", ctx.max_bytes(), " bytes"));
}

absl::Status UndefinedError(const Value& v) {
  return absl::InvalidArgumentError(v.str().empty() ? "value is undefined" : v.str());
}

absl::StatusOr<std::string> SoftStr(const CallContext& ctx, const Value& v) {
  return ToStr(v, ctx.max_bytes());
}

absl::Status CheckBudget(const CallContext& ctx) {
  if (*ctx.budget >= 0) return absl::OkStatus();
  return absl::ResourceExhaustedError(
      absl::StrCat("the template took more than ", ctx.options->max_steps, " steps"));
}

absl::StatusOr<int64_t> IntArg(const Value& v, std::string_view what) {
  if (v.is_integer()) return v.as_int();
  return absl::InvalidArgumentError(
      absl::StrCat(AsAbsl(what), " must be an integer, not '", TypeName(v), "'"));
}

absl::Status BindArgs(std::string_view fn, const Args& args,
                      std::initializer_list<ParamSpec> params, std::vector<Value>* out) {
  out->clear();
  std::vector<bool> given(params.size(), false);
  for (const ParamSpec& p : params) out->push_back(p.default_value);
  if (args.positional.size() > params.size()) {
    return absl::InvalidArgumentError(absl::StrCat(AsAbsl(fn), "() takes at most ", params.size(),
                                                   " argument(s) (", args.positional.size(),
                                                   " given)"));
  }
  for (size_t i = 0; i < args.positional.size(); ++i) {
    (*out)[i] = args.positional[i];
    given[i] = true;
  }
  for (const auto& [name, value] : args.keyword) {
    size_t i = 0;
    for (const ParamSpec& p : params) {
      if (p.name == name) break;
      ++i;
    }
    if (i == params.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat(AsAbsl(fn), "() got an unexpected keyword argument '", AsAbsl(name), "'"));
    }
    if (given[i]) {
      return absl::InvalidArgumentError(
          absl::StrCat(AsAbsl(fn), "() got multiple values for argument '", AsAbsl(name), "'"));
    }
    (*out)[i] = value;
    given[i] = true;
  }
  size_t i = 0;
  for (const ParamSpec& p : params) {
    if (p.required && !given[i]) {
      return absl::InvalidArgumentError(
          absl::StrCat(AsAbsl(fn), "() missing required argument '", AsAbsl(p.name), "'"));
    }
    ++i;
  }
  return absl::OkStatus();
}

absl::StatusOr<Value> ApplyBinary(CallContext& ctx, BinaryOp op, const Value& a, const Value& b) {
  if (a.is_undefined()) return UndefinedError(a);
  if (b.is_undefined()) return UndefinedError(b);
  const bool ints = a.is_integer() && b.is_integer();
  const bool numbers = a.is_number() && b.is_number();
  switch (op) {
    case BinaryOp::kAdd:
      if (ints) {
        int64_t r;
        if (__builtin_add_overflow(a.as_int(), b.as_int(), &r)) return Overflow();
        return Value::Int(r);
      }
      if (numbers) return Value::Float(a.as_double() + b.as_double());
      if (a.is_string() && b.is_string()) {
        if (absl::Status s = CheckSize(ctx, a.str().size() + b.str().size()); !s.ok()) return s;
        return Value::String(a.str() + b.str());
      }
      if (a.is_list() && b.is_list() && a.list_kind() == b.list_kind() &&
          a.list_kind() != ListKind::kGenerator) {
        if (absl::Status s = CheckSize(ctx, a.list().size() + b.list().size()); !s.ok()) return s;
        List items = a.list();
        items.insert(items.end(), b.list().begin(), b.list().end());
        return Value::MakeList(std::move(items), a.list_kind());
      }
      return Unsupported(op, a, b);
    case BinaryOp::kSub:
      if (ints) {
        int64_t r;
        if (__builtin_sub_overflow(a.as_int(), b.as_int(), &r)) return Overflow();
        return Value::Int(r);
      }
      if (numbers) return Value::Float(a.as_double() - b.as_double());
      return Unsupported(op, a, b);
    case BinaryOp::kMul: {
      if (ints) {
        int64_t r;
        if (__builtin_mul_overflow(a.as_int(), b.as_int(), &r)) return Overflow();
        return Value::Int(r);
      }
      if (numbers) return Value::Float(a.as_double() * b.as_double());
      const bool a_seq = a.is_string() || (a.is_list() && a.list_kind() != ListKind::kGenerator);
      const bool b_seq = b.is_string() || (b.is_list() && b.list_kind() != ListKind::kGenerator);
      if (a_seq && b.is_integer()) return Repeat(ctx, a, b.as_int());
      if (b_seq && a.is_integer()) return Repeat(ctx, b, a.as_int());
      return Unsupported(op, a, b);
    }
    case BinaryOp::kDiv:
      if (!numbers) return Unsupported(op, a, b);
      if (b.as_double() == 0.0) return absl::InvalidArgumentError("division by zero");
      return Value::Float(a.as_double() / b.as_double());
    case BinaryOp::kFloorDiv:
    case BinaryOp::kMod: {
      if (op == BinaryOp::kMod && a.is_string()) return PercentFormat(ctx, a.str(), b);
      if (!numbers) return Unsupported(op, a, b);
      if (ints) {
        const int64_t x = a.as_int(), y = b.as_int();
        if (y == 0) return absl::InvalidArgumentError("integer division or modulo by zero");
        if (x == std::numeric_limits<int64_t>::min() && y == -1) {
          if (op == BinaryOp::kMod) return Value::Int(0);
          return Overflow();
        }
        int64_t q = x / y, r = x % y;
        if (r != 0 && ((r < 0) != (y < 0))) {
          q -= 1;
          r += y;
        }
        return Value::Int(op == BinaryOp::kFloorDiv ? q : r);
      }
      if (b.as_double() == 0.0) {
        return absl::InvalidArgumentError(op == BinaryOp::kMod ? "float modulo"
                                                               : "float floor division by zero");
      }
      const auto [q, r] = FloatDivMod(a.as_double(), b.as_double());
      return Value::Float(op == BinaryOp::kFloorDiv ? q : r);
    }
    case BinaryOp::kPow: {
      if (!numbers) return Unsupported(op, a, b);
      if (ints) return IntPow(a.as_int(), b.as_int());
      const double x = a.as_double(), y = b.as_double();
      if (x == 0.0 && y < 0) {
        return absl::InvalidArgumentError("0.0 cannot be raised to a negative power");
      }
      if (x < 0 && y != std::floor(y)) {
        return absl::InvalidArgumentError(
            "a negative number raised to a fractional power is complex");
      }
      return Value::Float(std::pow(x, y));
    }
  }
  return Unsupported(op, a, b);
}

absl::StatusOr<Value> Negate(const Value& v, bool minus) {
  if (v.is_undefined()) return UndefinedError(v);
  if (v.is_integer()) {
    if (!minus) return Value::Int(v.as_int());
    if (v.as_int() == std::numeric_limits<int64_t>::min()) return Overflow();
    return Value::Int(-v.as_int());
  }
  if (v.kind() == Value::Kind::kFloat) return Value::Float(minus ? -v.as_double() : v.as_double());
  return absl::InvalidArgumentError(
      absl::StrCat("bad operand type for unary ", minus ? "-" : "+", ": '", TypeName(v), "'"));
}

absl::StatusOr<bool> Contains(CallContext& ctx, const Value& container, const Value& item) {
  switch (container.kind()) {
    case Value::Kind::kUndefined:
      return false;
    case Value::Kind::kString:
      if (!item.is_string()) {
        return absl::InvalidArgumentError(
            absl::StrCat("'in <string>' requires string as left operand, not ", TypeName(item)));
      }
      return container.str().find(item.str()) != std::string::npos;
    case Value::Kind::kList:
      for (const Value& v : container.list()) {
        if (Equal(v, item, ctx.budget)) return true;
        if (*ctx.budget < 0) return CheckBudget(ctx);
      }
      return false;
    case Value::Kind::kDict:
      return item.is_string() && container.dict().Find(item.str()) != nullptr;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("argument of type '", TypeName(container), "' is not iterable"));
  }
}

absl::StatusOr<Value> GetAttr(const Value& obj, std::string_view name) {
  if (obj.is_undefined()) return UndefinedError(obj);
  if (HasMethod(obj, name)) return BoundMethod(obj, name);
  if (IsModifyingMethod(obj, name)) {
    return Value::Undefined(absl::StrCat("access to attribute '", AsAbsl(name), "' of '",
                                         TypeName(obj), "' object is unsafe."));
  }
  switch (obj.kind()) {
    case Value::Kind::kDict:
      if (const Value* v = obj.dict().Find(name)) return *v;
      break;
    case Value::Kind::kNamespace:
      if (const Value* v = obj.ns().attrs.Find(name)) return *v;
      break;
    case Value::Kind::kLoop:
      return LoopAttribute(obj.loop(), name);
    default:
      break;
  }
  return Value::Undefined(
      absl::StrCat("'", ObjectTypeRepr(obj), "' has no attribute '", AsAbsl(name), "'"));
}

absl::StatusOr<Value> GetItem(const Value& obj, const Value& key) {
  if (obj.is_undefined()) return UndefinedError(obj);
  if (key.is_integer()) {
    int64_t i = key.as_int();
    if (obj.is_list() && obj.list_kind() != ListKind::kGenerator) {
      const List& items = obj.list();
      if (i < 0) i += static_cast<int64_t>(items.size());
      if (i >= 0 && i < static_cast<int64_t>(items.size())) return items[static_cast<size_t>(i)];
    } else if (obj.is_string()) {
      // Python indexes code points.
      const std::u32string cps = DecodeUtf8(obj.str());
      if (i < 0) i += static_cast<int64_t>(cps.size());
      if (i >= 0 && i < static_cast<int64_t>(cps.size())) {
        std::string c;
        AppendCodePoint(cps[static_cast<size_t>(i)], &c);
        return Value::String(std::move(c));
      }
    }
    return Value::Undefined(absl::StrCat(ObjectTypeRepr(obj), " has no element ", key.as_int()));
  }
  if (key.is_string()) {
    if (obj.is_dict()) {
      if (const Value* v = obj.dict().Find(key.str())) return *v;
    }
    return GetAttr(obj, key.str());
  }
  std::string repr;
  AppendRepr(key, 256, &repr).IgnoreError();
  return Value::Undefined(absl::StrCat(ObjectTypeRepr(obj), " has no element ", repr));
}

absl::StatusOr<Value> GetSlice(const Value& obj, const Value& start, const Value& stop,
                               const Value& step) {
  if (obj.is_undefined()) return UndefinedError(obj);
  const bool is_list = obj.is_list() && obj.list_kind() != ListKind::kGenerator;
  if (!is_list && !obj.is_string()) {
    return Value::Undefined(absl::StrCat(ObjectTypeRepr(obj), " cannot be sliced"));
  }
  std::u32string cps;
  if (obj.is_string()) cps = DecodeUtf8(obj.str());
  const auto len = static_cast<int64_t>(is_list ? obj.list().size() : cps.size());
  int64_t first = 0, last = 0, stride = 1;
  if (absl::Status s = SliceBounds(start, stop, step, len, &first, &last, &stride); !s.ok()) {
    return s;
  }
  auto visits = [&](int64_t i) { return stride > 0 ? i < last : i > last; };
  if (is_list) {
    List items;
    for (int64_t i = first; visits(i); i += stride)
      items.push_back(obj.list()[static_cast<size_t>(i)]);
    return Value::MakeList(std::move(items), obj.list_kind());
  }
  std::u32string out;
  for (int64_t i = first; visits(i); i += stride) out.push_back(cps[static_cast<size_t>(i)]);
  return Value::String(EncodeUtf8(out));
}

absl::StatusOr<std::shared_ptr<const List>> Iterate(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return std::make_shared<const List>();
    case Value::Kind::kList:
      return v.shared_list();
    case Value::Kind::kDict: {
      List keys;
      keys.reserve(v.dict().size());
      for (const auto& item : v.dict().items) keys.push_back(Value::String(item.first));
      return std::make_shared<const List>(std::move(keys));
    }
    case Value::Kind::kString: {
      List chars;
      for (char32_t c : DecodeUtf8(v.str())) {
        std::string s;
        AppendCodePoint(c, &s);
        chars.push_back(Value::String(std::move(s)));
      }
      return std::make_shared<const List>(std::move(chars));
    }
    default:
      return absl::InvalidArgumentError(absl::StrCat("'", TypeName(v), "' object is not iterable"));
  }
}

absl::StatusOr<Value> GetAttributePath(const Value& obj, const Value& path) {
  if (path.is_none() || path.is_undefined()) return obj;
  if (!path.is_string()) return GetItem(obj, path);
  Value item = obj;
  const std::string& p = path.str();
  size_t start = 0;
  while (true) {
    const size_t dot = p.find('.', start);
    const std::string part =
        p.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    bool digits = !part.empty();
    for (char c : part) digits = digits && c >= '0' && c <= '9';
    Value key = Value::String(part);
    if (digits && part.size() < 18) key = Value::Int(std::stoll(part));
    absl::StatusOr<Value> next = GetItem(item, key);
    if (!next.ok()) return next.status();
    item = *std::move(next);
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return item;
}

}  // namespace mamba::tokenizer::jinja
