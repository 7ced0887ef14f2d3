// The values a Jinja template computes with, modelled on the Python objects jinja2 hands a
// template: None, bool, int, float, str, list, tuple, dict (insertion-ordered, string keys),
// jinja2's default Undefined, and the objects of the language itself: namespace(), the loop
// variable, and callables (macros, global functions, bound methods such as "x".strip).
//
// Lists, tuples and dicts are immutable once built (transformers renders chat templates in an
// ImmutableSandboxedEnvironment, where append/update are refused), so values share them through
// reference counts and copying a Value is cheap. Namespaces and loop objects are the only
// mutable values; the renderer breaks any reference cycle through them when it finishes.
//
// The functions below give Python's semantics: truthiness, str(), repr(), ==, ordering, and
// transformers' `tojson` (json.dumps with ensure_ascii=False).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mamba::tokenizer::jinja {

class Value;
struct Dict;
struct Namespace;
struct LoopState;
struct Callable;

using List = std::vector<Value>;

// Debian's Abseil has its own string_view type, which std::string_view does not convert to:
// this passes ours to absl::StrCat and to heterogeneous hash lookups.
inline absl::string_view AsAbsl(std::string_view s) {
  return absl::string_view(s.data(), s.size());
}

// What a sequence value is to Python: a list, a tuple, or a one-pass iterator (what jinja2's
// map/select/... filters return: always true, no len(), not JSON-serializable).
enum class ListKind : uint8_t { kList, kTuple, kGenerator };

// Lists and dicts nest at most this deep (context JSON included): bounds every recursion over
// values (printing, comparing, freeing).
inline constexpr int kMaxValueDepth = 256;

class Value {
 public:
  enum class Kind : uint8_t {
    kUndefined,
    kNone,
    kBool,
    kInt,
    kFloat,
    kString,
    kList,
    kDict,
    kNamespace,
    kLoop,
    kCallable,
  };

  Value() = default;  // undefined, without a hint
  // An undefined value; `hint` is the error it raises when used ("'x' is undefined").
  static Value Undefined(std::string hint);
  static Value None();
  static Value Bool(bool b);
  static Value Int(int64_t i);
  static Value Float(double d);
  static Value String(std::string s);
  static Value SharedString(std::shared_ptr<const std::string> s);
  static Value MakeList(List items, ListKind kind = ListKind::kList);
  static Value MakeDict(Dict dict);
  static Value MakeNamespace(std::shared_ptr<Namespace> ns);
  static Value MakeLoop(std::shared_ptr<LoopState> loop);
  static Value MakeCallable(std::shared_ptr<const Callable> fn);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_list() const { return kind_ == Kind::kList; }
  bool is_dict() const { return kind_ == Kind::kDict; }
  // A Python int, bool included (True + 1 == 2).
  bool is_integer() const { return kind_ == Kind::kInt || kind_ == Kind::kBool; }
  bool is_number() const { return is_integer() || kind_ == Kind::kFloat; }

  bool as_bool() const { return int_ != 0; }
  int64_t as_int() const { return int_; }  // ints and bools
  double as_double() const { return kind_ == Kind::kFloat ? float_ : static_cast<double>(int_); }
  const std::string& str() const;  // strings; the hint of an undefined value
  const std::shared_ptr<const std::string>& shared_str() const;
  const List& list() const;
  const std::shared_ptr<const List>& shared_list() const;
  ListKind list_kind() const { return list_kind_; }
  const Dict& dict() const;
  Namespace& ns() const;
  const std::shared_ptr<Namespace>& shared_ns() const;
  LoopState& loop() const;
  const Callable& callable() const;
  // Nesting of lists and dicts: 0 for everything else (namespaces count as leaves).
  int depth() const { return depth_; }
  // True when both are the same shared list, dict, namespace, loop or callable.
  bool SameObject(const Value& other) const;

 private:
  Kind kind_ = Kind::kUndefined;
  ListKind list_kind_ = ListKind::kList;
  uint16_t depth_ = 0;
  int64_t int_ = 0;
  double float_ = 0.0;
  std::variant<std::monostate, std::shared_ptr<const std::string>, std::shared_ptr<const List>,
               std::shared_ptr<const Dict>, std::shared_ptr<Namespace>, std::shared_ptr<LoopState>,
               std::shared_ptr<const Callable>>
      ptr_;
};

