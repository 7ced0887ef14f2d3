// The Python semantics of Jinja values (jinja_value.h): float formatting, str() and repr(),
// transformers' tojson, ==, ordering, truthiness and conversion from JSON.
#include "engine/tokenizer/jinja_value.h"

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mamba {
namespace {

using ::testing::HasSubstr;
namespace jinja = tokenizer::jinja;
using jinja::List;
using jinja::ListKind;
using jinja::Value;

TEST(JinjaValueTest, FormatFloatLikePythonRepr) {
  struct Case {
    double d;
    const char* want;
  };
  const Case cases[] = {
      {1.0, "1.0"},
      {0.1, "0.1"},
      {-0.0, "-0.0"},
      {0.1 + 0.2, "0.30000000000000004"},
      {1e16, "1e+16"},
      {1e15, "1000000000000000.0"},
      {123456789.125, "123456789.125"},
      {1e-4, "0.0001"},
      {1e-5, "1e-05"},
      {1.5e-7, "1.5e-07"},
      {2.5e300, "2.5e+300"},
      {1.0 / 3, "0.3333333333333333"},
      {std::numeric_limits<double>::infinity(), "inf"},
      {-std::numeric_limits<double>::infinity(), "-inf"},
      {std::nan(""), "nan"},
  };
  for (const Case& c : cases) EXPECT_EQ(jinja::FormatFloat(c.d), c.want) << c.want;
}

std::string Str(const Value& v) { return *jinja::ToStr(v, 1 << 20); }
std::string Repr(const Value& v) {
  std::string out;
  EXPECT_TRUE(jinja::AppendRepr(v, 1 << 20, &out).ok());
  return out;
}

TEST(JinjaValueTest, StrAndRepr) {
  const Value list = Value::MakeList({Value::Int(1), Value::String("it's"), Value::None(),
                                      Value::Bool(true), Value::Float(2.0), Value()});
  EXPECT_EQ(Str(list), "[1, \"it's\", None, True, 2.0, Undefined]");
  EXPECT_EQ(Str(Value()), "");
  EXPECT_EQ(Str(Value::None()), "None");
  EXPECT_EQ(Str(Value::String("x")), "x");
  EXPECT_EQ(Repr(Value::String("x")), "'x'");
  EXPECT_EQ(Str(Value::MakeList({Value::Int(1)}, ListKind::kTuple)), "(1,)");
  EXPECT_EQ(Str(Value::MakeList({}, ListKind::kTuple)), "()");
  jinja::Dict dict;
  dict.Set("b", Value::Int(1));
  dict.Set("a", Value::MakeList({}));
  dict.Set("b", Value::Int(2));  // replaced in place, order kept
  EXPECT_EQ(Str(Value::MakeDict(dict)), "{'b': 2, 'a': []}");
}

TEST(JinjaValueTest, ReprStopsAtTheLimit) {
  std::string out;
  const Value big = Value::MakeList(List(1000, Value::String("abcdef")));
  absl::Status s = jinja::AppendRepr(big, 100, &out);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
}

std::string ToJson(const Value& v, jinja::JsonFormat f = {}) {
  std::string out;
  absl::Status s = jinja::AppendJson(v, f, 1 << 20, &out);
  return s.ok() ? out : std::string(s.message());
}

TEST(JinjaValueTest, JsonLikeJsonDumps) {
  jinja::Dict inner;
  inner.Set("z", Value::MakeList({Value::Int(1), Value::Float(0.5)}));
  inner.Set("a", Value::None());
  jinja::Dict outer;
  outer.Set("name", Value::String("é\"\\\n\x01"));
  outer.Set("args", Value::MakeDict(inner));
  outer.Set("empty", Value::MakeList({}));
  const Value v = Value::MakeDict(outer);
  EXPECT_EQ(ToJson(v),
            R"({"name": "é\"\\\n\u0001", "args": {"z": [1, 0.5], "a": null}, "empty": []})");
  jinja::JsonFormat indented;
  indented.indent = "  ";
  indented.item_separator = ",";
  EXPECT_EQ(ToJson(v, indented),
            "{\n  \"name\": \"é\\\"\\\\\\n\\u0001\",\n  \"args\": {\n    \"z\": [\n      1,\n"
            "      0.5\n    ],\n    \"a\": null\n  },\n  \"empty\": []\n}");
  jinja::JsonFormat sorted;
  sorted.sort_keys = true;
  sorted.ensure_ascii = true;
  sorted.item_separator = ",";
  sorted.key_separator = ":";
  EXPECT_EQ(ToJson(v, sorted),
            R"({"args":{"a":null,"z":[1,0.5]},"empty":[],"name":"\u00e9\"\\\n\u0001"})");
  EXPECT_EQ(ToJson(Value::String("😀")), "\"😀\"");
  jinja::JsonFormat ascii;
  ascii.ensure_ascii = true;
  EXPECT_EQ(ToJson(Value::String("😀"), ascii), "\"\\ud83d\\ude00\"");
  EXPECT_EQ(ToJson(Value::Float(std::nan(""))), "NaN");
  EXPECT_EQ(ToJson(Value::Float(1e20)), "1e+20");
  EXPECT_EQ(ToJson(Value()), "Object of type Undefined is not JSON serializable");
  EXPECT_EQ(ToJson(Value::MakeList({}, ListKind::kGenerator)),
            "Object of type generator is not JSON serializable");
}

