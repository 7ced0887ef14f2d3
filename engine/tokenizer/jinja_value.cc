#include "engine/tokenizer/jinja_value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/jinja_text.h"
#include "engine/tokenizer/tokenizer.h"

namespace mamba::tokenizer::jinja {
namespace {

uint16_t DepthOf(int depth) {
  return static_cast<uint16_t>(std::min(depth, static_cast<int>(UINT16_MAX)));
}

absl::Status TooLarge(size_t limit) {
  return absl::ResourceExhaustedError(
      absl::StrCat("rendered text larger than the limit of ", limit, " bytes"));
}

absl::Status CheckSize(const std::string& out, size_t limit) {
  return out.size() > limit ? TooLarge(limit) : absl::OkStatus();
}

// repr() of values inside containers, and str() at the top: `top` selects str().
absl::Status AppendValue(const Value& v, bool top, int depth, size_t limit, std::string* out) {
  if (depth > 2 * kMaxValueDepth) {
    return absl::InvalidArgumentError("value nested too deeply to print");
  }
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      if (!top) out->append("Undefined");
      break;
    case Value::Kind::kNone:
      out->append("None");
      break;
    case Value::Kind::kBool:
      out->append(v.as_bool() ? "True" : "False");
      break;
    case Value::Kind::kInt:
      absl::StrAppend(out, v.as_int());
      break;
    case Value::Kind::kFloat:
      out->append(FormatFloat(v.as_double()));
      break;
    case Value::Kind::kString:
      if (top) {
        out->append(v.str());
      } else {
        AppendPyStrRepr(v.str(), out);
      }
      break;
    case Value::Kind::kList: {
      if (v.list_kind() == ListKind::kGenerator) {
        out->append("<generator object>");
        break;
      }
      const bool tuple = v.list_kind() == ListKind::kTuple;
      out->push_back(tuple ? '(' : '[');
      const List& items = v.list();
      for (size_t i = 0; i < items.size(); ++i) {
        if (i > 0) out->append(", ");
        if (absl::Status s = AppendValue(items[i], false, depth + 1, limit, out); !s.ok()) return s;
      }
      if (tuple && items.size() == 1) out->push_back(',');
      out->push_back(tuple ? ')' : ']');
      break;
    }
    case Value::Kind::kDict:
    case Value::Kind::kNamespace: {
      const bool ns = v.kind() == Value::Kind::kNamespace;
      const Dict& dict = ns ? v.ns().attrs : v.dict();
      out->append(ns ? "<Namespace {" : "{");
      for (size_t i = 0; i < dict.items.size(); ++i) {
        if (i > 0) out->append(", ");
        AppendPyStrRepr(dict.items[i].first, out);
        out->append(": ");
        if (absl::Status s = AppendValue(dict.items[i].second, false, depth + 1, limit, out);
            !s.ok()) {
          return s;
        }
      }
      out->append(ns ? "}>" : "}");
      break;
    }
    case Value::Kind::kLoop:
      absl::StrAppend(out, "<LoopContext ", v.loop().index0 + 1, "/", v.loop().length, ">");
      break;
    case Value::Kind::kCallable: {
      const Callable& fn = v.callable();
      switch (fn.type) {
        case Callable::Type::kMacro:
        case Callable::Type::kCaller:
          out->append("<Macro ");
          AppendPyStrRepr(fn.name, out);
          out->append(">");
          break;
        case Callable::Type::kMethod:
          absl::StrAppend(out, "<built-in method ", fn.name, ">");
          break;
        case Callable::Type::kGlobal:
          absl::StrAppend(out, "<function ", fn.name, ">");
          break;
      }
      break;
    }
  }
  return CheckSize(*out, limit);
}

void AppendJsonString(std::string_view s, bool ensure_ascii, std::string* out) {
  out->push_back('"');
  size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<uint8_t>(s[i]);
    if (b >= 0x80) {
      // A whole UTF-8 sequence: literal, or \u escapes (surrogate pairs above the BMP).
      size_t len = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : 2;
      len = std::min(len, s.size() - i);
      if (!ensure_ascii) {
        out->append(s.substr(i, len));
      } else {
        const std::u32string cp = DecodeUtf8(s.substr(i, len));
        char buf[16];
        for (char32_t c : cp) {
          if (c >= 0x10000) {
            const char32_t v = c - 0x10000;
            std::snprintf(buf, sizeof(buf), "\\u%04x\\u%04x", 0xd800 + (v >> 10),
                          0xdc00 + (v & 0x3ff));
          } else {
            std::snprintf(buf, sizeof(buf), "\\u%04x", static_cast<unsigned>(c));
          }
          out->append(buf);
        }
      }
      i += len;
      continue;
    }
    switch (b) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      case '\b':
        out->append("\\b");
        break;
      case '\f':
        out->append("\\f");
        break;
      default:
        if (b < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", static_cast<unsigned>(b));
          out->append(buf);
        } else {
          out->push_back(static_cast<char>(b));
        }
    }
    ++i;
  }
  out->push_back('"');
}

