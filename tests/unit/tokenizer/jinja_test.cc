// The Jinja engine through its public API (jinja.h): each construct on a small template, the
// errors a template author reads (line, column, what was expected), raise_exception's exact
// message, and the bounds that keep a hostile template from hanging or exhausting memory.
// Byte-for-byte agreement with jinja2 on many more snippets is chat_template_fixtures_test.cc's.
#include "engine/tokenizer/jinja.h"

#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mamba {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using tokenizer::jinja::IsRaisedByTemplate;
using tokenizer::jinja::RenderOptions;
using tokenizer::jinja::Template;
using Json = nlohmann::ordered_json;

absl::StatusOr<std::string> Render(const std::string& source, const Json& context = Json::object(),
                                   const RenderOptions& options = {}) {
  absl::StatusOr<Template> t = Template::Parse(source);
  if (!t.ok()) return t.status();
  return t->Render(context, options);
}

struct RenderCase {
  const char* name;
  const char* source;
  const char* context;  // JSON
  const char* want;
};

TEST(JinjaTest, Constructs) {
  const RenderCase cases[] = {
      {"text", "plain text", "{}", "plain text"},
      {"trailing newline dropped", "a\n", "{}", "a"},
      {"variable", "{{ name }}!", R"({"name": "Ada"})", "Ada!"},
      {"undefined prints empty", "[{{ missing }}]", "{}", "[]"},
      {"comment", "a{# note #}b", "{}", "ab"},
      {"trim_blocks", "{% if true %}\nx\n{% endif %}\ny", "{}", "x\ny"},
      {"lstrip_blocks", "  {% if true %}\n  x\n  {% endif %}", "{}", "  x\n"},
      {"dash strips", "a \n {{- 'b' -}} \n c", "{}", "abc"},
      {"plus keeps", "a\n  {%+ if true %}b{% endif %}", "{}", "a\n  b"},
      {"raw", "{% raw %}{{ x }}{% endraw %}", "{}", "{{ x }}"},
      {"if elif else", "{% if n > 1 %}big{% elif n == 1 %}one{% else %}none{% endif %}",
       R"({"n": 1})", "one"},
      {"for with loop",
       "{% for x in xs %}{{ loop.index }}{{ x }}{% if not loop.last %},{% endif %}{% endfor %}",
       R"({"xs": ["a", "b"]})", "1a,2b"},
      {"for else", "{% for x in [] %}x{% else %}empty{% endfor %}", "{}", "empty"},
      {"for filter", "{% for x in range(6) if x is even %}{{ x }}/{{ loop.length }} {% endfor %}",
       "{}", "0/3 2/3 4/3 "},
      {"for unpack items", "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}",
       R"({"d": {"b": 1, "a": 2}})", "b=1;a=2;"},
      {"break continue",
       "{% for x in range(9) %}{% if x == 1 %}{% continue %}{% endif %}{% if x == 4 %}{% break "
       "%}{% endif %}{{ x }}{% endfor %}",
       "{}", "023"},
      {"set and scope", "{% set x = 1 %}{% for i in [1] %}{% set x = 2 %}{% endfor %}{{ x }}", "{}",
       "1"},
      {"namespace",
       "{% set ns = namespace(n=0) %}{% for i in range(4) %}{% set ns.n = ns.n + i %}{% endfor "
       "%}{{ ns.n }}",
       "{}", "6"},
      {"set block", "{% set x %}a{{ 1 }}b{% endset %}{{ x | upper }}", "{}", "A1B"},
      {"macro defaults",
       "{% macro m(a, b='B') %}{{ a }}{{ b }}{% endmacro %}{{ m('a') }}{{ m('a', b='c') }}", "{}",
       "aBac"},
      {"call block", "{% macro m() %}<{{ caller() }}>{% endmacro %}{% call m() %}in{% endcall %}",
       "{}", "<in>"},
      {"filters",
       "{{ '  Hi  ' | trim | upper }} {{ [3, 1, 2] | sort | join(',') }} {{ none | default('d') }}",
       "{}", "HI 1,2,3 None"},
      {"selectattr map",
       "{{ ms | selectattr('role', 'equalto', 'user') | map(attribute='content') | join('|') }}",
       R"({"ms": [{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}, {"role": "user", "content": "c"}]})",
       "a|c"},
      {"tojson keeps order", "{{ t | tojson }}", R"({"t": {"z": 1, "a": [true, null]}})",
       R"({"z": 1, "a": [true, null]})"},
      {"tojson indent", "{{ {'a': 1} | tojson(indent=2) }}", "{}", "{\n  \"a\": 1\n}"},
      {"tests",
       "{{ x is defined }} {{ y is defined }} {{ 3 is odd }} {{ 'a' is string }} {{ none is none "
       "}}",
       R"({"x": 0})", "True False True True True"},
      {"operators",
       "{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % -3 }} {{ 2 ** 8 }} {{ 7 / 2 }} {{ 'a' ~ 1 }}", "{}",
       "3 -4 -2 256 3.5 a1"},
      {"comparisons", "{{ 1 < 2 < 3 }} {{ 'b' in 'abc' }} {{ 3 not in [1] }} {{ 1 == 1.0 }}", "{}",
       "True True True True"},
      {"ternary", "{{ 'y' if x else 'n' }}{{ 'z' if false }}", R"({"x": true})", "y"},
      {"literals", "{{ [1, 'a', none, true, 1.5] }} {{ {'k': (1,)} }}", "{}",
       "[1, 'a', None, True, 1.5] {'k': (1,)}"},
      {"subscripts and slices",
       "{{ xs[0] }}{{ xs[-1] }}{{ xs[1:] }}{{ xs[::-1] }}{{ 'héllo'[1:3] }}",
       R"({"xs": [1, 2, 3]})", "13[2, 3][3, 2, 1]él"},
      {"attribute and item", "{{ m.role }}{{ m['role'] }}[{{ m.missing }}]",
       R"({"m": {"role": "user"}})", "useruser[]"},
      {"string methods",
       "{{ ' a,b '.strip().split(',') }} {{ 'x'.startswith('x') }} {{ 'ab'.upper() }}", "{}",
       "['a', 'b'] True AB"},
      {"dict methods",
       "{{ d.get('a') }} {{ d.get('z', 0) }} {{ d.keys() | list }} {{ d.values() | list }}",
       R"({"d": {"a": 1}})", "1 0 ['a'] [1]"},
      {"floats print like Python", "{{ 1.0 }} {{ 0.1 + 0.2 }} {{ 1e20 }} {{ 1e-5 }} {{ 2.5e15 }}",
       "{}", "1.0 0.30000000000000004 1e+20 1e-05 2500000000000000.0"},
      {"strftime_now", "{{ strftime_now('%Y') | length }}", "{}", "4"},
      {"generation tag", "a{% generation %}b{% endgeneration %}c", "{}", "abc"},
  };
  for (const RenderCase& c : cases) {
    SCOPED_TRACE(c.name);
    absl::StatusOr<std::string> got = Render(c.source, Json::parse(c.context));
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, c.want);
  }
}