// A Python dict with string keys, in insertion order.
struct Dict {
  std::vector<std::pair<std::string, Value>> items;
  absl::flat_hash_map<std::string, size_t> index;  // key -> position in `items`

  const Value* Find(std::string_view key) const;
  // Replaces the value of an existing key in place, or appends.
  void Set(std::string key, Value value);
  size_t size() const { return items.size(); }
};

// What namespace(...) makes: attributes that `{% set ns.x = ... %}` may change.
struct Namespace {
  Dict attrs;
};

// The state behind `loop` in a for loop. The items stay shared until the loop ends.
struct LoopState {
  std::shared_ptr<const List> items;
  int64_t index0 = 0;
  int64_t length = 0;
  int64_t depth0 = 0;  // nesting of recursive loops (always 0: `recursive` is not supported)
  bool has_changed_value = false;
  List changed_value;  // the arguments of the last loop.changed(...)
};

// Identifies the program nodes a macro or call block is made of; defined by the parser.
struct Stmt;
// A variable scope of the renderer.
struct Scope;

// Something a template can call.
struct Callable {
  enum class Type : uint8_t {
    kGlobal,  // range, namespace, dict, raise_exception, strftime_now
    kMethod,  // a method bound to `receiver`: "a b".split, messages.items, loop.cycle
    kMacro,   // {% macro %}: `node` is the macro statement
    kCaller,  // the body of a {% call %} block, as `caller` inside the macro
  };
  Type type = Type::kGlobal;
  std::string name;
  Value receiver;
  const Stmt* node = nullptr;
  // Where a macro or call block was defined: its body sees that scope's variables.
  std::weak_ptr<Scope> scope;
};

// Python truthiness: empty strings, lists and dicts, 0, None, False and undefined are false;
// iterators (ListKind::kGenerator) are always true, as Python's generators are.
bool Truthy(const Value& v);

// Python's type name ("str", "int", "NoneType", "dict", ...), for error messages.
std::string TypeName(const Value& v);
// jinja2's object_type_repr: "None", or "<type> object" ("dict object").
std::string ObjectTypeRepr(const Value& v);

// Python's repr() of a float: the shortest digits that round-trip, "1.0", "1e+20", "inf".
std::string FormatFloat(double d);

// Appends str(v) (undefined: nothing; containers: their repr) or repr(v) to *out. Fails with
// RESOURCE_EXHAUSTED once *out would grow past `limit` bytes, and with INVALID_ARGUMENT when a
// namespace holds itself deeper than kMaxValueDepth.
absl::Status AppendStr(const Value& v, size_t limit, std::string* out);
absl::Status AppendRepr(const Value& v, size_t limit, std::string* out);
absl::StatusOr<std::string> ToStr(const Value& v, size_t limit);

// transformers' tojson: json.dumps(x, ensure_ascii, indent, separators, sort_keys).
struct JsonFormat {
  bool ensure_ascii = false;
  std::optional<std::string> indent;  // nullopt: one line
  std::string item_separator = ", ";  // json.dumps' defaults; ", " becomes "," with an indent
  std::string key_separator = ": ";
  bool sort_keys = false;
};
// Appends the JSON of `v`; values JSON cannot hold (undefined, generators, namespaces,
// callables) are INVALID_ARGUMENT, as json.dumps' TypeError.
absl::Status AppendJson(const Value& v, const JsonFormat& format, size_t limit, std::string* out);

// Python ==. Each element compared costs one unit of *budget (when not null); a comparison
// that runs out returns false and leaves *budget negative for the caller to report.
bool Equal(const Value& a, const Value& b, int64_t* budget);
// Python's ordering (<): numbers with numbers, strings by code point, lists and tuples
// lexicographically. Returns <0, 0 or >0; INVALID_ARGUMENT for types Python cannot order.
absl::StatusOr<int> Compare(const Value& a, const Value& b, int64_t* budget);

// The value of a JSON document: objects become dicts in the document's key order (a
// nlohmann::json object is already sorted by key), integers beyond int64 become floats. Fails on
// strings that are not valid UTF-8 and documents nested deeper than kMaxValueDepth.
absl::StatusOr<Value> FromJson(const nlohmann::json& json);
absl::StatusOr<Value> FromJson(const nlohmann::ordered_json& json);

}  // namespace mamba::tokenizer::jinja
