// End to end: a real mamba-serve under load from mamba-client, scraped by a real Prometheus.
//   - a scrape taken under load passes `promtool check metrics`;
//   - Prometheus (1 s scrape interval, the alert rules loaded) answers
//     histogram_quantile(0.5, rate(mamba_request_time_to_first_token_seconds_bucket[1m])) with a
//     number, and evaluates every alert rule without error;
//   - every metric the dashboard and the alert rules query appears in a real scrape;
//   - the request log has one JSON line per generation.
// Skips (saying why) until build/bin has mamba-serve and mamba-client.
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/metrics/exposition_parser.h"
#include "tests/unit/metrics/promql_metric_names.h"
#include "tests/unit/metrics/subprocess.h"

namespace mamba::metrics::testing {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;
using namespace std::chrono_literals;

const std::string kBinDir = MAMBA_BIN_DIR;
const std::string kRepo = std::string(MAMBA_TEST_DATA_DIR) + "/../..";

struct HostPort {
  std::string host;
  int port = 0;
};

// "127.0.0.1:8080" or "[::1]:8080"; a wildcard host is reached through loopback.
absl::StatusOr<HostPort> ParseHostPort(const std::string& text) {
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos) return absl::InvalidArgumentError("no port in " + text);
  HostPort hp;
  hp.host = text.substr(0, colon);
  if (hp.host.size() >= 2 && hp.host.front() == '[')
    hp.host = hp.host.substr(1, hp.host.size() - 2);
  hp.port = std::atoi(text.substr(colon + 1).c_str());
  if (hp.host == "0.0.0.0" || hp.host.empty()) hp.host = "127.0.0.1";
  if (hp.host == "::") hp.host = "::1";
  if (hp.port <= 0) return absl::InvalidArgumentError("bad port in " + text);
  return hp;
}

std::string Tail(const std::string& path, size_t bytes = 4000) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) return "(no " + path + ")";
  return text->size() > bytes ? text->substr(text->size() - bytes) : *text;
}

class MetricsLiveTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* bin : {"mamba-serve", "mamba-client"}) {
      if (!FindInPath(kBinDir + "/" + bin)) {
        GTEST_SKIP() << kBinDir << "/" << bin
                     << " is not built yet; this test runs once the server and client exist";
      }
    }
    for (const char* tool : {"promtool", "prometheus"}) {
      ASSERT_TRUE(FindInPath(tool)) << tool << " is not in PATH; scripts/setup.sh installs it";
    }
    ASSERT_FALSE(dir_.path().empty());
    server_log_ = dir_.path() + "/mamba-serve.stderr";
    absl::StatusOr<ChildProcess> server = ChildProcess::Start(
        {kBinDir + "/mamba-serve", "--model=synthetic:tiny", "--backend=cpu", "--host=127.0.0.1",
         "--port=0", "--metrics_port=0", "--http_port=0", "--log_level=info"},
        server_log_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_.emplace(*std::move(server));
    absl::StatusOr<std::string> line = server_->ReadLine(120s);
    ASSERT_TRUE(line.ok()) << line.status() << "\nserver stderr:\n" << Tail(server_log_);
    // mamba-serve listening grpc=HOST:PORT metrics=HOST:PORT
    std::string grpc, metrics;
    for (absl::string_view word : absl::StrSplit(*line, ' ')) {
      if (absl::ConsumePrefix(&word, "grpc=")) grpc = std::string(word);
      if (absl::ConsumePrefix(&word, "metrics=")) metrics = std::string(word);
    }
    ASSERT_THAT(*line, HasSubstr("mamba-serve listening"));
    absl::StatusOr<HostPort> g = ParseHostPort(grpc);
    absl::StatusOr<HostPort> m = ParseHostPort(metrics);
    ASSERT_TRUE(g.ok() && m.ok()) << "unexpected line: " << *line;
    grpc_addr_ = absl::StrCat(g->host, ":", g->port);
    metrics_ = *m;
  }

  void TearDown() override {
    if (prometheus_) prometheus_->Stop();
    if (server_) server_->Stop(std::chrono::seconds(30));
  }

  absl::StatusOr<std::string> Scrape() {
    httplib::Client client(metrics_.host, metrics_.port);
    client.set_read_timeout(10);
    auto res = client.Get("/metrics");
    if (!res) return absl::UnavailableError("scrape failed: " + httplib::to_string(res.error()));
    if (res->status != 200) return absl::UnavailableError(absl::StrCat("scrape: ", res->status));
    return res->body;
  }

  // Starts Prometheus scraping the server every second, with the alert rules loaded.
  void StartPrometheus() {
    absl::StatusOr<int> port = PickFreeLoopbackPort();
    ASSERT_TRUE(port.ok());
    prometheus_port_ = *port;
    const std::string config = dir_.path() + "/prometheus.yml";
    {
      std::ofstream out(config);
      out << "global:\n"
          << "  scrape_interval: 1s\n"
          << "  evaluation_interval: 1s\n"
          << "rule_files:\n"
          << "  - " << kRepo << "/deploy/prometheus/rules.yml\n"
          << "scrape_configs:\n"
          << "  - job_name: mamba-serve\n"
          << "    static_configs:\n"
          << "      - targets: [\"" << metrics_.host << ":" << metrics_.port << "\"]\n";
    }
    prometheus_log_ = dir_.path() + "/prometheus.stderr";
    absl::StatusOr<ChildProcess> p = ChildProcess::Start(
        {"prometheus", "--config.file=" + config, "--storage.tsdb.path=" + dir_.path() + "/tsdb",
         absl::StrCat("--web.listen-address=127.0.0.1:", prometheus_port_), "--log.level=warn"},
        prometheus_log_);
    ASSERT_TRUE(p.ok()) << p.status();
    prometheus_.emplace(*std::move(p));
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (true) {
      httplib::Client client("127.0.0.1", prometheus_port_);
      auto res = client.Get("/-/ready");
      if (res && res->status == 200) break;
      ASSERT_FALSE(prometheus_->Exited()) << "prometheus exited:\n" << Tail(prometheus_log_);
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "prometheus not ready in 60 s:\n"
                                                            << Tail(prometheus_log_);
      std::this_thread::sleep_for(200ms);
    }
  }

  // The result vector of an instant query.
  absl::StatusOr<Json> Query(const std::string& promql) {
    httplib::Client client("127.0.0.1", prometheus_port_);
    client.set_read_timeout(10);
    auto res = client.Get("/api/v1/query", httplib::Params{{"query", promql}}, httplib::Headers{});
    if (!res) return absl::UnavailableError("query failed: " + httplib::to_string(res.error()));
    Json j = Json::parse(res->body, nullptr, false);
    if (j.is_discarded() || j.value("status", "") != "success") {
      return absl::InternalError(
          absl::StrCat("query ", promql, " -> ", res->status, " ", res->body));
    }
    return j["data"]["result"];
  }

  // Waits until `promql` returns a vector whose first value is a finite number.
  absl::StatusOr<double> WaitForNumber(const std::string& promql, std::chrono::seconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::string last = "no answer";
    while (std::chrono::steady_clock::now() < deadline) {
      absl::StatusOr<Json> r = Query(promql);
      if (r.ok() && r->is_array() && !r->empty()) {
        const double v = std::stod((*r)[0]["value"][1].get<std::string>());
        if (std::isfinite(v)) return v;
        last = r->dump();
      } else if (r.ok()) {
        last = r->dump();
      } else {
        last = r.status().ToString();
      }
      std::this_thread::sleep_for(500ms);
    }
    return absl::DeadlineExceededError(absl::StrCat(promql, ": ", last));
  }

  // One generation through mamba-client; true when it exited 0.
  bool Generate(int i, int max_tokens) {
    CommandResult r = RunCommand({kBinDir + "/mamba-client", "generate", "--addr=" + grpc_addr_,
                                  absl::StrCat("--prompt=request ", i, " says hello"),
                                  absl::StrCat("--max_tokens=", max_tokens)},
                                 "", true);
    return r.exit_code == 0;
  }

  TempDir dir_;
  std::string server_log_, prometheus_log_;
  std::optional<ChildProcess> server_;
  std::optional<ChildProcess> prometheus_;
  std::string grpc_addr_;
  HostPort metrics_;
  int prometheus_port_ = 0;
};

