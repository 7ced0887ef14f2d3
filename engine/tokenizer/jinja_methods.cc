// The global functions and the methods of jinja_builtins.h: what `range(...)`,
// `namespace(...)`, `raise_exception(...)`, `"text".split(...)` or `d.items()` do in a
// template, with Python's semantics.
#include <chrono>
#include <ctime>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/jinja_builtins.h"
#include "engine/tokenizer/jinja_text.h"

namespace mamba::tokenizer::jinja {
namespace {

// jinja2's sandbox refuses ranges longer than this (MAX_RANGE).
constexpr int64_t kMaxRange = 100000;

constexpr std::string_view kStringMethods[] = {
    "capitalize", "count",        "endswith",     "find",       "format", "isalnum",    "isalpha",
    "isdigit",    "islower",      "isspace",      "isupper",    "join",   "lower",      "lstrip",
    "partition",  "removeprefix", "removesuffix", "replace",    "rfind",  "rpartition", "rsplit",
    "rstrip",     "split",        "splitlines",   "startswith", "strip",  "title",      "upper",
};
constexpr std::string_view kDictMethods[] = {"get", "items", "keys", "values"};
constexpr std::string_view kListMethods[] = {"count", "index"};
constexpr std::string_view kLoopMethods[] = {"changed", "cycle"};

template <size_t N>
bool OneOf(const std::string_view (&names)[N], std::string_view name) {
  for (std::string_view n : names) {
    if (n == name) return true;
  }
  return false;
}

absl::StatusOr<std::string> StringArg(const Value& v, std::string_view what) {
  if (v.is_string()) return v.str();
  return absl::InvalidArgumentError(absl::StrCat(AsAbsl(what), " must be str, not ", TypeName(v)));
}

// An optional str argument: None or undefined means "not given".
absl::StatusOr<std::optional<std::string>> OptionalStringArg(const Value& v,
                                                             std::string_view what) {
  if (v.is_none() || v.is_undefined()) return std::optional<std::string>();
  absl::StatusOr<std::string> s = StringArg(v, what);
  if (!s.ok()) return s.status();
  return std::optional<std::string>(*std::move(s));
}

Value StringList(std::vector<std::string> parts) {
  List items;
  items.reserve(parts.size());
  for (std::string& p : parts) items.push_back(Value::String(std::move(p)));
  return Value::MakeList(std::move(items));
}

// str.startswith / endswith: a prefix or a tuple of them.
absl::StatusOr<Value> AffixTest(const std::string& s, const Value& affix, bool prefix) {
  auto test = [&](const std::string& a) {
    if (a.size() > s.size()) return false;
    return prefix ? s.compare(0, a.size(), a) == 0
                  : s.compare(s.size() - a.size(), a.size(), a) == 0;
  };
  if (affix.is_string()) return Value::Bool(test(affix.str()));
  if (affix.is_list() && affix.list_kind() == ListKind::kTuple) {
    for (const Value& a : affix.list()) {
      if (!a.is_string()) {
        return absl::InvalidArgumentError("tuple for startswith/endswith must only contain str");
      }
      if (test(a.str())) return Value::Bool(true);
    }
    return Value::Bool(false);
  }
  return absl::InvalidArgumentError(absl::StrCat(prefix ? "startswith" : "endswith",
                                                 " first arg must be str or a tuple of str, not ",
                                                 TypeName(affix)));
}

// str.format with automatic ({}), numbered ({0}) and named ({name}) fields, attribute and
// index lookups ({0.name}, {0[1]}) left out, and no format specs.
absl::StatusOr<Value> StrFormat(CallContext& ctx, const std::string& fmt, const Args& args) {
  std::string out;
  size_t auto_index = 0;
  for (size_t i = 0; i < fmt.size(); ++i) {
    const char c = fmt[i];
    if (c == '}') {
      if (i + 1 < fmt.size() && fmt[i + 1] == '}') {
        out.push_back('}');
        ++i;
        continue;
      }
      return absl::InvalidArgumentError("Single '}' encountered in format string");
    }
    if (c != '{') {
      out.push_back(c);
      continue;
    }
    if (i + 1 < fmt.size() && fmt[i + 1] == '{') {
      out.push_back('{');
      ++i;
      continue;
    }
    const size_t close = fmt.find('}', i);
    if (close == std::string::npos) {
      return absl::InvalidArgumentError("Single '{' encountered in format string");
    }
    const std::string field = fmt.substr(i + 1, close - i - 1);
    if (field.find_first_of(":!.[") != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("format field '{", field, "}' is not supported (plain fields only)"));
    }
    const Value* value = nullptr;
    if (field.empty() || (field.find_first_not_of("0123456789") == std::string::npos)) {
      const size_t index = field.empty() ? auto_index++ : std::stoul(field);
      if (index >= args.positional.size()) {
        return absl::InvalidArgumentError(
            absl::StrCat("Replacement index ", index, " out of range for positional args tuple"));
      }
      value = &args.positional[index];
    } else {
      for (const auto& [name, v] : args.keyword) {
        if (name == field) value = &v;
      }
      if (value == nullptr) return absl::InvalidArgumentError(absl::StrCat("'", field, "'"));
    }
    if (absl::Status s = AppendStr(*value, ctx.max_bytes(), &out); !s.ok()) return s;
    i = close;
  }
  return Value::String(std::move(out));
}

absl::StatusOr<Value> StringMethod(CallContext& ctx, const std::string& s, std::string_view name,
                                   const Args& args) {
  std::vector<Value> a;
  const Value none = Value::None();
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    if (absl::Status st = BindArgs(name, args, {{"chars", none}}, &a); !st.ok()) return st;
    absl::StatusOr<std::optional<std::string>> chars = OptionalStringArg(a[0], "strip arg");
    if (!chars.ok()) return chars.status();
    return Value::String(PyStrip(s, *chars, name != "rstrip", name != "lstrip"));
  }
  if (name == "split" || name == "rsplit") {
    if (absl::Status st = BindArgs(name, args, {{"sep", none}, {"maxsplit", Value::Int(-1)}}, &a);
        !st.ok()) {
      return st;
    }
    absl::StatusOr<std::optional<std::string>> sep = OptionalStringArg(a[0], "sep");
    if (!sep.ok()) return sep.status();
    if (*sep && (*sep)->empty()) return absl::InvalidArgumentError("empty separator");
    absl::StatusOr<int64_t> maxsplit = IntArg(a[1], "maxsplit");
    if (!maxsplit.ok()) return maxsplit.status();
    return StringList(name == "split" ? PySplit(s, *sep, *maxsplit) : PyRSplit(s, *sep, *maxsplit));
  }
  if (name == "splitlines") {
    if (absl::Status st = BindArgs(name, args, {{"keepends", Value::Bool(false)}}, &a); !st.ok()) {
      return st;
    }
    return StringList(PySplitLines(s, Truthy(a[0])));
  }
  if (name == "startswith" || name == "endswith") {
    if (absl::Status st = BindArgs(name, args, {{"affix", Value(), true}}, &a); !st.ok()) return st;
    return AffixTest(s, a[0], name == "startswith");
  }
  if (name == "upper" || name == "lower" || name == "title" || name == "capitalize") {
    if (absl::Status st = BindArgs(name, args, {}, &a); !st.ok()) return st;
    if (name == "upper") return Value::String(PyUpper(s));
    if (name == "lower") return Value::String(PyLower(s));
    if (name == "title") return Value::String(PyTitle(s));
    return Value::String(PyCapitalize(s));
  }
  if (name == "replace") {
    if (absl::Status st = BindArgs(
            name, args, {{"old", Value(), true}, {"new", Value(), true}, {"count", Value::Int(-1)}},
            &a);
        !st.ok()) {
      return st;
    }
    absl::StatusOr<std::string> old = StringArg(a[0], "replace() argument 1");
    if (!old.ok()) return old.status();
    absl::StatusOr<std::string> replacement = StringArg(a[1], "replace() argument 2");
    if (!replacement.ok()) return replacement.status();
    absl::StatusOr<int64_t> count = IntArg(a[2], "count");
    if (!count.ok()) return count.status();
    // Bound the result before building it: each replacement adds at most this much.
    const int64_t occurrences = PyCount(s, *old);
    const int64_t n = *count < 0 ? occurrences : std::min(*count, occurrences);
    if (replacement->size() > old->size()) {
      if (absl::Status st = CheckSize(
              ctx, s.size() + static_cast<size_t>(n) * (replacement->size() - old->size()));
          !st.ok()) {
        return st;
      }
    }
    return Value::String(PyReplace(s, *old, *replacement, *count));
  }
  if (name == "find" || name == "rfind" || name == "count") {
    if (absl::Status st = BindArgs(name, args, {{"sub", Value(), true}}, &a); !st.ok()) return st;
    absl::StatusOr<std::string> sub = StringArg(a[0], "argument");
    if (!sub.ok()) return sub.status();
    if (name == "find") return Value::Int(PyFind(s, *sub));
    if (name == "rfind") return Value::Int(PyRFind(s, *sub));
    return Value::Int(PyCount(s, *sub));
  }
  if (name == "removeprefix" || name == "removesuffix") {
    if (absl::Status st = BindArgs(name, args, {{"affix", Value(), true}}, &a); !st.ok()) return st;
    absl::StatusOr<std::string> affix = StringArg(a[0], "argument");
    if (!affix.ok()) return affix.status();
    if (name == "removeprefix" && s.compare(0, affix->size(), *affix) == 0) {
      return Value::String(s.substr(affix->size()));
    }
    if (name == "removesuffix" && !affix->empty() && s.size() >= affix->size() &&
        s.compare(s.size() - affix->size(), affix->size(), *affix) == 0) {
      return Value::String(s.substr(0, s.size() - affix->size()));
    }
    return Value::String(s);
  }
  if (name == "partition" || name == "rpartition") {
    if (absl::Status st = BindArgs(name, args, {{"sep", Value(), true}}, &a); !st.ok()) return st;
    absl::StatusOr<std::string> sep = StringArg(a[0], "sep");
    if (!sep.ok()) return sep.status();
    if (sep->empty()) return absl::InvalidArgumentError("empty separator");
    const size_t at = name == "partition" ? s.find(*sep) : s.rfind(*sep);
    List parts;
    if (at == std::string::npos) {
      parts = name == "partition" ? List{Value::String(s), Value::String(""), Value::String("")}
                                  : List{Value::String(""), Value::String(""), Value::String(s)};
    } else {
      parts = {Value::String(s.substr(0, at)), Value::String(*sep),
               Value::String(s.substr(at + sep->size()))};
    }
    return Value::MakeList(std::move(parts), ListKind::kTuple);
  }
  if (name == "join") {
    if (absl::Status st = BindArgs(name, args, {{"iterable", Value(), true}}, &a); !st.ok()) {
      return st;
    }
    absl::StatusOr<std::shared_ptr<const List>> items = Iterate(a[0]);
    if (!items.ok()) return items.status();
    std::string out;
    for (size_t i = 0; i < (*items)->size(); ++i) {
      const Value& item = (**items)[i];
      if (!item.is_string()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "sequence item ", i, ": expected str instance, ", TypeName(item), " found"));
      }
      if (i > 0) out += s;
      out += item.str();
      if (absl::Status st = CheckSize(ctx, out.size()); !st.ok()) return st;
    }
    return Value::String(std::move(out));
  }
  if (name == "format") return StrFormat(ctx, s, args);
  if (absl::Status st = BindArgs(name, args, {}, &a); !st.ok()) return st;
  if (name == "isdigit") return Value::Bool(PyIsDigit(s));
  if (name == "isalpha") return Value::Bool(PyIsAlpha(s));
  if (name == "isalnum") return Value::Bool(PyIsAlnum(s));
  if (name == "isspace") return Value::Bool(PyIsSpace(s));
  if (name == "islower") return Value::Bool(PyIsLower(s));
  if (name == "isupper") return Value::Bool(PyIsUpper(s));
  return absl::InvalidArgumentError(
      absl::StrCat("'str' object has no method '", AsAbsl(name), "'"));
}

