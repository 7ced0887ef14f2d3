// Checks deploy/grafana/mamba-serve.json, deploy/prometheus/rules.yml and
// deploy/prometheus/prometheus.yml against the metrics the server defines, with Prometheus' own
// tools: promtool check metrics / rules / config, promtool test rules, yamllint.
#include <algorithm>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/metrics/process_metrics.h"
#include "server/metrics/registry.h"
#include "server/metrics/serving_metrics.h"
#include "tests/unit/metrics/promql_metric_names.h"
#include "tests/unit/metrics/subprocess.h"

namespace mamba::metrics {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;
using testing::RunCommand;

const std::string kRepo = std::string(MAMBA_TEST_DATA_DIR) + "/../..";
const std::string kDashboard = kRepo + "/deploy/grafana/mamba-serve.json";
const std::string kRules = kRepo + "/deploy/prometheus/rules.yml";
const std::string kScrapeConfig = kRepo + "/deploy/prometheus/prometheus.yml";
const std::string kRulesTests = kRepo + "/tests/unit/metrics/alert_rules_test.yml";

// promtool and yamllint come from scripts/setup.sh (Debian's prometheus and yamllint packages).
void RequireTool(const char* tool) {
  ASSERT_TRUE(testing::FindInPath(tool).has_value())
      << tool << " is not in PATH; scripts/setup.sh installs it (packages prometheus, yamllint)";
}

// A registry holding everything mamba-serve exports, with every series populated.
struct FullRegistry {
  Registry registry;
  std::unique_ptr<ServingMetrics> serving;

  FullRegistry() {
    EXPECT_TRUE(RegisterProcessMetrics(&registry).ok());
    auto m = ServingMetrics::Create(&registry);
    EXPECT_TRUE(m.ok()) << m.status();
    serving = *std::move(m);
    ModelInfo info;
    info.name = "synthetic:tiny";
    info.weight_dtype = "f32";
    info.backend = "cpu";
    info.weight_bytes = 1 << 20;
    info.num_slots = 8;
    EXPECT_TRUE(serving->SetModelInfo(info).ok());
    serving->SetStatsSource([] {
      EngineStats s;
      s.requests_running = 2;
      s.requests_waiting = 1;
      s.sessions_device = 3;
      s.sessions_host = 1;
      s.slots_total = 8;
      s.slots_used = 5;
      s.state_bytes_device = 5 << 16;
      s.state_bytes_host = 1 << 16;
      return s;
    });
    serving->SetGpuMemorySource([] { return GpuMemoryInfo{3LL << 30, 80LL << 30}; });
    for (int i = 1; i <= 50; ++i) {
      serving->OnStep(EngineObserver::StepPhase::kDecode, 0.001 * i, i, 0, i);
      serving->OnStep(EngineObserver::StepPhase::kPrefill, 0.01 * i, 1, 10 * i, 0);
      serving->OnFirstToken(absl::Milliseconds(i));
      serving->OnInterTokenLatency(absl::Microseconds(100 * i));
      GenerationResult r;
      r.usage.prompt_tokens = i;
      r.usage.generated_tokens = i;
      r.timing.total = absl::Milliseconds(10 * i);
      r.timing.queue_time = absl::Microseconds(i);
      serving->OnRequestFinished(GenerationRequest{}, r);
      serving->RecordRpc("grpc", i % 2 ? "Generate" : "CreateSession",
                         i % 10 ? absl::StatusCode::kOk : absl::StatusCode::kInvalidArgument);
    }
    serving->OnSessionEviction(true);
    serving->OnResumedTokens(100);
  }