TEST_F(MetricsLiveTest, PrometheusScrapesTheServerUnderLoad) {
  StartPrometheus();
  ASSERT_FALSE(HasFatalFailure());
  ASSERT_TRUE(WaitForNumber("up{job=\"mamba-serve\"} == 1", 30s).ok())
      << "Prometheus never scraped the server:\n"
      << Tail(prometheus_log_);

  // Load: four clients in a loop for about ten seconds, plus requests the server must refuse.
  std::atomic<int> ok_runs{0}, failed_runs{0};
  std::string under_load;
  {
    std::atomic<bool> stop{false};
    std::vector<std::thread> clients;
    for (int t = 0; t < 4; ++t) {
      clients.emplace_back([&, t] {
        for (int i = 0; !stop.load(); ++i) {
          (Generate(t * 1000 + i, 8 + (i % 3) * 8) ? ok_runs : failed_runs).fetch_add(1);
        }
      });
    }
    std::this_thread::sleep_for(5s);
    absl::StatusOr<std::string> scrape = Scrape();
    if (scrape.ok()) under_load = *std::move(scrape);
    EXPECT_TRUE(scrape.ok()) << scrape.status() << "; server "
                             << (server_->Exited() ? "exited" : "still running") << ", its log:\n"
                             << Tail(server_log_);
    std::this_thread::sleep_for(5s);
    stop = true;
    for (auto& c : clients) c.join();
  }
  ASSERT_FALSE(under_load.empty());
  // A scrape taken under load is valid and lint-clean.
  CommandResult lint = RunCommand({"promtool", "check", "metrics"}, under_load, true);
  EXPECT_EQ(lint.exit_code, 0) << lint.output;
  EXPECT_EQ(lint.output, "") << lint.output;
  const int invalid = 3;
  for (int i = 0; i < invalid; ++i) EXPECT_FALSE(Generate(i, 0));  // max_tokens 0 is refused
  ASSERT_GT(ok_runs.load(), 4) << "the clients could not generate; server log:\n"
                               << Tail(server_log_);
  EXPECT_EQ(failed_runs.load(), 0);

  // The PromQL of the issue returns a number.
  absl::StatusOr<double> p50 = WaitForNumber(
      "histogram_quantile(0.5, rate(mamba_request_time_to_first_token_seconds_bucket[1m]))", 30s);
  ASSERT_TRUE(p50.ok()) << p50.status() << "\n" << Tail(prometheus_log_);
  EXPECT_GT(*p50, 0);
  EXPECT_LT(*p50, 60);
  absl::StatusOr<double> tokens_per_second =
      WaitForNumber("sum(rate(mamba_generated_tokens_total[1m]))", 10s);
  ASSERT_TRUE(tokens_per_second.ok()) << tokens_per_second.status();
  EXPECT_GT(*tokens_per_second, 0);
  std::cout << "load: " << ok_runs.load() << " generations; Prometheus says TTFT p50 " << *p50
            << " s, " << *tokens_per_second << " generated tokens/s\n";

  // Every alert rule evaluates cleanly against the real series.
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  std::vector<std::string> unhealthy;
  do {
    unhealthy.clear();
    httplib::Client client("127.0.0.1", prometheus_port_);
    auto res = client.Get("/api/v1/rules");
    ASSERT_TRUE(res && res->status == 200);
    Json rules = Json::parse(res->body);
    int count = 0;
    for (const Json& group : rules["data"]["groups"]) {
      for (const Json& rule : group["rules"]) {
        ++count;
        if (rule.value("health", "") != "ok") {
          unhealthy.push_back(rule.value("name", "?") + ": " + rule.value("health", "") + " " +
                              rule.value("lastError", ""));
        }
      }
    }
    EXPECT_GE(count, 8);
    if (unhealthy.empty()) break;
    std::this_thread::sleep_for(500ms);
  } while (std::chrono::steady_clock::now() < deadline);
  EXPECT_TRUE(unhealthy.empty()) << ::testing::PrintToString(unhealthy);

  // The scrape holds what the load produced.
  absl::StatusOr<std::string> text = Scrape();
  ASSERT_TRUE(text.ok());
  absl::StatusOr<Exposition> e = ParseExposition(*text);
  ASSERT_TRUE(e.ok()) << e.status();
  const int ok = ok_runs.load();
  EXPECT_GE(*e->Value("mamba_requests_total", {{"method", "Generate"}, {"code", "OK"}}), ok);
  EXPECT_EQ(
      *e->Value("mamba_requests_total", {{"method", "Generate"}, {"code", "INVALID_ARGUMENT"}}),
      invalid);
  EXPECT_GE(*e->Value("mamba_request_time_to_first_token_seconds_count"), ok);
  EXPECT_GE(*e->Value("mamba_request_e2e_latency_seconds_count"), ok);
  EXPECT_GE(*e->Value("mamba_generated_tokens_total"), ok);
  EXPECT_GE(*e->Value("mamba_prompt_tokens_total"), ok);
  EXPECT_EQ(*e->Value("mamba_model_info", {{"backend", "cpu"}}), 1);
  EXPECT_EQ(*e->Value("mamba_requests_running"), 0);
  EXPECT_EQ(*e->Value("mamba_requests_waiting"), 0);
  EXPECT_GT(*e->Value("mamba_weights_bytes"), 0);
  EXPECT_GT(*e->Value("process_resident_memory_bytes"), 0);

  // Every metric the dashboard and the alerts query is in this real scrape.
  std::set<std::string> scraped;
  for (const Sample& s : e->samples) scraped.insert(s.name);
  absl::StatusOr<std::string> dashboard =
      ReadFileToString(kRepo + "/deploy/grafana/mamba-serve.json");
  ASSERT_TRUE(dashboard.ok());
  absl::StatusOr<std::vector<std::string>> queries = DashboardQueries(*dashboard);
  ASSERT_TRUE(queries.ok()) << queries.status();
  absl::StatusOr<std::vector<std::string>> rules =
      RuleExpressions(kRepo + "/deploy/prometheus/rules.yml");
  ASSERT_TRUE(rules.ok()) << rules.status();
  queries->insert(queries->end(), rules->begin(), rules->end());
  for (const std::string& q : *queries) {
    absl::StatusOr<std::set<std::string>> names = MetricNamesInPromQL(q);
    ASSERT_TRUE(names.ok()) << q;
    for (const std::string& n : *names) {
      if (n == "up") continue;  // Prometheus' own
      EXPECT_TRUE(scraped.count(n)) << n << " (queried by: " << q << ") is not in the scrape";
    }
  }

  // One JSON request line per generation, written by the server at info level.
  absl::StatusOr<std::string> log = ReadFileToString(server_log_);
  ASSERT_TRUE(log.ok());
  int generate_lines = 0, refused_lines = 0;
  for (absl::string_view line : absl::StrSplit(*log, '\n')) {
    if (line.empty()) continue;
    Json j = Json::parse(std::string(line), nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << "not a JSON line: " << line;
    if (j.value("msg", "") != "request" || j.value("method", "") != "Generate") continue;
    if (j.value("code", "") == "OK") {
      ++generate_lines;
      EXPECT_GT(j.value("generated_tokens", 0), 0) << line;
      EXPECT_TRUE(j["ttft_seconds"].is_number()) << line;
      EXPECT_FALSE(j.value("request_id", "").empty()) << line;
    } else if (j.value("code", "") == "INVALID_ARGUMENT") {
      ++refused_lines;
      EXPECT_FALSE(j.value("error", "").empty()) << line;
    }
  }
  EXPECT_EQ(generate_lines, ok);
  EXPECT_EQ(refused_lines, invalid);

  // Health endpoints on the same port.
  httplib::Client client(metrics_.host, metrics_.port);
  auto healthz = client.Get("/healthz");
  ASSERT_TRUE(healthz);
  EXPECT_EQ(healthz->status, 200);
  auto readyz = client.Get("/readyz");
  ASSERT_TRUE(readyz);
  EXPECT_EQ(readyz->status, 200);
}

}  // namespace
}  // namespace mamba::metrics::testing