absl::StatusOr<Value> DictMethod(const Dict& dict, std::string_view name, const Args& args) {
  std::vector<Value> a;
  if (name == "get") {
    if (absl::Status st =
            BindArgs(name, args, {{"key", Value(), true}, {"default", Value::None()}}, &a);
        !st.ok()) {
      return st;
    }
    if (a[0].is_string()) {
      if (const Value* v = dict.Find(a[0].str())) return *v;
    }
    return a[1];
  }
  if (absl::Status st = BindArgs(name, args, {}, &a); !st.ok()) return st;
  List out;
  out.reserve(dict.size());
  for (const auto& [key, value] : dict.items) {
    if (name == "items") {
      out.push_back(Value::MakeList({Value::String(key), value}, ListKind::kTuple));
    } else {
      out.push_back(name == "keys" ? Value::String(key) : value);
    }
  }
  return Value::MakeList(std::move(out));
}

absl::StatusOr<Value> ListMethod(CallContext& ctx, const List& items, std::string_view name,
                                 const Args& args) {
  std::vector<Value> a;
  if (absl::Status st = BindArgs(name, args, {{"value", Value(), true}}, &a); !st.ok()) return st;
  int64_t count = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    if (!Equal(items[i], a[0], ctx.budget)) {
      if (absl::Status s = CheckBudget(ctx); !s.ok()) return s;
      continue;
    }
    if (name == "index") return Value::Int(static_cast<int64_t>(i));
    ++count;
  }
  if (name == "index") return absl::InvalidArgumentError("list.index(x): x not in list");
  return Value::Int(count);
}

