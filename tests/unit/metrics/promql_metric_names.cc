#include "tests/unit/metrics/promql_metric_names.h"

#include <cctype>
#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "tests/unit/metrics/subprocess.h"

namespace mamba::metrics::testing {
namespace {

bool IsIdentStart(char c) {
  return std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == ':';
}
bool IsIdentChar(char c) { return IsIdentStart(c) || std::isdigit(static_cast<unsigned char>(c)); }

const std::set<std::string>& Keywords() {
  static const auto* k = new std::set<std::string>{
      // aggregation operators (usable without parentheses right after them: sum by (x) (...))
      "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk",
      "topk", "quantile", "limitk", "limit_ratio",
      // binary operators and modifiers
      "and", "or", "unless", "atan2", "bool", "offset", "by", "without", "on", "ignoring",
      "group_left", "group_right",
      // literals
      "inf", "nan"};
  return *k;
}

// Modifiers followed by a parenthesized list of label names.
bool TakesLabelList(const std::string& word) {
  return word == "by" || word == "without" || word == "on" || word == "ignoring" ||
         word == "group_left" || word == "group_right";
}

// Returns the index just past the closing `close` matching the opener at `i`, skipping strings.
absl::StatusOr<size_t> SkipBalanced(std::string_view s, size_t i, char open, char close) {
  int depth = 0;
  for (; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '"' || c == '\'' || c == '`') {
      const char q = c;
      for (++i; i < s.size() && s[i] != q; ++i) {
        if (s[i] == '\\' && q != '`') ++i;
      }
      if (i >= s.size()) return absl::InvalidArgumentError("unterminated string");
      continue;
    }
    if (c == open) ++depth;
    if (c == close && --depth == 0) return i + 1;
  }
  return absl::InvalidArgumentError(absl::StrCat("unbalanced '", std::string(1, open), "'"));
}

size_t SkipSpace(std::string_view s, size_t i) {
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  return i;
}

}  // namespace

absl::StatusOr<std::set<std::string>> MetricNamesInPromQL(std::string_view expr) {
  std::set<std::string> names;
  size_t i = 0;
  int paren_depth = 0;
  while (i < expr.size()) {
    const char c = expr[i];
    if (std::isspace(static_cast<unsigned char>(c))) {
      ++i;
    } else if (c == '#') {  // comment to end of line
      while (i < expr.size() && expr[i] != '\n') ++i;
    } else if (c == '"' || c == '\'' || c == '`') {
      const char q = c;
      size_t j = i + 1;
      for (; j < expr.size() && expr[j] != q; ++j) {
        if (expr[j] == '\\' && q != '`') ++j;
      }
      if (j >= expr.size()) return absl::InvalidArgumentError("unterminated string in PromQL");
      i = j + 1;
    } else if (c == '{') {
      absl::StatusOr<size_t> end = SkipBalanced(expr, i, '{', '}');
      if (!end.ok()) return end.status();
      i = *end;
    } else if (c == '[') {
      absl::StatusOr<size_t> end = SkipBalanced(expr, i, '[', ']');
      if (!end.ok()) return end.status();
      i = *end;
    } else if (c == '$') {  // Grafana variable: $name or ${name...}
      ++i;
      if (i < expr.size() && expr[i] == '{') {
        absl::StatusOr<size_t> end = SkipBalanced(expr, i, '{', '}');
        if (!end.ok()) return end.status();
        i = *end;
      } else {
        while (i < expr.size() && IsIdentChar(expr[i])) ++i;
      }
    } else if (std::isdigit(static_cast<unsigned char>(c)) ||
               (c == '.' && i + 1 < expr.size() &&
                std::isdigit(static_cast<unsigned char>(expr[i + 1])))) {
      // Numbers, hex and durations (5m, 1h30m, 1e-3).
      while (i < expr.size() &&
             (IsIdentChar(expr[i]) || expr[i] == '.' ||
              ((expr[i] == '+' || expr[i] == '-') && (expr[i - 1] == 'e' || expr[i - 1] == 'E')))) {
        ++i;
      }
    } else if (IsIdentStart(c)) {
      const size_t start = i;
      while (i < expr.size() && IsIdentChar(expr[i])) ++i;
      const std::string word(expr.substr(start, i - start));
      const size_t next = SkipSpace(expr, i);
      const bool call = next < expr.size() && expr[next] == '(';
      if (TakesLabelList(word)) {
        if (call) {
          absl::StatusOr<size_t> end = SkipBalanced(expr, next, '(', ')');
          if (!end.ok()) return end.status();
          i = *end;
        }
      } else if (call || Keywords().count(absl::AsciiStrToLower(word)) != 0) {
        // a function or an operator
      } else {
        names.insert(word);
      }
    } else {
      if (c == '(') ++paren_depth;
      if (c == ')' && --paren_depth < 0) return absl::InvalidArgumentError("unbalanced ')'");
      ++i;
    }
  }
  if (paren_depth != 0) return absl::InvalidArgumentError("unbalanced '('");
  return names;
}