void AppendNewlineIndent(const JsonFormat& f, int level, std::string* out) {
  out->push_back('\n');
  for (int i = 0; i < level; ++i) out->append(*f.indent);
}

absl::Status AppendJsonValue(const Value& v, const JsonFormat& f, int level, size_t limit,
                             std::string* out) {
  switch (v.kind()) {
    case Value::Kind::kNone:
      out->append("null");
      break;
    case Value::Kind::kBool:
      out->append(v.as_bool() ? "true" : "false");
      break;
    case Value::Kind::kInt:
      absl::StrAppend(out, v.as_int());
      break;
    case Value::Kind::kFloat: {
      const double d = v.as_double();
      if (std::isnan(d)) {
        out->append("NaN");
      } else if (std::isinf(d)) {
        out->append(d > 0 ? "Infinity" : "-Infinity");
      } else {
        out->append(FormatFloat(d));
      }
      break;
    }
    case Value::Kind::kString:
      AppendJsonString(v.str(), f.ensure_ascii, out);
      break;
    case Value::Kind::kList: {
      if (v.list_kind() == ListKind::kGenerator) {
        return absl::InvalidArgumentError("Object of type generator is not JSON serializable");
      }
      const List& items = v.list();
      if (items.empty()) {
        out->append("[]");
        break;
      }
      out->push_back('[');
      if (f.indent) AppendNewlineIndent(f, level + 1, out);
      for (size_t i = 0; i < items.size(); ++i) {
        if (i > 0) {
          out->append(f.item_separator);
          if (f.indent) AppendNewlineIndent(f, level + 1, out);
        }
        if (absl::Status s = AppendJsonValue(items[i], f, level + 1, limit, out); !s.ok()) return s;
      }
      if (f.indent) AppendNewlineIndent(f, level, out);
      out->push_back(']');
      break;
    }
    case Value::Kind::kDict: {
      const Dict& dict = v.dict();
      if (dict.items.empty()) {
        out->append("{}");
        break;
      }
      std::vector<size_t> order(dict.items.size());
      for (size_t i = 0; i < order.size(); ++i) order[i] = i;
      if (f.sort_keys) {
        std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
          return dict.items[a].first < dict.items[b].first;
        });
      }
      out->push_back('{');
      if (f.indent) AppendNewlineIndent(f, level + 1, out);
      for (size_t i = 0; i < order.size(); ++i) {
        if (i > 0) {
          out->append(f.item_separator);
          if (f.indent) AppendNewlineIndent(f, level + 1, out);
        }
        const auto& [key, value] = dict.items[order[i]];
        AppendJsonString(key, f.ensure_ascii, out);
        out->append(f.key_separator);
        if (absl::Status s = AppendJsonValue(value, f, level + 1, limit, out); !s.ok()) return s;
      }
      if (f.indent) AppendNewlineIndent(f, level, out);
      out->push_back('}');
      break;
    }
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("Object of type ", TypeName(v), " is not JSON serializable"));
  }
  return CheckSize(*out, limit);
}

absl::Status UnorderedTypes(const Value& a, const Value& b) {
  for (const Value* v : {&a, &b}) {
    if (v->is_undefined()) {
      return absl::InvalidArgumentError(v->str().empty() ? "value is undefined" : v->str());
    }
  }
  return absl::InvalidArgumentError(absl::StrCat("'<' not supported between instances of '",
                                                 TypeName(a), "' and '", TypeName(b), "'"));
}