absl::StatusOr<Value> LoopMethod(CallContext& ctx, LoopState& loop, std::string_view name,
                                 const Args& args) {
  if (!args.keyword.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("loop.", AsAbsl(name), "() takes no keyword arguments"));
  }
  if (name == "cycle") {
    if (args.positional.empty()) return absl::InvalidArgumentError("no items for cycling given");
    return args.positional[static_cast<size_t>(loop.index0) % args.positional.size()];
  }
  // loop.changed(*values): true on the first call and whenever the values differ from the last.
  bool changed = !loop.has_changed_value || loop.changed_value.size() != args.positional.size();
  for (size_t i = 0; !changed && i < args.positional.size(); ++i) {
    changed = !Equal(loop.changed_value[i], args.positional[i], ctx.budget);
  }
  if (changed) {
    loop.has_changed_value = true;
    loop.changed_value = args.positional;
  }
  return Value::Bool(changed);
}

// A dict from namespace()/dict() arguments: an optional mapping (or list of pairs), then
// keywords.
absl::StatusOr<Dict> DictFromArgs(std::string_view fn, const Args& args) {
  Dict out;
  if (args.positional.size() > 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(AsAbsl(fn), "() takes at most 1 positional argument"));
  }
  if (!args.positional.empty()) {
    const Value& init = args.positional[0];
    if (init.is_dict()) {
      out = init.dict();
    } else if (init.is_list() || init.is_undefined()) {
      absl::StatusOr<std::shared_ptr<const List>> items = Iterate(init);
      if (!items.ok()) return items.status();
      for (const Value& pair : **items) {
        if (!pair.is_list() || pair.list().size() != 2 || !pair.list()[0].is_string()) {
          return absl::InvalidArgumentError(
              absl::StrCat(AsAbsl(fn), "(): each item must be a (str, value) pair"));
        }
        out.Set(pair.list()[0].str(), pair.list()[1]);
      }
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(AsAbsl(fn), "() argument must be a mapping, not ", TypeName(init)));
    }
  }
  for (const auto& [name, value] : args.keyword) out.Set(name, value);
  return out;
}

