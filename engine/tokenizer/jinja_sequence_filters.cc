// The sequence filters of jinja_builtins.h (length, first, join, sort, unique, map, select,
// selectattr, tojson, ...), as jinja2 3.1 defines them, with transformers' tojson. Those that
// jinja2 implements as generators (map, select, reject, selectattr, rejectattr, unique, reverse,
// batch, items) return ListKind::kGenerator values: true even when empty, no length, as there.
#include <algorithm>
#include <cmath>
#include <string>
#include <utility>

#include "absl/container/flat_hash_set.h"
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

Value Generator(List items) { return Value::MakeList(std::move(items), ListKind::kGenerator); }

// Lowercases strings, as jinja2's ignore_case postprocessing of sort/unique/min/max keys.
Value IgnoreCase(const Value& v, bool case_sensitive) {
  if (case_sensitive || !v.is_string()) return v;
  return Value::String(PyLower(v.str()));
}

// The items of an iterable input, as jinja2 iterates it (undefined: none).
absl::StatusOr<std::shared_ptr<const List>> ItemsOf(const Value& v) { return Iterate(v); }

absl::StatusOr<Value> FilterLength(CallContext&, const Value& in, const Args& args) {
  Bound a;
  if (absl::Status s = BindArgs("length", args, {}, &a); !s.ok()) return s;
  switch (in.kind()) {
    case Value::Kind::kUndefined:
      return Value::Int(0);
    case Value::Kind::kString:
      return Value::Int(static_cast<int64_t>(CodePointCount(in.str())));
    case Value::Kind::kList:
      if (in.list_kind() != ListKind::kGenerator) {
        return Value::Int(static_cast<int64_t>(in.list().size()));
      }
      break;
    case Value::Kind::kDict:
      return Value::Int(static_cast<int64_t>(in.dict().size()));
    default:
      break;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("object of type '", TypeName(in), "' has no len()"));
}

absl::StatusOr<Value> FilterFirst(CallContext&, const Value& in, const Args& args) {
  Bound a;
  if (absl::Status s = BindArgs("first", args, {}, &a); !s.ok()) return s;
  absl::StatusOr<std::shared_ptr<const List>> items = ItemsOf(in);
  if (!items.ok()) return items.status();
  if ((*items)->empty()) return Value::Undefined("No first item, sequence was empty.");
  return (*items)->front();
}

absl::StatusOr<Value> FilterLast(CallContext&, const Value& in, const Args& args) {
  Bound a;
  if (absl::Status s = BindArgs("last", args, {}, &a); !s.ok()) return s;
  if (in.is_list() && in.list_kind() == ListKind::kGenerator) {
    return absl::InvalidArgumentError("'generator' object is not reversible");
  }
  absl::StatusOr<std::shared_ptr<const List>> items = ItemsOf(in);
  if (!items.ok()) return items.status();
  if ((*items)->empty()) return Value::Undefined("No last item, sequence was empty.");
  return (*items)->back();
}

absl::StatusOr<Value> FilterList(CallContext&, const Value& in, const Args& args) {
  Bound a;
  if (absl::Status s = BindArgs("list", args, {}, &a); !s.ok()) return s;
  absl::StatusOr<std::shared_ptr<const List>> items = ItemsOf(in);
  if (!items.ok()) return items.status();
  return Value::MakeList(**items);
}

absl::StatusOr<Value> FilterReverse(CallContext&, const Value& in, const Args& args) {
  Bound a;
  if (absl::Status s = BindArgs("reverse", args, {}, &a); !s.ok()) return s;
  if (in.is_string()) {
    std::u32string cps = DecodeUtf8(in.str());
    std::reverse(cps.begin(), cps.end());
    return Value::String(EncodeUtf8(cps));
  }
  absl::StatusOr<std::shared_ptr<const List>> items = ItemsOf(in);
  if (!items.ok()) return items.status();
  return Generator(List((*items)->rbegin(), (*items)->rend()));
}

absl::StatusOr<Value> FilterJoin(CallContext& ctx, const Value& in, const Args& args) {
  Bound a;
  if (absl::Status s =
          BindArgs("join", args, {{"d", Value::String("")}, {"attribute", Value::None()}}, &a);
      !s.ok()) {
    return s;
  }
  absl::StatusOr<std::shared_ptr<const List>> items = ItemsOf(in);
  if (!items.ok()) return items.status();
  absl::StatusOr<std::string> sep = SoftStr(ctx, a[0]);
  if (!sep.ok()) return sep.status();
  std::string out;
  for (size_t i = 0; i < (*items)->size(); ++i) {
    Value item = (**items)[i];
    if (!a[1].is_none()) {
      absl::StatusOr<Value> attr = GetAttributePath(item, a[1]);
      if (!attr.ok()) return attr.status();
      item = *std::move(attr);
    }
    if (i > 0) out += *sep;
    if (absl::Status s = AppendStr(item, ctx.max_bytes(), &out); !s.ok()) return s;
  }
  return StringResult(ctx, std::move(out));
}

