// The string and number filters of jinja_builtins.h (trim, upper, replace, indent, int, round,
// ...), as jinja2 3.1 defines them: each applies to str() of its input, so an undefined input
// reads as "" (except where jinja2 fails on it: indent, int, float, round).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/jinja_builtins.h"
#include "engine/tokenizer/jinja_text.h"

namespace mamba::tokenizer::jinja {
namespace {

using Bound = std::vector<Value>;

absl::StatusOr<Value> StringResult(const CallContext& ctx, std::string s) {
  if (absl::Status st = CheckSize(ctx, s.size()); !st.ok()) return st;
  return Value::String(std::move(s));
}

absl::StatusOr<Value> FilterString(CallContext& ctx, const Value& in, const Args& args) {
  Bound a;
  if (absl::Status s = BindArgs("string", args, {}, &a); !s.ok()) return s;
  absl::StatusOr<std::string> s = SoftStr(ctx, in);
  if (!s.ok()) return s.status();
  return Value::String(*std::move(s));
}

template <std::string (*Fn)(std::string_view)>
absl::StatusOr<Value> CaseFilter(CallContext& ctx, const Value& in, const Args& args) {
  Bound a;
  if (absl::Status s = BindArgs("filter", args, {}, &a); !s.ok()) return s;
  absl::StatusOr<std::string> s = SoftStr(ctx, in);
  if (!s.ok()) return s.status();
  return Value::String(Fn(*s));
}

absl::StatusOr<Value> FilterTrim(CallContext& ctx, const Value& in, const Args& args) {
  Bound a;
  if (absl::Status s = BindArgs("trim", args, {{"chars", Value::None()}}, &a); !s.ok()) return s;
  absl::StatusOr<std::string> s = SoftStr(ctx, in);
  if (!s.ok()) return s.status();
  std::optional<std::string> chars;
  if (a[0].is_string()) chars = a[0].str();
  return Value::String(PyStrip(*s, chars, true, true));
}

absl::StatusOr<Value> FilterReplace(CallContext& ctx, const Value& in, const Args& args) {
  Bound a;
  if (absl::Status s =
          BindArgs("replace", args,
                   {{"old", Value(), true}, {"new", Value(), true}, {"count", Value::None()}}, &a);
      !s.ok()) {
    return s;
  }
  absl::StatusOr<std::string> s = SoftStr(ctx, in);
  if (!s.ok()) return s.status();
  absl::StatusOr<std::string> old = SoftStr(ctx, a[0]);
  if (!old.ok()) return old.status();
  absl::StatusOr<std::string> replacement = SoftStr(ctx, a[1]);
  if (!replacement.ok()) return replacement.status();
  int64_t count = -1;
  if (!a[2].is_none()) {
    absl::StatusOr<int64_t> c = IntArg(a[2], "count");
    if (!c.ok()) return c.status();
    count = *c;
  }
  const int64_t occurrences = PyCount(*s, *old);
  const int64_t n = count < 0 ? occurrences : std::min(count, occurrences);
  if (replacement->size() > old->size()) {
    if (absl::Status st = CheckSize(
            ctx, s->size() + static_cast<size_t>(n) * (replacement->size() - old->size()));
        !st.ok()) {
      return st;
    }
  }
  return Value::String(PyReplace(*s, *old, *replacement, count));
}

absl::StatusOr<Value> FilterIndent(CallContext& ctx, const Value& in, const Args& args) {
  Bound a;
  if (absl::Status s = BindArgs(
          "indent", args,
          {{"width", Value::Int(4)}, {"first", Value::Bool(false)}, {"blank", Value::Bool(false)}},
          &a);
      !s.ok()) {
    return s;
  }
  if (in.is_undefined()) return UndefinedError(in);
  if (!in.is_string()) {
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported operand type(s) for +=: '", TypeName(in), "' and 'str'"));
  }
  std::string indention;
  if (a[0].is_string()) {
    indention = a[0].str();
  } else {
    absl::StatusOr<int64_t> width = IntArg(a[0], "indent width");
    if (!width.ok()) return width.status();
    indention.assign(static_cast<size_t>(std::clamp<int64_t>(*width, 0, 4096)), ' ');
  }
  const std::vector<std::string> lines = PySplitLines(in.str() + "\n", false);
  const size_t estimate = in.str().size() + (lines.size() + 1) * indention.size();
  if (absl::Status s = CheckSize(ctx, estimate); !s.ok()) return s;
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i > 0) out.push_back('\n');
    if (i > 0 && (Truthy(a[2]) || !lines[i].empty())) out += indention;
    out += lines[i];
  }
  if (Truthy(a[1])) out = indention + out;
  return Value::String(std::move(out));
}