absl::StatusOr<Value> Range(CallContext& ctx, const Args& args) {
  if (!args.keyword.empty())
    return absl::InvalidArgumentError("range() takes no keyword arguments");
  if (args.positional.empty() || args.positional.size() > 3) {
    return absl::InvalidArgumentError(
        absl::StrCat("range expected 1 to 3 arguments, got ", args.positional.size()));
  }
  int64_t bounds[3] = {0, 0, 1};
  for (size_t i = 0; i < args.positional.size(); ++i) {
    absl::StatusOr<int64_t> v = IntArg(args.positional[i], "range() argument");
    if (!v.ok()) return v.status();
    bounds[args.positional.size() == 1 ? 1 : i] = *v;
  }
  const int64_t start = bounds[0], stop = bounds[1], step = bounds[2];
  if (step == 0) return absl::InvalidArgumentError("range() arg 3 must not be zero");
  // In unsigned arithmetic: start and stop may be anywhere in int64, and start + i * step wraps
  // back into range exactly.
  const uint64_t abs_step =
      step > 0 ? static_cast<uint64_t>(step) : static_cast<uint64_t>(-(step + 1)) + 1;
  uint64_t length = 0;
  if (step > 0 && start < stop) {
    length = (static_cast<uint64_t>(stop) - static_cast<uint64_t>(start) - 1) / abs_step + 1;
  } else if (step < 0 && start > stop) {
    length = (static_cast<uint64_t>(start) - static_cast<uint64_t>(stop) - 1) / abs_step + 1;
  }
  if (length > kMaxRange) {
    return absl::InvalidArgumentError(
        "Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
  }
  if (absl::Status s = CheckSize(ctx, static_cast<size_t>(length)); !s.ok()) return s;
  List items;
  items.reserve(static_cast<size_t>(length));
  for (uint64_t i = 0; i < length; ++i) {
    items.push_back(Value::Int(
        static_cast<int64_t>(static_cast<uint64_t>(start) + i * static_cast<uint64_t>(step))));
  }
  return Value::MakeList(std::move(items));
}

absl::StatusOr<Value> StrftimeNow(CallContext& ctx, const Args& args) {
  std::vector<Value> a;
  if (absl::Status st = BindArgs("strftime_now", args, {{"format", Value(), true}}, &a); !st.ok()) {
    return st;
  }
  absl::StatusOr<std::string> format = StringArg(a[0], "strftime_now() argument");
  if (!format.ok()) return format.status();
  std::tm tm{};
  if (ctx.options->now.has_value()) {
    tm = *ctx.options->now;
  } else {
    const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
    localtime_r(&now, &tm);
  }
  if (format->empty()) return Value::String("");
  // strftime returns 0 both for an empty result and for a buffer too small: grow a few times.
  for (size_t size = 256; size <= (size_t{1} << 20); size *= 4) {
    std::string out(size, '\0');
    const size_t n = std::strftime(out.data(), out.size(), format->c_str(), &tm);
    if (n > 0) {
      out.resize(n);
      return Value::String(std::move(out));
    }
  }
  return Value::String("");
}

absl::StatusOr<Value> CallGlobal(CallContext& ctx, std::string_view name, const Args& args) {
  if (name == "range") return Range(ctx, args);
  if (name == "namespace" || name == "dict") {
    absl::StatusOr<Dict> dict = DictFromArgs(name, args);
    if (!dict.ok()) return dict.status();
    if (name == "dict") return Value::MakeDict(*std::move(dict));
    auto ns = std::make_shared<Namespace>();
    ns->attrs = *std::move(dict);
    return Value::MakeNamespace(std::move(ns));
  }
  if (name == "raise_exception") {
    std::vector<Value> a;
    if (absl::Status st = BindArgs(name, args, {{"message", Value(), true}}, &a); !st.ok()) {
      return st;
    }
    absl::StatusOr<std::string> message = ToStr(a[0], ctx.max_bytes());
    if (!message.ok()) return message.status();
    return RaisedByTemplate(*message);
  }
  if (name == "strftime_now") return StrftimeNow(ctx, args);
  return absl::InvalidArgumentError(absl::StrCat("unknown function '", AsAbsl(name), "'"));
}

}  // namespace