// The sort key of jinja2's make_multi_attrgetter: one value per comma-separated attribute.
absl::StatusOr<Value> SortKey(const Value& item, const Value& attribute, bool case_sensitive) {
  List key;
  if (attribute.is_string()) {
    const std::string& spec = attribute.str();
    size_t start = 0;
    while (true) {
      const size_t comma = spec.find(',', start);
      absl::StatusOr<Value> v = GetAttributePath(
          item, Value::String(spec.substr(
                    start, comma == std::string::npos ? std::string::npos : comma - start)));
      if (!v.ok()) return v.status();
      key.push_back(IgnoreCase(*v, case_sensitive));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  } else {
    absl::StatusOr<Value> v = GetAttributePath(item, attribute);
    if (!v.ok()) return v.status();
    key.push_back(IgnoreCase(*v, case_sensitive));
  }
  return Value::MakeList(std::move(key));
}

// Sorts `items` stably by `keys` (Python's sorted: stable also when reversed).
absl::Status SortByKeys(CallContext& ctx, List* items, std::vector<Value> keys, bool reverse) {
  std::vector<size_t> order(items->size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  absl::Status error;
  std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) {
    if (!error.ok()) return false;
    if (absl::Status spent = CheckBudget(ctx); !spent.ok()) {
      error = spent;
      return false;
    }
    absl::StatusOr<int> c =
        reverse ? Compare(keys[y], keys[x], ctx.budget) : Compare(keys[x], keys[y], ctx.budget);
    if (!c.ok()) {
      error = c.status();
      return false;
    }
    return *c < 0;
  });
  if (!error.ok()) return error;
  List sorted;
  sorted.reserve(items->size());
  for (size_t i : order) sorted.push_back((*items)[i]);
  *items = std::move(sorted);
  return absl::OkStatus();
}

absl::StatusOr<Value> FilterSort(CallContext& ctx, const Value& in, const Args& args) {
  Bound a;
  if (absl::Status s = BindArgs("sort", args,
                                {{"reverse", Value::Bool(false)},
                                 {"case_sensitive", Value::Bool(false)},
                                 {"attribute", Value::None()}},
                                &a);
      !s.ok()) {
    return s;
  }
  absl::StatusOr<std::shared_ptr<const List>> items = ItemsOf(in);
  if (!items.ok()) return items.status();
  List out = **items;
  std::vector<Value> keys;
  for (const Value& item : out) {
    absl::StatusOr<Value> key = SortKey(item, a[2], Truthy(a[1]));
    if (!key.ok()) return key.status();
    keys.push_back(*std::move(key));
  }
  if (absl::Status s = SortByKeys(ctx, &out, std::move(keys), Truthy(a[0])); !s.ok()) return s;
  return Value::MakeList(std::move(out));
}

absl::StatusOr<Value> FilterDictsort(CallContext& ctx, const Value& in, const Args& args) {
  Bound a;
  if (absl::Status s = BindArgs("dictsort", args,
                                {{"case_sensitive", Value::Bool(false)},
                                 {"by", Value::String("key")},
                                 {"reverse", Value::Bool(false)}},
                                &a);
      !s.ok()) {
    return s;
  }
  if (in.is_undefined()) return UndefinedError(in);
  if (!in.is_dict()) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", TypeName(in), "' object has no attribute 'items'"));
  }
  const std::string by = a[1].is_string() ? a[1].str() : "";
  if (by != "key" && by != "value") {
    return absl::InvalidArgumentError("You can only sort by either \"key\" or \"value\"");
  }
  List out;
  std::vector<Value> keys;
  for (const auto& [key, value] : in.dict().items) {
    out.push_back(Value::MakeList({Value::String(key), value}, ListKind::kTuple));
    keys.push_back(IgnoreCase(by == "key" ? Value::String(key) : value, Truthy(a[0])));
  }
  if (absl::Status s = SortByKeys(ctx, &out, std::move(keys), Truthy(a[2])); !s.ok()) return s;
  return Value::MakeList(std::move(out));
}