struct ErrorCase {
  const char* name;
  const char* source;
  const char* want;  // the whole message
};

TEST(JinjaTest, SyntaxErrorsNameLineColumnAndWhatWasExpected) {
  const ErrorCase cases[] = {
      {"unclosed for", "{% for x in y %}\nbody",
       "line 2, column 5: expected 'endfor' or 'else' to close the 'for' of line 1, got end of "
       "template"},
      {"wrong end tag", "{% if x %}\n{% endfor %}",
       "line 2, column 4: unexpected 'endfor': expected 'elif', 'else' or 'endif' to close the "
       "'if' of line 1"},
      {"missing operand", "a\n{{ 1 + }}", "line 2, column 8: expected an expression, got '}}'"},
      {"unknown filter", "{{ x | nope }}", "line 1, column 8: no filter named 'nope'"},
      {"unknown test", "{{ x is nope }}", "line 1, column 9: no test named 'nope'"},
      {"unknown tag", "\n  {% frob %}", "line 2, column 6: unknown tag 'frob'"},
      {"unsupported tag", "{% include 'x' %}",
       "line 1, column 4: the 'include' tag is not supported in chat templates"},
      {"unterminated string", "{{ 'abc }}", "line 1, column 4: unterminated string literal"},
      {"unclosed comment", "x {# never", "line 1, column 3: missing end of comment tag '#}'"},
      {"unclosed variable", "{{ x ", "line 1, column 1: missing end of variable tag '}}'"},
      {"break outside loop", "{% break %}", "line 1, column 4: 'break' outside of a for loop"},
      {"mismatched bracket", "{{ [1, 2) }}", "line 1, column 9: unexpected ')', expected ']'"},
      {"bad character", "{{ a $ b }}", "line 1, column 6: unexpected character '$'"},
      {"recursive loop", "{% for x in y recursive %}{% endfor %}",
       "line 1, column 15: recursive loops are not supported"},
      {"missing in", "{% for x y %}{% endfor %}", "line 1, column 10: expected 'in', got 'y'"},
      {"non-default after default", "{% macro m(a=1, b) %}{% endmacro %}",
       "line 1, column 17: non-default argument follows default argument"},
      {"column counts characters", "{{ 'é' + }}",
       "line 1, column 10: expected an expression, got '}}'"},
  };
  for (const ErrorCase& c : cases) {
    SCOPED_TRACE(c.name);
    absl::StatusOr<Template> t = Template::Parse(c.source);
    ASSERT_FALSE(t.ok());
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(std::string(t.status().message()), c.want);
  }
}