  // Every series name a query may use: histograms add _bucket, _sum and _count.
  std::set<std::string> SeriesNames() const {
    std::set<std::string> out;
    for (const auto& [name, type] : registry.Metrics()) {
      if (type == MetricType::kHistogram) {
        for (const char* suffix : {"_bucket", "_sum", "_count"}) out.insert(name + suffix);
      } else {
        out.insert(name);
      }
    }
    return out;
  }
};

TEST(DeployConfigTest, PromtoolAcceptsTheExposition) {
  RequireTool("promtool");
  FullRegistry full;
  const std::string text = full.registry.Expose();
  testing::CommandResult r = RunCommand({"promtool", "check", "metrics"}, text, true);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, "") << "promtool lint findings:\n" << r.output;
}

// The check above is only worth something if promtool does flag problems in this setup.
TEST(DeployConfigTest, PromtoolFlagsABadExposition) {
  RequireTool("promtool");
  testing::CommandResult r = RunCommand({"promtool", "check", "metrics"},
                                        "# HELP requests Requests.\n"
                                        "# TYPE requests counter\n"
                                        "requests 1\n",
                                        true);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.output, HasSubstr("_total"));
}

TEST(DeployConfigTest, PromtoolAcceptsTheRules) {
  RequireTool("promtool");
  testing::CommandResult r = RunCommand({"promtool", "check", "rules", kRules}, "", true);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("SUCCESS"));
}

TEST(DeployConfigTest, AlertsFireWhenTheyShould) {
  RequireTool("promtool");
  testing::CommandResult r = RunCommand({"promtool", "test", "rules", kRulesTests}, "", true);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("SUCCESS"));
}

TEST(DeployConfigTest, PromtoolAcceptsTheScrapeConfig) {
  RequireTool("promtool");
  testing::CommandResult r = RunCommand({"promtool", "check", "config", kScrapeConfig}, "", true);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  // It loads the rules file it names, so a broken path fails here too.
  EXPECT_THAT(r.output, HasSubstr("rules.yml"));
}