absl::StatusOr<Value> FilterItems(CallContext&, const Value& in, const Args& args) {
  Bound a;
  if (absl::Status s = BindArgs("items", args, {}, &a); !s.ok()) return s;
  if (in.is_undefined()) return Generator({});
  if (!in.is_dict()) return absl::InvalidArgumentError("Can only get item pairs from a mapping.");
  List out;
  for (const auto& [key, value] : in.dict().items) {
    out.push_back(Value::MakeList({Value::String(key), value}, ListKind::kTuple));
  }
  return Generator(std::move(out));
}

absl::StatusOr<Value> FilterUnique(CallContext& ctx, const Value& in, const Args& args) {
  Bound a;
  if (absl::Status s =
          BindArgs("unique", args,
                   {{"case_sensitive", Value::Bool(false)}, {"attribute", Value::None()}}, &a);
      !s.ok()) {
    return s;
  }
  absl::StatusOr<std::shared_ptr<const List>> items = ItemsOf(in);
  if (!items.ok()) return items.status();
  // Strings and numbers (the usual keys) are hashed; anything else is compared one by one.
  absl::flat_hash_set<std::string> seen_hashable;
  List seen_other;
  List out;
  for (const Value& item : **items) {
    absl::StatusOr<Value> key = GetAttributePath(item, a[1]);
    if (!key.ok()) return key.status();
    const Value k = IgnoreCase(*key, Truthy(a[0]));
    bool fresh;
    if (k.is_string()) {
      fresh = seen_hashable.insert(absl::StrCat("s", k.str())).second;
    } else if (k.is_number() && (k.is_integer() || k.as_double() == std::floor(k.as_double())) &&
               std::fabs(k.as_double()) < 9e18) {
      fresh = seen_hashable.insert(absl::StrCat("n", static_cast<int64_t>(k.as_double()))).second;
    } else {
      fresh = std::none_of(seen_other.begin(), seen_other.end(),
                           [&](const Value& s) { return Equal(s, k, ctx.budget); });
      if (absl::Status s = CheckBudget(ctx); !s.ok()) return s;
      if (fresh) seen_other.push_back(k);
    }
    if (fresh) out.push_back(item);
  }
  return Generator(std::move(out));
}

absl::StatusOr<Value> MinOrMax(CallContext& ctx, const Value& in, const Args& args, bool max) {
  Bound a;
  if (absl::Status s =
          BindArgs(max ? "max" : "min", args,
                   {{"case_sensitive", Value::Bool(false)}, {"attribute", Value::None()}}, &a);
      !s.ok()) {
    return s;
  }
  absl::StatusOr<std::shared_ptr<const List>> items = ItemsOf(in);
  if (!items.ok()) return items.status();
  if ((*items)->empty()) return Value::Undefined("No aggregated item, sequence was empty.");
  const Value* best = nullptr;
  Value best_key;
  for (const Value& item : **items) {
    absl::StatusOr<Value> key = GetAttributePath(item, a[1]);
    if (!key.ok()) return key.status();
    Value k = IgnoreCase(*key, Truthy(a[0]));
    if (best != nullptr) {
      absl::StatusOr<int> c = Compare(k, best_key, ctx.budget);
      if (!c.ok()) return c.status();
      if (absl::Status s = CheckBudget(ctx); !s.ok()) return s;
      if (max ? *c <= 0 : *c >= 0) continue;
    }
    best = &item;
    best_key = std::move(k);
  }
  return *best;
}

absl::StatusOr<Value> FilterMin(CallContext& ctx, const Value& in, const Args& args) {
  return MinOrMax(ctx, in, args, false);
}
absl::StatusOr<Value> FilterMax(CallContext& ctx, const Value& in, const Args& args) {
  return MinOrMax(ctx, in, args, true);
}

absl::StatusOr<Value> FilterSum(CallContext& ctx, const Value& in, const Args& args) {
  Bound a;
  if (absl::Status s =
          BindArgs("sum", args, {{"attribute", Value::None()}, {"start", Value::Int(0)}}, &a);
      !s.ok()) {
    return s;
  }
  absl::StatusOr<std::shared_ptr<const List>> items = ItemsOf(in);
  if (!items.ok()) return items.status();
  Value total = a[1];
  for (const Value& item : **items) {
    absl::StatusOr<Value> v = GetAttributePath(item, a[0]);
    if (!v.ok()) return v.status();
    if (total.is_string()) return absl::InvalidArgumentError("sum() can't sum strings");
    absl::StatusOr<Value> next = ApplyBinary(ctx, BinaryOp::kAdd, total, *v);
    if (!next.ok()) return next.status();
    total = *std::move(next);
  }
  return total;
}