TEST(JinjaValueTest, EqualityAndOrderingLikePython) {
  int64_t budget = 1000;
  EXPECT_TRUE(jinja::Equal(Value::Int(1), Value::Float(1.0), &budget));
  EXPECT_TRUE(jinja::Equal(Value::Bool(true), Value::Int(1), &budget));
  EXPECT_FALSE(jinja::Equal(Value::Int(1), Value::String("1"), &budget));
  EXPECT_TRUE(jinja::Equal(Value(), Value::Undefined("other"), &budget));
  EXPECT_FALSE(jinja::Equal(Value(), Value::None(), &budget));
  EXPECT_FALSE(jinja::Equal(Value::MakeList({Value::Int(1)}),
                            Value::MakeList({Value::Int(1)}, ListKind::kTuple), &budget));
  jinja::Dict a, b;
  a.Set("x", Value::Int(1));
  a.Set("y", Value::Int(2));
  b.Set("y", Value::Int(2));
  b.Set("x", Value::Int(1));
  EXPECT_TRUE(jinja::Equal(Value::MakeDict(a), Value::MakeDict(b), &budget));
  EXPECT_EQ(*jinja::Compare(Value::String("a"), Value::String("b"), &budget), -1);
  EXPECT_EQ(*jinja::Compare(Value::String("é"), Value::String("z"), &budget), 1);
  EXPECT_EQ(*jinja::Compare(Value::MakeList({Value::Int(1), Value::Int(2)}),
                            Value::MakeList({Value::Int(1)}), &budget),
            1);
  EXPECT_THAT(
      std::string(jinja::Compare(Value::Int(1), Value::String("a"), &budget).status().message()),
      HasSubstr("'<' not supported between instances of 'int' and 'str'"));
  EXPECT_EQ(jinja::Compare(Value::Undefined("'x' is undefined"), Value::Int(1), &budget)
                .status()
                .message(),
            "'x' is undefined");
  int64_t none = 0;
  EXPECT_FALSE(jinja::Equal(Value::Int(1), Value::Int(1), &none));  // out of budget
  EXPECT_LT(none, 0);
}

TEST(JinjaValueTest, Truthiness) {
  EXPECT_FALSE(jinja::Truthy(Value()));
  EXPECT_FALSE(jinja::Truthy(Value::None()));
  EXPECT_FALSE(jinja::Truthy(Value::Int(0)));
  EXPECT_FALSE(jinja::Truthy(Value::Float(0.0)));
  EXPECT_FALSE(jinja::Truthy(Value::String("")));
  EXPECT_FALSE(jinja::Truthy(Value::MakeList({})));
  EXPECT_FALSE(jinja::Truthy(Value::MakeDict({})));
  EXPECT_TRUE(jinja::Truthy(Value::MakeList({}, ListKind::kGenerator)));
  EXPECT_TRUE(jinja::Truthy(Value::String("0")));
  EXPECT_TRUE(jinja::Truthy(Value::Float(std::nan(""))));
}

TEST(JinjaValueTest, FromJson) {
  const auto ordered = nlohmann::ordered_json::parse(
      R"({"b": [1, 2.5, "x", null, true], "a": {"big": 18446744073709551615}})");
  absl::StatusOr<Value> v = jinja::FromJson(ordered);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(Str(*v), "{'b': [1, 2.5, 'x', None, True], 'a': {'big': 1.8446744073709552e+19}}");
  EXPECT_EQ(v->depth(), 2);
  absl::StatusOr<Value> sorted = jinja::FromJson(nlohmann::json::parse(R"({"b": 1, "a": 2})"));
  EXPECT_EQ(Str(*sorted), "{'a': 2, 'b': 1}");
}

}  // namespace
}  // namespace mamba