template <typename Json>
absl::StatusOr<Value> ConvertJson(const Json& json, int depth) {
  if (depth > kMaxValueDepth) {
    return absl::InvalidArgumentError(
        absl::StrCat("context nested deeper than ", kMaxValueDepth, " levels"));
  }
  switch (json.type()) {
    case nlohmann::json::value_t::null:
      return Value::None();
    case nlohmann::json::value_t::boolean:
      return Value::Bool(json.template get<bool>());
    case nlohmann::json::value_t::number_integer:
      return Value::Int(json.template get<int64_t>());
    case nlohmann::json::value_t::number_unsigned: {
      const auto u = json.template get<uint64_t>();
      if (u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return Value::Int(static_cast<int64_t>(u));
      }
      return Value::Float(static_cast<double>(u));
    }
    case nlohmann::json::value_t::number_float:
      return Value::Float(json.template get<double>());
    case nlohmann::json::value_t::string: {
      const auto& s = json.template get_ref<const std::string&>();
      if (!IsValidUtf8(s)) return absl::InvalidArgumentError("context string is not valid UTF-8");
      return Value::String(s);
    }
    case nlohmann::json::value_t::array: {
      List items;
      items.reserve(json.size());
      for (const auto& item : json) {
        absl::StatusOr<Value> v = ConvertJson(item, depth + 1);
        if (!v.ok()) return v.status();
        items.push_back(*std::move(v));
      }
      return Value::MakeList(std::move(items));
    }
    case nlohmann::json::value_t::object: {
      Dict dict;
      dict.items.reserve(json.size());
      for (auto it = json.begin(); it != json.end(); ++it) {
        if (!IsValidUtf8(it.key())) {
          return absl::InvalidArgumentError("context key is not valid UTF-8");
        }
        absl::StatusOr<Value> v = ConvertJson(it.value(), depth + 1);
        if (!v.ok()) return v.status();
        dict.Set(it.key(), *std::move(v));
      }
      return Value::MakeDict(std::move(dict));
    }
    default:
      return absl::InvalidArgumentError("context holds a JSON value that is not text (binary)");
  }
}

}  // namespace

Value Value::Undefined(std::string hint) {
  Value v;
  v.ptr_ = std::make_shared<const std::string>(std::move(hint));
  return v;
}

Value Value::None() {
  Value v;
  v.kind_ = Kind::kNone;
  return v;
}

Value Value::Bool(bool b) {
  Value v;
  v.kind_ = Kind::kBool;
  v.int_ = b ? 1 : 0;
  return v;
}

Value Value::Int(int64_t i) {
  Value v;
  v.kind_ = Kind::kInt;
  v.int_ = i;
  return v;
}

Value Value::Float(double d) {
  Value v;
  v.kind_ = Kind::kFloat;
  v.float_ = d;
  return v;
}

Value Value::String(std::string s) {
  return SharedString(std::make_shared<const std::string>(std::move(s)));
}

Value Value::SharedString(std::shared_ptr<const std::string> s) {
  Value v;
  v.kind_ = Kind::kString;
  v.ptr_ = std::move(s);
  return v;
}

Value Value::MakeList(List items, ListKind kind) {
  Value v;
  v.kind_ = Kind::kList;
  v.list_kind_ = kind;
  int depth = 0;
  for (const Value& item : items) depth = std::max(depth, static_cast<int>(item.depth_));
  v.depth_ = DepthOf(depth + 1);
  v.ptr_ = std::make_shared<const List>(std::move(items));
  return v;
}

Value Value::MakeDict(Dict dict) {
  Value v;
  v.kind_ = Kind::kDict;
  int depth = 0;
  for (const auto& item : dict.items) depth = std::max(depth, static_cast<int>(item.second.depth_));
  v.depth_ = DepthOf(depth + 1);
  v.ptr_ = std::make_shared<const Dict>(std::move(dict));
  return v;
}

Value Value::MakeNamespace(std::shared_ptr<Namespace> ns) {
  Value v;
  v.kind_ = Kind::kNamespace;
  v.ptr_ = std::move(ns);
  return v;
}

Value Value::MakeLoop(std::shared_ptr<LoopState> loop) {
  Value v;
  v.kind_ = Kind::kLoop;
  v.ptr_ = std::move(loop);
  return v;
}

Value Value::MakeCallable(std::shared_ptr<const Callable> fn) {
  Value v;
  v.kind_ = Kind::kCallable;
  v.ptr_ = std::move(fn);
  return v;
}