absl::StatusOr<Value> FilterBatch(CallContext& ctx, const Value& in, const Args& args) {
  Bound a;
  if (absl::Status s =
          BindArgs("batch", args, {{"linecount", Value(), true}, {"fill_with", Value::None()}}, &a);
      !s.ok()) {
    return s;
  }
  absl::StatusOr<int64_t> n = IntArg(a[0], "linecount");
  if (!n.ok()) return n.status();
  if (*n <= 0) return absl::InvalidArgumentError("batch linecount must be positive");
  absl::StatusOr<std::shared_ptr<const List>> items = ItemsOf(in);
  if (!items.ok()) return items.status();
  List out, row;
  for (const Value& item : **items) {
    if (static_cast<int64_t>(row.size()) == *n) {
      out.push_back(Value::MakeList(std::move(row)));
      row.clear();
    }
    row.push_back(item);
  }
  if (!row.empty()) {
    if (!a[1].is_none()) {
      if (absl::Status s = CheckSize(ctx, static_cast<size_t>(*n)); !s.ok()) return s;
      while (static_cast<int64_t>(row.size()) < *n) row.push_back(a[1]);
    }
    out.push_back(Value::MakeList(std::move(row)));
  }
  return Generator(std::move(out));
}

absl::StatusOr<Value> FilterDefault(CallContext&, const Value& in, const Args& args) {
  Bound a;
  if (absl::Status s =
          BindArgs("default", args,
                   {{"default_value", Value::String("")}, {"boolean", Value::Bool(false)}}, &a);
      !s.ok()) {
    return s;
  }
  if (in.is_undefined() || (Truthy(a[1]) && !Truthy(in))) return a[0];
  return in;
}

absl::StatusOr<Value> FilterAttr(CallContext&, const Value& in, const Args& args) {
  Bound a;
  if (absl::Status s = BindArgs("attr", args, {{"name", Value(), true}}, &a); !s.ok()) return s;
  if (!a[0].is_string()) return absl::InvalidArgumentError("attribute name must be a string");
  // Attributes only: a dict's items are not its attributes.
  if (in.is_dict() && !HasMethod(in, a[0].str())) {
    return Value::Undefined(absl::StrCat("'dict object' has no attribute '", a[0].str(), "'"));
  }
  return GetAttr(in, a[0].str());
}

absl::StatusOr<Value> FilterTojson(CallContext& ctx, const Value& in, const Args& args) {
  Bound a;
  if (absl::Status s = BindArgs("tojson", args,
                                {{"ensure_ascii", Value::Bool(false)},
                                 {"indent", Value::None()},
                                 {"separators", Value::None()},
                                 {"sort_keys", Value::Bool(false)}},
                                &a);
      !s.ok()) {
    return s;
  }
  JsonFormat format;
  format.ensure_ascii = Truthy(a[0]);
  format.sort_keys = Truthy(a[3]);
  if (a[1].is_string()) {
    format.indent = a[1].str();
  } else if (a[1].is_integer()) {
    format.indent =
        std::string(static_cast<size_t>(std::clamp<int64_t>(a[1].as_int(), 0, 4096)), ' ');
  } else if (!a[1].is_none()) {
    return absl::InvalidArgumentError("tojson indent must be an integer, a string or None");
  }
  // (assign, not = ",": GCC 12 warns falsely about the latter here, -Wrestrict)
  if (format.indent) format.item_separator.assign(1, ',');
  if (!a[2].is_none()) {
    if (!a[2].is_list() || a[2].list().size() != 2 || !a[2].list()[0].is_string() ||
        !a[2].list()[1].is_string()) {
      return absl::InvalidArgumentError("tojson separators must be a pair of strings");
    }
    format.item_separator = a[2].list()[0].str();
    format.key_separator = a[2].list()[1].str();
  }
  std::string out;
  if (absl::Status s = AppendJson(in, format, ctx.max_bytes(), &out); !s.ok()) return s;
  return Value::String(std::move(out));
}