TEST(JinjaTest, InvalidUtf8TemplateIsRefused) {
  absl::StatusOr<Template> t = Template::Parse("ok \xff");
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(std::string(t.status().message()), HasSubstr("not valid UTF-8"));
}

TEST(JinjaTest, RenderErrorsNameTheLine) {
  const ErrorCase cases[] = {
      {"undefined attribute", "a\n\n{{ missing.attr }}", "line 3: 'missing' is undefined"},
      {"missing key then attribute", "{{ m.a.b }}", "line 1: 'dict object' has no attribute 'a'"},
      {"type error", "{% if true %}\n{{ 1 + 'a' }}{% endif %}",
       "line 2: unsupported operand type(s) for +: 'int' and 'str'"},
      {"str plus list", "{{ 'x' + [1] }}",
       "line 1: can only concatenate str (not \"list\") to str"},
      {"not iterable", "{% for x in 3 %}{% endfor %}", "line 1: 'int' object is not iterable"},
      {"immutable list", "{{ [].append(1) }}",
       "line 1: access to attribute 'append' of 'list' object is unsafe."},
      {"division by zero", "{{ 1 / 0 }}", "line 1: division by zero"},
      {"unpack", "{% for a, b in [[1]] %}{% endfor %}",
       "line 1: not enough values to unpack (expected 2, got 1)"},
      {"not a namespace", "{% set d = {} %}{% set d.x = 1 %}",
       "line 1: cannot assign attribute 'x' on 'd': it is not a namespace"},
      {"macro arguments", "{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}",
       "line 1: macro 'm' takes not more than 1 argument(s)"},
      {"tojson of undefined", "{{ x | tojson }}",
       "line 1: Object of type Undefined is not JSON serializable"},
      {"range bound", "{{ range(100001) }}",
       "line 1: Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000)."},
      {"integer overflow", "{{ 2 ** 64 }}",
       "line 1: integer overflow (values beyond 64 bits are not supported)"},
  };
  for (const ErrorCase& c : cases) {
    SCOPED_TRACE(c.name);
    absl::StatusOr<std::string> got = Render(c.source, Json::parse(R"({"m": {}})"));
    ASSERT_FALSE(got.ok()) << *got;
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(std::string(got.status().message()), c.want);
    EXPECT_FALSE(IsRaisedByTemplate(got.status()));
  }
}

TEST(JinjaTest, RaiseExceptionGivesTheTemplatesMessageExactly) {
  const char* sources[] = {
      "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') "
      "}}",
      "text first\n{% if true %}{{ raise_exception('Conversation roles must alternate "
      "user/assistant/user/assistant/...') }}{% endif %}",
      "{% macro check() %}{{ raise_exception('Conversation roles must alternate "
      "user/assistant/user/assistant/...') }}{% endmacro %}{% for x in [1] %}{{ check() }}{% "
      "endfor %}",
  };
  for (const char* source : sources) {
    SCOPED_TRACE(source);
    absl::StatusOr<std::string> got = Render(source);
    ASSERT_FALSE(got.ok());
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(std::string(got.status().message()),
              "Conversation roles must alternate user/assistant/user/assistant/...");
    EXPECT_TRUE(IsRaisedByTemplate(got.status()));
  }
  absl::StatusOr<std::string> built =
      Render("{{ raise_exception('Bad role: ' ~ role) }}", Json::parse(R"({"role": "narrator"})"));
  EXPECT_EQ(std::string(built.status().message()), "Bad role: narrator");
}