const Dict& Globals() {
  static const Dict* const kGlobals = [] {
    auto* globals = new Dict();
    for (std::string_view name :
         {"range", "namespace", "dict", "raise_exception", "strftime_now"}) {
      auto fn = std::make_shared<Callable>();
      fn->type = Callable::Type::kGlobal;
      fn->name = std::string(name);
      globals->Set(std::string(name), Value::MakeCallable(std::move(fn)));
    }
    return globals;
  }();
  return *kGlobals;
}

bool HasMethod(const Value& obj, std::string_view name) {
  switch (obj.kind()) {
    case Value::Kind::kString:
      return OneOf(kStringMethods, name);
    case Value::Kind::kDict:
      return OneOf(kDictMethods, name);
    case Value::Kind::kList:
      return obj.list_kind() != ListKind::kGenerator && OneOf(kListMethods, name);
    case Value::Kind::kLoop:
      return OneOf(kLoopMethods, name);
    default:
      return false;
  }
}

absl::StatusOr<Value> CallBuiltin(CallContext& ctx, const Callable& fn, const Args& args) {
  if (fn.type == Callable::Type::kGlobal) return CallGlobal(ctx, fn.name, args);
  const Value& self = fn.receiver;
  switch (self.kind()) {
    case Value::Kind::kString:
      return StringMethod(ctx, self.str(), fn.name, args);
    case Value::Kind::kDict:
      return DictMethod(self.dict(), fn.name, args);
    case Value::Kind::kList:
      return ListMethod(ctx, self.list(), fn.name, args);
    case Value::Kind::kLoop:
      return LoopMethod(ctx, self.loop(), fn.name, args);
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("'", TypeName(self), "' object has no method '", fn.name, "'"));
  }
}

}  // namespace mamba::tokenizer::jinja
