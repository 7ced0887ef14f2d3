// Finds which metrics the dashboard and the alert rules query, so tests can check each one is a
// metric mamba-serve exports.
#pragma once

#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace mamba::metrics::testing {

// The metric names a PromQL expression selects: identifiers that are not functions, aggregation
// operators, keywords, label names (in matchers or by/without/on/ignoring/group_* lists), numbers,
// durations, strings or Grafana variables ($x, ${x}, [$__rate_interval]). Fails on unbalanced
// brackets or an unterminated string.
absl::StatusOr<std::set<std::string>> MetricNamesInPromQL(std::string_view expr);

// The PromQL of a Grafana dashboard (JSON text): every "expr" string anywhere, plus the metric
// selector of each query variable (label_values(SELECTOR, label) or query_result(EXPR)).
absl::StatusOr<std::vector<std::string>> DashboardQueries(std::string_view dashboard_json);

// The "expr" of every rule in a Prometheus rules file (YAML, read through python3's yaml module,
// which yamllint depends on).
absl::StatusOr<std::vector<std::string>> RuleExpressions(const std::string& rules_yaml_path);

// The rules file as JSON text (same conversion as above), for structural checks.
absl::StatusOr<std::string> RulesAsJson(const std::string& rules_yaml_path);

}  // namespace mamba::metrics::testing