TEST(JinjaTest, ContextMustBeAnObjectOfValidText) {
  absl::StatusOr<Template> t = Template::Parse("{{ x }}");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->Render(Json::array()).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(t->Render(Json()).ok());  // null: no variables
  Json bad = Json::object();
  bad["x"] = std::string("\xc3");
  absl::StatusOr<std::string> got = t->Render(bad);
  ASSERT_FALSE(got.ok());
  EXPECT_THAT(std::string(got.status().message()), HasSubstr("not valid UTF-8"));
  Json deep = 1;
  for (int i = 0; i < 300; ++i) deep = Json::array({deep});
  got = t->Render(Json{{"x", deep}});
  ASSERT_FALSE(got.ok());
  EXPECT_THAT(std::string(got.status().message()), HasSubstr("nested deeper than"));
}

TEST(JinjaTest, OrderedContextKeepsKeyOrderSortedContextSortsIt) {
  absl::StatusOr<Template> t =
      Template::Parse("{% for k in d %}{{ k }}{% endfor %} {{ d | tojson }}");
  ASSERT_TRUE(t.ok());
  const char* doc = R"({"d": {"b": 1, "a": 2}})";
  EXPECT_EQ(*t->Render(nlohmann::ordered_json::parse(doc)), R"(ba {"b": 1, "a": 2})");
  EXPECT_EQ(*t->Render(nlohmann::json::parse(doc)), R"(ab {"a": 2, "b": 1})");
}

TEST(JinjaTest, StrftimeNowUsesTheGivenClock) {
  RenderOptions options;
  std::tm tm{};
  tm.tm_year = 2030 - 1900;
  tm.tm_mon = 0;
  tm.tm_mday = 2;
  tm.tm_wday = 3;
  options.now = tm;
  EXPECT_EQ(*Render("{{ strftime_now('%d %b %Y %a') }}", Json::object(), options),
            "02 Jan 2030 Wed");
}

struct GuardCase {
  const char* name;
  const char* source;
  absl::StatusCode code;
  const char* message_part;
};

TEST(JinjaTest, HostileTemplatesAreStopped) {
  RenderOptions options;
  options.max_steps = 200000;
  options.max_output_bytes = 1 << 20;
  const GuardCase cases[] = {
      {"endless loops",
       "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
       absl::StatusCode::kResourceExhausted, "steps"},
      {"huge output", "{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}",
       absl::StatusCode::kResourceExhausted, "larger than the limit"},
      {"doubling string",
       "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% "
       "endfor %}",
       absl::StatusCode::kResourceExhausted, "larger than the limit"},
      {"huge repetition", "{{ 'x' * 1000000000000 }}", absl::StatusCode::kResourceExhausted,
       "larger than the limit"},
      {"huge list repetition", "{{ ([1] * 1000000000000) | length }}",
       absl::StatusCode::kResourceExhausted, "larger than the limit"},
      {"doubling list",
       "{% set ns = namespace(l=[1]) %}{% for i in range(64) %}{% set ns.l = ns.l + ns.l %}{% "
       "endfor %}",
       absl::StatusCode::kResourceExhausted, "larger than the limit"},
      {"replace blow-up",
       "{% set ns = namespace(s='aaaaaaaaaa') %}{% for i in range(20) %}{% set ns.s = "
       "ns.s.replace('a', 'aaaaaaaaaa') %}{% endfor %}",
       absl::StatusCode::kResourceExhausted, "larger than the limit"},
      {"endless recursion", "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
       absl::StatusCode::kResourceExhausted, "macro calls nested more than 100 deep"},
      {"deep list",
       "{% set ns = namespace(l=[]) %}{% for i in range(1000) %}{% set ns.l = [ns.l] %}{% endfor "
       "%}",
       absl::StatusCode::kInvalidArgument, "nested more than 256 levels deep"},
      {"too many namespaces",
       "{% for i in range(100000) %}{% set n = namespace() %}{% endfor %}{% for i in range(10) "
       "%}{% set n = namespace() %}{% endfor %}",
       absl::StatusCode::kResourceExhausted, "namespace() objects"},
      {"quadratic unique",
       "{{ range(100000) | map('string') | map('list') | unique | list | length }}",
       absl::StatusCode::kResourceExhausted, "steps"},
  };
  for (const GuardCase& c : cases) {
    SCOPED_TRACE(c.name);
    RenderOptions o = options;
    if (std::string(c.name) == "too many namespaces") o.max_steps = 10'000'000;
    absl::StatusOr<std::string> got = Render(c.source, Json::object(), o);
    ASSERT_FALSE(got.ok());
    EXPECT_EQ(got.status().code(), c.code) << got.status();
    EXPECT_THAT(std::string(got.status().message()), HasSubstr(c.message_part));
    EXPECT_THAT(std::string(got.status().message()), StartsWith("line "));
  }
}