const std::string& Value::str() const {
  static const std::string* const kEmpty = new std::string();
  const auto* p = std::get_if<std::shared_ptr<const std::string>>(&ptr_);
  return p != nullptr && *p != nullptr ? **p : *kEmpty;
}

const std::shared_ptr<const std::string>& Value::shared_str() const {
  return std::get<std::shared_ptr<const std::string>>(ptr_);
}

const List& Value::list() const { return *std::get<std::shared_ptr<const List>>(ptr_); }
const std::shared_ptr<const List>& Value::shared_list() const {
  return std::get<std::shared_ptr<const List>>(ptr_);
}
const Dict& Value::dict() const { return *std::get<std::shared_ptr<const Dict>>(ptr_); }
Namespace& Value::ns() const { return *std::get<std::shared_ptr<Namespace>>(ptr_); }
const std::shared_ptr<Namespace>& Value::shared_ns() const {
  return std::get<std::shared_ptr<Namespace>>(ptr_);
}
LoopState& Value::loop() const { return *std::get<std::shared_ptr<LoopState>>(ptr_); }
const Callable& Value::callable() const { return *std::get<std::shared_ptr<const Callable>>(ptr_); }

bool Value::SameObject(const Value& other) const {
  if (kind_ != other.kind_) return false;
  switch (kind_) {
    case Kind::kList:
    case Kind::kDict:
    case Kind::kNamespace:
    case Kind::kLoop:
    case Kind::kCallable:
      return ptr_ == other.ptr_;
    default:
      return false;
  }
}

const Value* Dict::Find(std::string_view key) const {
  auto it = index.find(AsAbsl(key));
  return it == index.end() ? nullptr : &items[it->second].second;
}

void Dict::Set(std::string key, Value value) {
  auto it = index.find(key);
  if (it != index.end()) {
    items[it->second].second = std::move(value);
    return;
  }
  index.emplace(key, items.size());
  items.emplace_back(std::move(key), std::move(value));
}

bool Truthy(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone:
      return false;
    case Value::Kind::kBool:
    case Value::Kind::kInt:
      return v.as_int() != 0;
    case Value::Kind::kFloat:
      return v.as_double() != 0.0;
    case Value::Kind::kString:
      return !v.str().empty();
    case Value::Kind::kList:
      return v.list_kind() == ListKind::kGenerator || !v.list().empty();
    case Value::Kind::kDict:
      return !v.dict().items.empty();
    default:
      return true;
  }
}

std::string TypeName(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return "Undefined";
    case Value::Kind::kNone:
      return "NoneType";
    case Value::Kind::kBool:
      return "bool";
    case Value::Kind::kInt:
      return "int";
    case Value::Kind::kFloat:
      return "float";
    case Value::Kind::kString:
      return "str";
    case Value::Kind::kList:
      return v.list_kind() == ListKind::kList    ? "list"
             : v.list_kind() == ListKind::kTuple ? "tuple"
                                                 : "generator";
    case Value::Kind::kDict:
      return "dict";
    case Value::Kind::kNamespace:
      return "Namespace";
    case Value::Kind::kLoop:
      return "LoopContext";
    case Value::Kind::kCallable:
      return v.callable().type == Callable::Type::kMethod   ? "builtin_function_or_method"
             : v.callable().type == Callable::Type::kGlobal ? "function"
                                                            : "Macro";
  }
  return "object";
}

std::string ObjectTypeRepr(const Value& v) {
  if (v.is_none()) return "None";
  return absl::StrCat(TypeName(v), " object");
}