TEST(DeployConfigTest, YamlIsLintClean) {
  RequireTool("yamllint");
  testing::CommandResult r = RunCommand(
      {"yamllint", "--strict", "-c", kRepo + "/.yamllint", kRules, kScrapeConfig, kRulesTests}, "",
      true);
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST(DeployConfigTest, EveryQueriedMetricIsExported) {
  FullRegistry full;
  const std::set<std::string> exported = full.SeriesNames();
  absl::StatusOr<std::string> dashboard = testing::ReadFileToString(kDashboard);
  ASSERT_TRUE(dashboard.ok()) << dashboard.status();
  absl::StatusOr<std::vector<std::string>> panel_queries = testing::DashboardQueries(*dashboard);
  ASSERT_TRUE(panel_queries.ok()) << panel_queries.status();
  absl::StatusOr<std::vector<std::string>> rule_queries = testing::RuleExpressions(kRules);
  ASSERT_TRUE(rule_queries.ok()) << rule_queries.status();
  EXPECT_GE(panel_queries->size(), 20u);
  EXPECT_GE(rule_queries->size(), 8u);

  std::set<std::string> used;
  for (const auto* queries : {&*panel_queries, &*rule_queries}) {
    for (const std::string& q : *queries) {
      absl::StatusOr<std::set<std::string>> names = testing::MetricNamesInPromQL(q);
      ASSERT_TRUE(names.ok()) << q << ": " << names.status();
      EXPECT_FALSE(names->empty()) << "query selects no metric: " << q;
      for (const std::string& n : *names) {
        // `up` is written by Prometheus itself for every target.
        EXPECT_TRUE(exported.count(n) != 0 || n == "up") << n << " in: " << q;
        used.insert(n);
      }
    }
  }
  // And the other way: every mamba_* metric is on the dashboard or in an alert.
  for (const auto& [name, type] : full.registry.Metrics()) {
    if (name.rfind("mamba_", 0) != 0) continue;
    const bool shown = type == MetricType::kHistogram
                           ? used.count(name + "_bucket") || used.count(name + "_sum") ||
                                 used.count(name + "_count")
                           : used.count(name) != 0;
    EXPECT_TRUE(shown) << name << " is exported but no panel or alert uses it";
  }
}

// Grafana would show a parse error in the panel; promtool catches it here. Each query becomes a
// recording rule, with the dashboard's variables replaced by what Grafana substitutes.
TEST(DeployConfigTest, DashboardQueriesAreValidPromQL) {
  RequireTool("promtool");
  absl::StatusOr<std::string> dashboard = testing::ReadFileToString(kDashboard);
  ASSERT_TRUE(dashboard.ok());
  absl::StatusOr<std::vector<std::string>> queries = testing::DashboardQueries(*dashboard);
  ASSERT_TRUE(queries.ok()) << queries.status();
  std::string rules = "groups:\n  - name: dashboard\n    rules:\n";
  for (size_t i = 0; i < queries->size(); ++i) {
    std::string q = (*queries)[i];
    for (const auto& [var, value] : std::vector<std::pair<std::string, std::string>>{
             {"$__rate_interval", "1m"}, {"$job", ".*"}, {"$instance", ".*"}}) {
      for (size_t at = q.find(var); at != std::string::npos; at = q.find(var, at)) {
        q.replace(at, var.size(), value);
      }
    }
    EXPECT_EQ(q.find('$'), std::string::npos) << "unknown variable in " << q;
    // A JSON string is a valid YAML double-quoted scalar.
    rules += "      - record: dashboard:query" + std::to_string(i) +
             "\n        expr: " + Json(q).dump() + "\n";
  }
  testing::TempDir dir;
  const std::string path = dir.path() + "/dashboard_rules.yml";
  {
    std::ofstream out(path);
    out << rules;
  }
  testing::CommandResult r = RunCommand({"promtool", "check", "rules", path}, "", true);
  EXPECT_EQ(r.exit_code, 0) << r.output << "\n" << rules;
}

TEST(DeployConfigTest, DashboardIsCompleteAndWellFormed) {
  absl::StatusOr<std::string> text = testing::ReadFileToString(kDashboard);
  ASSERT_TRUE(text.ok());
  Json d = Json::parse(*text, nullptr, false);
  ASSERT_FALSE(d.is_discarded()) << "not JSON";
  EXPECT_EQ(d.value("uid", ""), "mamba-serve");
  EXPECT_FALSE(d.value("title", "").empty());
  EXPECT_GE(d.value("schemaVersion", 0), 36);

  std::set<std::string> variables;
  for (const Json& v : d["templating"]["list"]) variables.insert(v.value("name", ""));
  EXPECT_TRUE(variables.count("datasource"));
  EXPECT_TRUE(variables.count("instance"));

  std::set<int> ids;
  std::map<std::string, std::vector<std::string>> by_title;  // panel title -> its queries
  std::vector<const Json*> panels;
  for (const Json& p : d["panels"]) {
    panels.push_back(&p);
    if (p.contains("panels")) {
      for (const Json& nested : p["panels"]) panels.push_back(&nested);
    }
  }
  for (const Json* p : panels) {
    const int id = p->value("id", -1);
    EXPECT_TRUE(ids.insert(id).second) << "duplicate panel id " << id;
    ASSERT_TRUE(p->contains("gridPos")) << "panel " << id;
    const Json& g = (*p)["gridPos"];
    EXPECT_LE(g.value("x", 0) + g.value("w", 0), 24) << "panel " << id << " is wider than the grid";
    if (p->value("type", "") == "row") continue;
    const std::string title = p->value("title", "");
    EXPECT_FALSE(title.empty()) << "panel " << id;
    EXPECT_EQ((*p)["datasource"].value("uid", ""), "${datasource}") << title;
    ASSERT_TRUE(p->contains("targets")) << title;
    std::set<std::string> ref_ids;
    for (const Json& t : (*p)["targets"]) {
      EXPECT_TRUE(ref_ids.insert(t.value("refId", "")).second) << title;
      const std::string expr = t.value("expr", "");
      EXPECT_FALSE(expr.empty()) << title;
      EXPECT_THAT(expr, HasSubstr("$instance")) << title << ": queries follow the selector";
      by_title[title].push_back(expr);
    }
  }

  // The issue's list: each quantity has a panel whose queries use the metric.
  struct Need {
    const char* what;
    const char* metric;
    const char* also;  // a second fragment the panel must contain ("" for none)
  } needs[] = {
      {"TTFT p99", "mamba_request_time_to_first_token_seconds_bucket", "0.99"},
      {"TTFT p50", "mamba_request_time_to_first_token_seconds_bucket", "0.5"},
      {"TTFT p90", "mamba_request_time_to_first_token_seconds_bucket", "0.9"},
      {"inter-token p99", "mamba_request_inter_token_latency_seconds_bucket", "0.99"},
      {"e2e p99", "mamba_request_e2e_latency_seconds_bucket", "0.99"},
      {"tokens/s", "mamba_generated_tokens_total", "rate("},
      {"running", "mamba_requests_running", ""},
      {"waiting", "mamba_requests_waiting", ""},
      {"batch size", "mamba_engine_batch_size_bucket", ""},
      {"step time by phase", "mamba_engine_step_seconds_bucket", "phase"},
      {"sessions by tier", "mamba_sessions", "tier"},
      {"evictions", "mamba_session_evictions_total", "to"},
      {"state memory", "mamba_state_memory_bytes", ""},
      {"GPU memory", "mamba_gpu_memory_used_bytes", ""},
      {"error rate by code", "mamba_requests_total", "code"},
  };
  for (const Need& n : needs) {
    bool found = false;
    for (const auto& [title, exprs] : by_title) {
      std::string all;
      for (const std::string& e : exprs) all += e + "\n";
      if (all.find(n.metric) != std::string::npos && all.find(n.also) != std::string::npos) {
        found = true;
      }
    }
    EXPECT_TRUE(found) << "no panel shows " << n.what << " (" << n.metric << ")";
  }
}

TEST(DeployConfigTest, AlertsCoverTheIssueAndAreDocumented) {
  absl::StatusOr<std::string> text = testing::RulesAsJson(kRules);
  ASSERT_TRUE(text.ok()) << text.status();
  Json rules = Json::parse(*text);
  std::map<std::string, Json> alerts;
  for (const Json& group : rules["groups"]) {
    for (const Json& rule : group["rules"]) {
      if (!rule.contains("alert")) continue;
      const std::string name = rule["alert"];
      EXPECT_TRUE(alerts.emplace(name, rule).second) << "duplicate alert " << name;
      const std::string severity = rule["labels"].value("severity", "");
      EXPECT_TRUE(severity == "critical" || severity == "warning") << name;
      EXPECT_FALSE(rule["annotations"].value("summary", "").empty()) << name;
      EXPECT_FALSE(rule["annotations"].value("description", "").empty()) << name;
      EXPECT_TRUE(rule.contains("for")) << name << " would fire on a single bad evaluation";
    }
  }
  // What each of the issue's alert topics must query.
  const std::map<std::string, std::string> required = {
      {"MambaServeHighTimeToFirstToken", "mamba_request_time_to_first_token_seconds_bucket"},
      {"MambaServeHighErrorRatio", "mamba_requests_total"},
      {"MambaServeQueueSaturated", "mamba_requests_waiting"},
      {"MambaServeGpuMemoryNearLimit", "mamba_gpu_memory_used_bytes"},
      {"MambaServeSessionsDropped", "mamba_session_evictions_total"},
      {"MambaServeTargetDown", "up"},
      {"MambaServeTargetMissing", "absent("},
  };
  for (const auto& [name, fragment] : required) {
    ASSERT_TRUE(alerts.count(name)) << "missing alert " << name;
    EXPECT_THAT(alerts[name]["expr"].get<std::string>(), HasSubstr(fragment)) << name;
  }
}

}  // namespace
}  // namespace mamba::metrics