absl::StatusOr<std::vector<std::string>> DashboardQueries(std::string_view dashboard_json) {
  nlohmann::json doc = nlohmann::json::parse(dashboard_json, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return absl::InvalidArgumentError("dashboard is not valid JSON");
  std::vector<std::string> out;
  // Every "expr" anywhere (panel targets, including panels nested in rows).
  std::vector<const nlohmann::json*> stack = {&doc};
  while (!stack.empty()) {
    const nlohmann::json* node = stack.back();
    stack.pop_back();
    if (node->is_object()) {
      for (auto it = node->begin(); it != node->end(); ++it) {
        if (it.key() == "expr" && it.value().is_string()) out.push_back(it.value());
        stack.push_back(&it.value());
      }
    } else if (node->is_array()) {
      for (const auto& child : *node) stack.push_back(&child);
    }
  }
  // Query variables use Grafana's own functions around a PromQL selector.
  if (doc.contains("templating") && doc["templating"].contains("list")) {
    for (const auto& var : doc["templating"]["list"]) {
      if (var.value("type", "") != "query") continue;
      std::string q;
      if (var.contains("query") && var["query"].is_string()) q = var["query"];
      if (var.contains("query") && var["query"].is_object()) q = var["query"].value("query", "");
      const std::string lv = "label_values(", qr = "query_result(";
      if (q.rfind(lv, 0) == 0 && q.back() == ')') {
        const std::string inner = q.substr(lv.size(), q.size() - lv.size() - 1);
        const size_t comma = inner.rfind(',');
        if (comma != std::string::npos) out.push_back(inner.substr(0, comma));
      } else if (q.rfind(qr, 0) == 0 && q.back() == ')') {
        out.push_back(q.substr(qr.size(), q.size() - qr.size() - 1));
      } else if (!q.empty()) {
        return absl::InvalidArgumentError(absl::StrCat("query variable ", var.value("name", "?"),
                                                       " has a query of a form "
                                                       "this check does not understand: ",
                                                       q));
      }
    }
  }
  return out;
}

absl::StatusOr<std::string> RulesAsJson(const std::string& rules_yaml_path) {
  CommandResult r =
      RunCommand({"python3", "-c",
                  "import json, sys, yaml\n"
                  "json.dump(yaml.safe_load(open(sys.argv[1], encoding='utf-8')), sys.stdout)\n",
                  rules_yaml_path});
  if (r.exit_code != 0) {
    return absl::InternalError(
        absl::StrCat("cannot read ", rules_yaml_path, " as YAML through python3: ", r.output));
  }
  return r.output;
}

absl::StatusOr<std::vector<std::string>> RuleExpressions(const std::string& rules_yaml_path) {
  absl::StatusOr<std::string> text = RulesAsJson(rules_yaml_path);
  if (!text.ok()) return text.status();
  nlohmann::json doc = nlohmann::json::parse(*text, nullptr, false);
  if (doc.is_discarded() || !doc.contains("groups")) {
    return absl::InvalidArgumentError(rules_yaml_path + " has no \"groups\"");
  }
  std::vector<std::string> out;
  for (const auto& group : doc["groups"]) {
    if (!group.contains("rules")) continue;
    for (const auto& rule : group["rules"]) {
      if (!rule.contains("expr")) {
        return absl::InvalidArgumentError(
            absl::StrCat("a rule in group ", group.value("name", "?"), " has no expr"));
      }
      // YAML may give a number for a constant expression; keep the text either way.
      out.push_back(rule["expr"].is_string() ? rule["expr"].get<std::string>()
                                             : rule["expr"].dump());
    }
  }
  return out;
}

}  // namespace mamba::metrics::testing
