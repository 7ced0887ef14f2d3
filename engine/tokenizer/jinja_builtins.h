// What the Jinja language gives a template besides its syntax, with jinja2's semantics in
// transformers' sandbox: the operators, attribute and item access (getattr falling back to
// getitem and back), iteration, the filters and tests, the global functions (range,
// namespace, dict, raise_exception, strftime_now) and the methods of str, dict and list that a
// template may call ("x".strip(), d.items(); not those that modify, which the immutable
// sandbox refuses).
//
// Errors are plain messages (INVALID_ARGUMENT, or RESOURCE_EXHAUSTED past a RenderOptions
// bound); the renderer adds the line.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/tokenizer/jinja.h"
#include "engine/tokenizer/jinja_value.h"

namespace mamba::tokenizer::jinja {

// What a builtin may use of the render in progress.
struct CallContext {
  const RenderOptions* options;
  int64_t* budget;  // steps left; comparisons and sorting spend it
  size_t max_bytes() const { return options->max_output_bytes; }
};

// The arguments of a call: positional, then keyword.
struct Args {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

using FilterFn = absl::StatusOr<Value> (*)(CallContext& ctx, const Value& input, const Args& args);
using TestFn = absl::StatusOr<bool> (*)(CallContext& ctx, const Value& input, const Args& args);

// The filter or test of that name, or null. Names are jinja2's ("length", "count", "d", ...).
FilterFn FindFilter(std::string_view name);
TestFn FindTest(std::string_view name);

// The filter registry's parts, each filled by the file that defines those filters
// (jinja_text_filters.cc, jinja_sequence_filters.cc); FindFilter is their only user.
using FilterTable = absl::flat_hash_map<std::string_view, FilterFn>;
void AddTextFilters(FilterTable* table);
void AddSequenceFilters(FilterTable* table);

enum class BinaryOp : uint8_t { kAdd, kSub, kMul, kDiv, kFloorDiv, kMod, kPow };

// Python's arithmetic: int (64-bit; overflow is an error rather than a big integer) and float,
// bool as int, str and list concatenation and repetition, "%" formatting of a str.
absl::StatusOr<Value> ApplyBinary(CallContext& ctx, BinaryOp op, const Value& a, const Value& b);
absl::StatusOr<Value> Negate(const Value& v, bool minus);
// Python's `item in container` (substring for str, key for dict, element for sequences).
absl::StatusOr<bool> Contains(CallContext& ctx, const Value& container, const Value& item);

// `obj.name`: a method of obj's type (bound), else the dict item, namespace or loop attribute,
// else undefined with jinja2's hint. Using an undefined `obj` is an error.
absl::StatusOr<Value> GetAttr(const Value& obj, std::string_view name);
// `obj[key]`: the item (negative indexes count from the end), else for a str key the
// attribute, else undefined.
absl::StatusOr<Value> GetItem(const Value& obj, const Value& key);
// `obj[start:stop:step]` on a str, list or tuple (null bounds as None).
absl::StatusOr<Value> GetSlice(const Value& obj, const Value& start, const Value& stop,
                               const Value& step);
// The items `for` visits: a list's or tuple's elements, a dict's keys, a str's characters,
// nothing for undefined. Other values are an error ("'int' object is not iterable").
absl::StatusOr<std::shared_ptr<const List>> Iterate(const Value& v);
// jinja2's attribute path of map/selectattr/sort(attribute=...): dotted, digits as indexes.
absl::StatusOr<Value> GetAttributePath(const Value& obj, const Value& path);

// The global functions, by name, as callables.
const Dict& Globals();
// Calls a global function or a bound method.
absl::StatusOr<Value> CallBuiltin(CallContext& ctx, const Callable& fn, const Args& args);
// True when values of obj's type have a method `name` that templates may call.
bool HasMethod(const Value& obj, std::string_view name);

// Binding arguments to parameters, Python style: positional first, then keywords by name.
struct ParamSpec {
  std::string_view name;
  Value default_value;  // undefined when the parameter has no default
  bool required = false;
};
// Fills *out with one value per parameter (the default where not given). Fails on unknown
// keywords, duplicates, too many positional arguments or a missing required one.
absl::Status BindArgs(std::string_view fn, const Args& args,
                      std::initializer_list<ParamSpec> params, std::vector<Value>* out);
// The error of using an undefined value: its hint ("'x' is undefined").
absl::Status UndefinedError(const Value& v);
// jinja2's soft_str: str() of the value, "" for undefined.
absl::StatusOr<std::string> SoftStr(const CallContext& ctx, const Value& v);
// An integer argument (bool counts), else INVALID_ARGUMENT naming `what`.
absl::StatusOr<int64_t> IntArg(const Value& v, std::string_view what);
// RESOURCE_EXHAUSTED once the render's steps are spent (a builtin looping over comparisons
// checks it as it goes).
absl::Status CheckBudget(const CallContext& ctx);
// RESOURCE_EXHAUSTED when a string of `bytes` bytes (or a list of that many items) would
// exceed the render's bound.
absl::Status CheckSize(const CallContext& ctx, size_t bytes);

}  // namespace mamba::tokenizer::jinja