absl::StatusOr<Value> FilterCenter(CallContext& ctx, const Value& in, const Args& args) {
  Bound a;
  if (absl::Status s = BindArgs("center", args, {{"width", Value::Int(80)}}, &a); !s.ok()) return s;
  absl::StatusOr<std::string> s = SoftStr(ctx, in);
  if (!s.ok()) return s.status();
  absl::StatusOr<int64_t> width = IntArg(a[0], "width");
  if (!width.ok()) return width.status();
  const auto len = static_cast<int64_t>(CodePointCount(*s));
  if (*width <= len) return Value::String(*std::move(s));
  if (absl::Status st = CheckSize(ctx, static_cast<size_t>(*width)); !st.ok()) return st;
  const int64_t margin = *width - len;
  const int64_t left = margin / 2 + (margin & *width & 1);
  return Value::String(std::string(static_cast<size_t>(left), ' ') + *s +
                       std::string(static_cast<size_t>(margin - left), ' '));
}

absl::StatusOr<Value> FilterEscape(CallContext& ctx, const Value& in, const Args& args) {
  Bound a;
  if (absl::Status s = BindArgs("escape", args, {}, &a); !s.ok()) return s;
  absl::StatusOr<std::string> s = SoftStr(ctx, in);
  if (!s.ok()) return s.status();
  std::string out;
  for (char c : *s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out.push_back(c);
    }
  }
  return StringResult(ctx, std::move(out));
}

absl::StatusOr<Value> FilterFormat(CallContext& ctx, const Value& in, const Args& args) {
  if (!args.positional.empty() && !args.keyword.empty()) {
    return absl::InvalidArgumentError(
        "can't handle positional and keyword arguments at the same time");
  }
  if (!args.keyword.empty()) {
    return absl::InvalidArgumentError("format with keyword arguments is not supported");
  }
  absl::StatusOr<std::string> s = SoftStr(ctx, in);
  if (!s.ok()) return s.status();
  return ApplyBinary(ctx, BinaryOp::kMod, Value::String(*std::move(s)),
                     Value::MakeList(args.positional, ListKind::kTuple));
}

absl::StatusOr<Value> FilterWordcount(CallContext& ctx, const Value& in, const Args& args) {
  Bound a;
  if (absl::Status s = BindArgs("wordcount", args, {}, &a); !s.ok()) return s;
  absl::StatusOr<std::string> s = SoftStr(ctx, in);
  if (!s.ok()) return s.status();
  return Value::Int(PyWordCount(*s));
}

absl::StatusOr<Value> FilterSafe(CallContext& ctx, const Value& in, const Args& args) {
  return FilterString(ctx, in, args);
}

// ---------------------------------------------------------------------------------------------
// Numbers.

// Python's int(str) in base 10..: optional sign and whitespace, underscores between digits.
std::optional<int64_t> ParsePyInt(std::string_view text, int base) {
  const std::string s = PyStrip(text, std::nullopt, true, true);
  size_t i = 0;
  bool negative = false;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) negative = s[i++] == '-';
  if (i + 1 < s.size() && s[i] == '0') {
    const char p = static_cast<char>(s[i + 1] | 0x20);
    if ((p == 'x' && base == 16) || (p == 'o' && base == 8) || (p == 'b' && base == 2)) i += 2;
  }
  if (i >= s.size()) return std::nullopt;
  uint64_t v = 0;  // the magnitude; 2^63 is allowed for a negative value
  bool last_digit = false;
  for (; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '_' && last_digit && i + 1 < s.size() && s[i + 1] != '_') {
      last_digit = false;
      continue;
    }
    const char lower = static_cast<char>(c | 0x20);
    const int d = c >= '0' && c <= '9'           ? c - '0'
                  : lower >= 'a' && lower <= 'z' ? lower - 'a' + 10
                                                 : 99;
    if (d >= base) return std::nullopt;
    if (v > ((uint64_t{1} << 63) - static_cast<uint64_t>(d)) / static_cast<uint64_t>(base)) {
      return std::nullopt;
    }
    v = v * static_cast<uint64_t>(base) + static_cast<uint64_t>(d);
    last_digit = true;
  }
  if (!last_digit) return std::nullopt;
  if (negative) return static_cast<int64_t>(0 - v);
  if (v > static_cast<uint64_t>(INT64_MAX)) return std::nullopt;
  return static_cast<int64_t>(v);
}