TEST(JinjaTest, DeepEvaluationIsStopped) {
  // Each level of syntax is within bounds, but macro recursion stacks them: the renderer's own
  // nesting bound stops it before the stack runs out.
  std::string source = "{% macro g(n) %}";
  for (int i = 0; i < 150; ++i) source += "{% if true %}";
  source += "{{ g(n + 1) }}";
  for (int i = 0; i < 150; ++i) source += "{% endif %}";
  source += "{% endmacro %}{{ g(0) }}";
  absl::StatusOr<std::string> got = Render(source);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(got.status().message()), HasSubstr("nests evaluation more than"));
}

TEST(JinjaTest, DeepSyntaxIsRefusedWhenParsing) {
  const std::string parens = "{{ " + std::string(1000, '(') + "1" + std::string(1000, ')') + " }}";
  std::string ifs;
  for (int i = 0; i < 1000; ++i) ifs += "{% if true %}";
  std::string nots = "{{ ";
  for (int i = 0; i < 1000; ++i) nots += "not ";
  nots += "x }}";
  for (const std::string& source : {parens, ifs, nots, "{{ " + std::string(1000, '-') + "1 }}"}) {
    absl::StatusOr<Template> t = Template::Parse(source);
    ASSERT_FALSE(t.ok());
    EXPECT_THAT(std::string(t.status().message()), HasSubstr("nested more than 200 levels deep"));
  }
}

TEST(JinjaTest, DefaultBoundsStopAnEndlessLoopQuickly) {
  // The default 10M steps take about a second (more under sanitizers); jinja2 would run for
  // hours.
  absl::StatusOr<std::string> got = Render(
      "{% for i in range(100000) %}{% for j in range(100000) %}{{ '' }}{% endfor %}{% endfor %}");
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kResourceExhausted);
}

TEST(JinjaTest, CyclesAndLongChainsThroughNamespacesAreFreed) {
  // Under ASan (leak checking) this also shows nothing leaks; the long chain must not overflow
  // the stack when freed.
  absl::StatusOr<std::string> cycle = Render(
      "{% set ns = namespace() %}{% set ns.self = ns %}{% set ns.list = [ns, [ns]] %}"
      "{{ ns.self.self.list | length }}");
  ASSERT_TRUE(cycle.ok()) << cycle.status();
  EXPECT_EQ(*cycle, "2");
  RenderOptions options;
  options.max_steps = 5'000'000;
  absl::StatusOr<std::string> chain = Render(
      "{% set head = namespace(next=none) %}{% for i in range(90000) %}"
      "{% set head.next = namespace(next=head.next, i=i) %}{% endfor %}{{ head.next.i }}",
      Json::object(), options);
  ASSERT_TRUE(chain.ok()) << chain.status();
  EXPECT_EQ(*chain, "89999");
}

TEST(JinjaTest, LoopObjectsAndMacrosMayEscapeTheirScope) {
  absl::StatusOr<std::string> got = Render(
      "{% set ns = namespace() %}{% for x in [1, 2] %}{% set ns.loop = loop %}"
      "{% macro m() %}{{ x }}{% endmacro %}{% set ns.m = m %}{% endfor %}"
      "{{ ns.loop.index }}{{ ns.loop.nextitem is defined }}|{{ ns.m() }}");
  // jinja2 prints "2False|missing" (the macro no longer sees x); calling a macro after the loop
  // iteration that defined it ended is refused here.
  ASSERT_FALSE(got.ok());
  EXPECT_THAT(std::string(got.status().message()),
              HasSubstr("called outside the scope it was defined in"));
}

TEST(JinjaTest, ConcurrentRendersOfOneTemplate) {
  absl::StatusOr<Template> t = Template::Parse(
      "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}"
      "{{ m.role }}:{{ m.content | trim }};{% endfor %}{{ ns.n }}");
  ASSERT_TRUE(t.ok());
  Json context = Json::object();
  context["messages"] = Json::array();
  for (int i = 0; i < 50; ++i) {
    context["messages"].push_back({{"role", "user"}, {"content", " hi " + std::to_string(i)}});
  }
  const std::string want = *t->Render(context);
  const Template copy = *t;  // copies share the parsed program
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int k = 0; k < 4; ++k) {
    threads.emplace_back([&, k] {
      for (int i = 0; i < 50; ++i) {
        absl::StatusOr<std::string> got = (k % 2 ? copy : *t).Render(context);
        if (!got.ok() || *got != want) ++mismatches[k];
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_THAT(mismatches, ::testing::Each(0));
}

}  // namespace
}  // namespace mamba