// map(attribute=..., default=...) or map("filter", *args, **kwargs).
absl::StatusOr<Value> FilterMap(CallContext& ctx, const Value& in, const Args& args) {
  absl::StatusOr<std::shared_ptr<const List>> items = ItemsOf(in);
  if (!items.ok()) return items.status();
  List out;
  if (args.positional.empty()) {
    Value attribute, fallback = Value::None();
    bool has_attribute = false;
    for (const auto& [name, value] : args.keyword) {
      if (name == "attribute") {
        attribute = value;
        has_attribute = true;
      } else if (name == "default") {
        fallback = value;
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat("Unexpected keyword argument '", AsAbsl(name), "'"));
      }
    }
    if (!has_attribute) return absl::InvalidArgumentError("map requires a filter argument");
    for (const Value& item : **items) {
      absl::StatusOr<Value> v = GetAttributePath(item, attribute);
      if (!v.ok()) return v.status();
      out.push_back(v->is_undefined() && !fallback.is_none() ? fallback : *std::move(v));
    }
    return Generator(std::move(out));
  }
  if (!args.positional[0].is_string())
    return absl::InvalidArgumentError("map filter name must be a string");
  const std::string& name = args.positional[0].str();
  const FilterFn filter = FindFilter(name);
  if (filter == nullptr)
    return absl::InvalidArgumentError(absl::StrCat("No filter named '", AsAbsl(name), "'."));
  Args rest{List(args.positional.begin() + 1, args.positional.end()), args.keyword};
  for (const Value& item : **items) {
    absl::StatusOr<Value> v = filter(ctx, item, rest);
    if (!v.ok()) return v.status();
    out.push_back(*std::move(v));
  }
  return Generator(std::move(out));
}

// select / reject / selectattr / rejectattr.
absl::StatusOr<Value> SelectOrReject(CallContext& ctx, const Value& in, const Args& args,
                                     bool select, bool by_attribute) {
  List out;
  if (!Truthy(in)) return Generator(std::move(out));
  size_t next = 0;
  Value attribute;
  if (by_attribute) {
    if (args.positional.empty())
      return absl::InvalidArgumentError("Missing parameter for attribute name");
    attribute = args.positional[next++];
  }
  TestFn test = nullptr;
  if (next < args.positional.size()) {
    if (!args.positional[next].is_string())
      return absl::InvalidArgumentError("test name must be a string");
    const std::string& name = args.positional[next++].str();
    test = FindTest(name);
    if (test == nullptr)
      return absl::InvalidArgumentError(absl::StrCat("No test named '", AsAbsl(name), "'."));
  }
  Args rest{List(args.positional.begin() + static_cast<ptrdiff_t>(next), args.positional.end()),
            args.keyword};
  absl::StatusOr<std::shared_ptr<const List>> items = ItemsOf(in);
  if (!items.ok()) return items.status();
  for (const Value& item : **items) {
    Value subject = item;
    if (by_attribute) {
      absl::StatusOr<Value> v = GetAttributePath(item, attribute);
      if (!v.ok()) return v.status();
      subject = *std::move(v);
    }
    bool pass;
    if (test != nullptr) {
      absl::StatusOr<bool> r = test(ctx, subject, rest);
      if (!r.ok()) return r.status();
      pass = *r;
    } else {
      pass = Truthy(subject);
    }
    if (pass == select) out.push_back(item);
  }
  return Generator(std::move(out));
}

absl::StatusOr<Value> FilterSelect(CallContext& ctx, const Value& in, const Args& args) {
  return SelectOrReject(ctx, in, args, true, false);
}
absl::StatusOr<Value> FilterReject(CallContext& ctx, const Value& in, const Args& args) {
  return SelectOrReject(ctx, in, args, false, false);
}
absl::StatusOr<Value> FilterSelectattr(CallContext& ctx, const Value& in, const Args& args) {
  return SelectOrReject(ctx, in, args, true, true);
}
absl::StatusOr<Value> FilterRejectattr(CallContext& ctx, const Value& in, const Args& args) {
  return SelectOrReject(ctx, in, args, false, true);
}

}  // namespace

void AddSequenceFilters(FilterTable* table) {
  table->insert({
      {"attr", FilterAttr},
      {"batch", FilterBatch},
      {"count", FilterLength},
      {"d", FilterDefault},
      {"default", FilterDefault},
      {"dictsort", FilterDictsort},
      {"first", FilterFirst},
      {"items", FilterItems},
      {"join", FilterJoin},
      {"last", FilterLast},
      {"length", FilterLength},
      {"list", FilterList},
      {"map", FilterMap},
      {"max", FilterMax},
      {"min", FilterMin},
      {"reject", FilterReject},
      {"rejectattr", FilterRejectattr},
      {"reverse", FilterReverse},
      {"select", FilterSelect},
      {"selectattr", FilterSelectattr},
      {"sort", FilterSort},
      {"sum", FilterSum},
      {"tojson", FilterTojson},
      {"unique", FilterUnique},
  });
}

}  // namespace mamba::tokenizer::jinja