// Python's float(str): decimal or exponent notation, inf, infinity, nan, underscores between
// digits, surrounding whitespace.
std::optional<double> ParsePyFloat(std::string_view text) {
  const std::string s = PyStrip(text, std::nullopt, true, true);
  std::string clean;
  size_t i = 0;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) clean.push_back(s[i++]);
  const std::string rest = s.substr(i);
  std::string lower;
  for (char c : rest) lower.push_back(static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c));
  if (lower == "inf" || lower == "infinity" || lower == "nan") {
    clean += lower;
    return std::strtod(clean.c_str(), nullptr);
  }
  auto is_digit = [&](size_t k) { return k < rest.size() && rest[k] >= '0' && rest[k] <= '9'; };
  // Digits, with single underscores between them.
  auto digit_run = [&](size_t* k) {
    const size_t start = *k;
    while (*k < rest.size()) {
      if (is_digit(*k)) {
        clean.push_back(rest[(*k)++]);
      } else if (rest[*k] == '_' && *k > start && is_digit(*k - 1) && is_digit(*k + 1)) {
        ++*k;
      } else {
        break;
      }
    }
    return *k > start;
  };
  size_t k = 0;
  const bool int_digits = digit_run(&k);
  bool frac_digits = false;
  if (k < rest.size() && rest[k] == '.') {
    clean.push_back('.');
    ++k;
    frac_digits = digit_run(&k);
  }
  if (!int_digits && !frac_digits) return std::nullopt;
  if (k < rest.size() && (rest[k] == 'e' || rest[k] == 'E')) {
    clean.push_back('e');
    ++k;
    if (k < rest.size() && (rest[k] == '+' || rest[k] == '-')) clean.push_back(rest[k++]);
    if (!digit_run(&k)) return std::nullopt;
  }
  if (k != rest.size()) return std::nullopt;
  return std::strtod(clean.c_str(), nullptr);
}

absl::StatusOr<Value> FilterInt(CallContext&, const Value& in, const Args& args) {
  Bound a;
  if (absl::Status s =
          BindArgs("int", args, {{"default", Value::Int(0)}, {"base", Value::Int(10)}}, &a);
      !s.ok()) {
    return s;
  }
  if (in.is_undefined()) return UndefinedError(in);
  if (in.is_integer()) return Value::Int(in.as_int());
  if (in.kind() == Value::Kind::kFloat) {
    const double d = in.as_double();
    if (std::isnan(d)) return a[0];
    if (std::isinf(d) || std::fabs(d) >= 9.2e18) {
      return absl::InvalidArgumentError("cannot convert float infinity or huge float to integer");
    }
    return Value::Int(static_cast<int64_t>(d));
  }
  if (in.is_string()) {
    absl::StatusOr<int64_t> base = IntArg(a[1], "base");
    if (!base.ok()) return base.status();
    if (*base < 2 || *base > 36)
      return absl::InvalidArgumentError("int() base must be >= 2 and <= 36");
    if (std::optional<int64_t> v = ParsePyInt(in.str(), static_cast<int>(*base)))
      return Value::Int(*v);
    if (std::optional<double> d = ParsePyFloat(in.str())) {
      if (std::isfinite(*d) && std::fabs(*d) < 9.2e18) return Value::Int(static_cast<int64_t>(*d));
    }
  }
  return a[0];
}

