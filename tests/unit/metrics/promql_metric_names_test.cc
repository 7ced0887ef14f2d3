#include "tests/unit/metrics/promql_metric_names.h"

#include <set>
#include <string>

#include "gtest/gtest.h"

namespace mamba::metrics::testing {
namespace {

TEST(PromqlMetricNamesTest, FindsMetricsAndNothingElse) {
  struct Case {
    std::string expr;
    std::set<std::string> names;
  } cases[] = {
      {"up", {"up"}},
      {"up{job=\"mamba-serve\"} == 0", {"up"}},
      {"absent(up{job=~\"mamba.*\"})", {"up"}},
      {"histogram_quantile(0.99, sum by (le) (rate(mamba_x_bucket[5m])))", {"mamba_x_bucket"}},
      {"histogram_quantile(0.5, sum(rate(a_bucket{job=~\"$job\"}[$__rate_interval])) by (le, "
       "instance))",
       {"a_bucket"}},
      {"sum without (instance) (rate(a_total[1m])) / ignoring(code) group_left sum(b_total)",
       {"a_total", "b_total"}},
      {"a / on(instance) group_left(model, dtype) b", {"a", "b"}},
      {"rate(a_sum[5m]) / rate(a_count[5m]) > bool 0.5e-3", {"a_sum", "a_count"}},
      {"a offset 1h30m and b unless c or d", {"a", "b", "c", "d"}},
      {"topk(5, a) + count_values(\"version\", b) + quantile(0.9, c)", {"a", "b", "c"}},
      {"clamp_min(a, -Inf) + 0x1F + .5 + 1e+3 + NaN", {"a"}},
      {"a{label=\"has } brace and (paren\"}", {"a"}},
      {"# comment mentioning fake_metric\nreal_metric", {"real_metric"}},
      {"ns:recorded:rate5m > 1", {"ns:recorded:rate5m"}},
      {"max_over_time(a[10m:1m]) @ start()", {"a"}},
      {"sum(a) by ($group_by)", {"a"}},
      {"a * ${scale}", {"a"}},
      {"label_replace(a, \"dst\", \"$1\", \"src\", \"(.*)\")", {"a"}},
  };
  for (const Case& c : cases) {
    absl::StatusOr<std::set<std::string>> names = MetricNamesInPromQL(c.expr);
    ASSERT_TRUE(names.ok()) << c.expr << ": " << names.status();
    EXPECT_EQ(*names, c.names) << c.expr;
  }
}

TEST(PromqlMetricNamesTest, RejectsBrokenExpressions) {
  for (const char* expr : {"rate(a[5m]", "a{job=\"x\"", "a[5m", "a{job=\"x}", "sum(a))"}) {
    EXPECT_FALSE(MetricNamesInPromQL(expr).ok()) << expr;
  }
}

TEST(PromqlMetricNamesTest, DashboardQueries) {
  const char* dashboard = R"json({
    "panels": [
      {"type": "row", "panels": [{"targets": [{"expr": "rate(a_total[5m])"}]}]},
      {"targets": [{"expr": "b"}, {"expr": "c"}]}
    ],
    "templating": {"list": [
      {"type": "datasource", "name": "datasource", "query": "prometheus"},
      {"type": "query", "name": "job", "query": {"query": "label_values(mamba_model_info, job)"}},
      {"type": "query", "name": "instance",
       "query": "label_values(up{job=~\"$job\"}, instance)"}
    ]}
  })json";
  absl::StatusOr<std::vector<std::string>> q = DashboardQueries(dashboard);
  ASSERT_TRUE(q.ok()) << q.status();
  std::multiset<std::string> got(q->begin(), q->end());
  EXPECT_EQ(got, (std::multiset<std::string>{"rate(a_total[5m])", "b", "c", "mamba_model_info",
                                             "up{job=~\"$job\"}"}));
  EXPECT_FALSE(DashboardQueries("{not json").ok());
  EXPECT_FALSE(
      DashboardQueries(R"json({"templating": {"list": [{"type": "query", "query": "x"}]}})json")
          .ok());
}

}  // namespace
}  // namespace mamba::metrics::testing