std::string FormatFloat(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  // Shortest round-trip digits, then Python's layout: positional for exponents -4..15.
  char buf[64];
  const auto result = std::to_chars(buf, buf + sizeof(buf), d, std::chars_format::scientific);
  const std::string_view sci(buf, static_cast<size_t>(result.ptr - buf));
  const size_t e = sci.find('e');
  std::string_view mantissa = sci.substr(0, e);
  int exponent = 0;
  std::from_chars(sci.data() + e + 1 + (sci[e + 1] == '+' ? 1 : 0), sci.data() + sci.size(),
                  exponent);
  std::string out;
  if (!mantissa.empty() && mantissa[0] == '-') {
    out.push_back('-');
    mantissa.remove_prefix(1);
  }
  std::string digits;
  for (char c : mantissa) {
    if (c != '.') digits.push_back(c);
  }
  if (exponent < -4 || exponent >= 16) {
    out.push_back(digits[0]);
    if (digits.size() > 1) {
      out.push_back('.');
      out.append(digits, 1, std::string::npos);
    }
    char exp[16];
    std::snprintf(exp, sizeof(exp), "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
    out.append(exp);
    return out;
  }
  if (exponent < 0) {
    out.append("0.");
    out.append(static_cast<size_t>(-exponent - 1), '0');
    out.append(digits);
    return out;
  }
  const auto int_digits = static_cast<size_t>(exponent + 1);
  if (digits.size() <= int_digits) {
    out.append(digits);
    out.append(int_digits - digits.size(), '0');
    out.append(".0");
  } else {
    out.append(digits, 0, int_digits);
    out.push_back('.');
    out.append(digits, int_digits, std::string::npos);
  }
  return out;
}

absl::Status AppendStr(const Value& v, size_t limit, std::string* out) {
  return AppendValue(v, true, 0, limit, out);
}

absl::Status AppendRepr(const Value& v, size_t limit, std::string* out) {
  return AppendValue(v, false, 0, limit, out);
}

absl::StatusOr<std::string> ToStr(const Value& v, size_t limit) {
  if (v.is_string()) return v.str();
  std::string out;
  if (absl::Status s = AppendStr(v, limit, &out); !s.ok()) return s;
  return out;
}

absl::Status AppendJson(const Value& v, const JsonFormat& format, size_t limit, std::string* out) {
  return AppendJsonValue(v, format, 0, limit, out);
}

bool Equal(const Value& a, const Value& b, int64_t* budget) {
  if (budget != nullptr && --*budget < 0) return false;
  if (a.is_number() && b.is_number()) {
    if (a.is_integer() && b.is_integer()) return a.as_int() == b.as_int();
    return a.as_double() == b.as_double();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone:
      return true;
    case Value::Kind::kString:
      return a.str() == b.str();
    case Value::Kind::kList: {
      if (a.SameObject(b)) return true;
      if (a.list_kind() != b.list_kind() || a.list_kind() == ListKind::kGenerator) return false;
      const List& x = a.list();
      const List& y = b.list();
      if (x.size() != y.size()) return false;
      for (size_t i = 0; i < x.size(); ++i) {
        if (!Equal(x[i], y[i], budget)) return false;
      }
      return true;
    }
    case Value::Kind::kDict: {
      if (a.SameObject(b)) return true;
      const Dict& x = a.dict();
      const Dict& y = b.dict();
      if (x.size() != y.size()) return false;
      for (const auto& [key, value] : x.items) {
        const Value* other = y.Find(key);
        if (other == nullptr || !Equal(value, *other, budget)) return false;
      }
      return true;
    }
    default:
      return a.SameObject(b);
  }
}

absl::StatusOr<int> Compare(const Value& a, const Value& b, int64_t* budget) {
  if (budget != nullptr && --*budget < 0) return 0;
  if (a.is_number() && b.is_number()) {
    if (a.is_integer() && b.is_integer()) {
      return a.as_int() < b.as_int() ? -1 : a.as_int() > b.as_int() ? 1 : 0;
    }
    const double x = a.as_double(), y = b.as_double();
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (a.is_string() && b.is_string()) {
    const int c = a.str().compare(b.str());
    return c < 0 ? -1 : c > 0 ? 1 : 0;
  }
  if (a.is_list() && b.is_list() && a.list_kind() == b.list_kind() &&
      a.list_kind() != ListKind::kGenerator) {
    const List& x = a.list();
    const List& y = b.list();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (Equal(x[i], y[i], budget)) continue;
      return Compare(x[i], y[i], budget);
    }
    return x.size() < y.size() ? -1 : x.size() > y.size() ? 1 : 0;
  }
  return UnorderedTypes(a, b);
}

absl::StatusOr<Value> FromJson(const nlohmann::json& json) { return ConvertJson(json, 0); }
absl::StatusOr<Value> FromJson(const nlohmann::ordered_json& json) { return ConvertJson(json, 0); }

}  // namespace mamba::tokenizer::jinja