absl::StatusOr<Value> FilterFloat(CallContext&, const Value& in, const Args& args) {
  Bound a;
  if (absl::Status s = BindArgs("float", args, {{"default", Value::Float(0.0)}}, &a); !s.ok())
    return s;
  if (in.is_undefined()) return UndefinedError(in);
  if (in.is_number()) return Value::Float(in.as_double());
  if (in.is_string()) {
    if (std::optional<double> d = ParsePyFloat(in.str())) return Value::Float(*d);
  }
  return a[0];
}

absl::StatusOr<Value> FilterAbs(CallContext&, const Value& in, const Args& args) {
  Bound a;
  if (absl::Status s = BindArgs("abs", args, {}, &a); !s.ok()) return s;
  if (in.is_integer()) {
    if (in.as_int() == INT64_MIN) return absl::InvalidArgumentError("integer overflow");
    return Value::Int(in.as_int() < 0 ? -in.as_int() : in.as_int());
  }
  if (in.is_number()) return Value::Float(std::fabs(in.as_double()));
  return absl::InvalidArgumentError(
      absl::StrCat("bad operand type for abs(): '", TypeName(in), "'"));
}

// Python's round(x, ndigits) for floats: correctly rounded, ties to even on the exact binary
// value, which is what printf's %.Nf computes.
double PyRound(double x, int64_t ndigits) {
  if (!std::isfinite(x) || ndigits > 323) return x;
  if (ndigits >= 0) {
    char buf[512];
    std::snprintf(buf, sizeof(buf), "%.*f", static_cast<int>(ndigits), x);
    return std::strtod(buf, nullptr);
  }
  const double p = std::pow(10.0, static_cast<double>(-ndigits));
  if (!std::isfinite(p)) return 0.0 * x;
  return std::nearbyint(x / p) * p;
}

absl::StatusOr<Value> FilterRound(CallContext&, const Value& in, const Args& args) {
  Bound a;
  if (absl::Status s = BindArgs(
          "round", args, {{"precision", Value::Int(0)}, {"method", Value::String("common")}}, &a);
      !s.ok()) {
    return s;
  }
  absl::StatusOr<int64_t> precision = IntArg(a[0], "precision");
  if (!precision.ok()) return precision.status();
  const std::string method = a[1].is_string() ? a[1].str() : "";
  if (method != "common" && method != "ceil" && method != "floor") {
    return absl::InvalidArgumentError("method must be common, ceil or floor");
  }
  if (!in.is_number()) {
    return absl::InvalidArgumentError(
        absl::StrCat("type ", TypeName(in), " doesn't define __round__ method"));
  }
  if (method == "common") {
    if (in.is_integer()) {
      if (*precision >= 0) return Value::Int(in.as_int());
      return Value::Int(
          static_cast<int64_t>(PyRound(static_cast<double>(in.as_int()), *precision)));
    }
    return Value::Float(PyRound(in.as_double(), *precision));
  }
  const double p = std::pow(10.0, static_cast<double>(*precision));
  const double scaled = in.as_double() * p;
  return Value::Float((method == "ceil" ? std::ceil(scaled) : std::floor(scaled)) / p);
}

}  // namespace

void AddTextFilters(FilterTable* table) {
  table->insert({
      {"abs", FilterAbs},
      {"capitalize", CaseFilter<PyCapitalize>},
      {"center", FilterCenter},
      {"e", FilterEscape},
      {"escape", FilterEscape},
      {"float", FilterFloat},
      {"forceescape", FilterEscape},
      {"format", FilterFormat},
      {"indent", FilterIndent},
      {"int", FilterInt},
      {"lower", CaseFilter<PyLower>},
      {"replace", FilterReplace},
      {"round", FilterRound},
      {"safe", FilterSafe},
      {"string", FilterString},
      {"title", CaseFilter<JinjaTitle>},
      {"trim", FilterTrim},
      {"upper", CaseFilter<PyUpper>},
      {"wordcount", FilterWordcount},
  });
}

FilterFn FindFilter(std::string_view name) {
  static const FilterTable* const kFilters = [] {
    auto* table = new FilterTable();
    AddTextFilters(table);
    AddSequenceFilters(table);
    return table;
  }();
  auto it = kFilters->find(name);
  return it == kFilters->end() ? nullptr : it->second;
}

}  // namespace mamba::tokenizer::jinja
