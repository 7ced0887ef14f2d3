// mamba-client load against real mamba-serve processes: what the client counts must agree with
// what the server counted (its /metrics), overload must be counted rather than fatal, and every
// mode (closed, open, sessions, sweeps, prompt files) must run to a complete report.
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mambaserve/v1/sessions.grpc.pb.h"
#include "tests/integration/load/load_client_run.h"

namespace mamba::client::load::testing {
namespace {

using ::testing::HasSubstr;
using nlohmann::json;
namespace v1 = ::mambaserve::v1;

std::unique_ptr<ServerProcess> StartServer(std::initializer_list<std::string> more = {}) {
  auto process = ServerProcess::Start(With(kTinyServer, more));
  EXPECT_TRUE(process.ok()) << process.status();
  return process.ok() ? *std::move(process) : nullptr;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(LoadIntegrationTest, ClosedLoopCountsAgreeWithTheServer) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  const ProgramResult run = RunLoad(
      server->grpc_address(),
      {"--concurrency=4", "--requests=24", "--prompt_tokens=uniform:4:12",
       "--output_tokens=uniform:2:10", "--channels=2", "--slo=ttft_ms:60000", "--json"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.err, "");  // no progress line when stderr is not a terminal
  const json report = ReportOf(run);
  ASSERT_FALSE(report.is_discarded()) << run.out;
  ASSERT_EQ(report["points"].size(), 1u);
  const json& p = report["points"][0];
  EXPECT_EQ(p["requests"]["sent"], 24);
  EXPECT_EQ(p["requests"]["succeeded"].get<int>() + p["requests"]["failed"].get<int>(), 24);
  EXPECT_EQ(p["requests"]["failed"], 0);
  EXPECT_EQ(p["tokens"]["usage_mismatches"], 0);
  EXPECT_EQ(p["finish_reasons"]["length"], 24);  // EOS is ignored for synthetic load
  EXPECT_EQ(p["client"]["max_in_flight"], 4);
  EXPECT_EQ(p["client"]["channels"], 2);
  EXPECT_EQ(p["goodput"]["good_requests"], 24);
  const int64_t output = p["tokens"]["output"];
  EXPECT_GE(output, 24 * 2);
  EXPECT_LE(output, 24 * 10);
  EXPECT_EQ(p["e2e_ms"]["count"], 24);
  EXPECT_EQ(p["ttft_ms"]["count"], 24);
  EXPECT_GT(p["itl_ms"]["count"].get<int64_t>(), 0);
  EXPECT_LE(p["itl_ms"]["count"].get<int64_t>(), output - 24);
  EXPECT_GT(p["client"]["cpu_us_per_token"].get<double>(), 0);
  EXPECT_EQ(report["config"]["concurrency"], 4);
  EXPECT_EQ(report["server"]["backend"], "cpu");

  // The server's own counts of the same run.
  const auto metrics = ScrapeMetrics(server->metrics_address());
  ASSERT_FALSE(metrics.empty());
  EXPECT_EQ(MetricSum(metrics, "mamba_generated_tokens_total"), output);
  EXPECT_EQ(MetricSum(metrics, "mamba_prompt_tokens_total"), p["tokens"]["prompt"].get<double>());
  EXPECT_EQ(MetricSum(metrics, "mamba_requests_total", {"method=\"Generate\"", "code=\"OK\""}),
            24);
}

TEST(LoadIntegrationTest, OverloadedServerRefusalsAreCountedNotFatal) {
  auto server = StartServer({"--max_queue=1", "--max_running=1"});
  ASSERT_NE(server, nullptr);
  const std::string json_path = TempPath("overload.json");
  const ProgramResult run = RunLoad(server->grpc_address(),
                                    {"--concurrency=16", "--requests=48", "--prompt_tokens=4",
                                     "--output_tokens=16", "--json_out=" + json_path});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("RESOURCE_EXHAUSTED"));
  const json report = json::parse(ReadAll(json_path), nullptr, false);
  ASSERT_FALSE(report.is_discarded());
  const json& r = report["points"][0]["requests"];
  EXPECT_EQ(r["sent"], 48);
  EXPECT_EQ(r["succeeded"].get<int>() + r["failed"].get<int>(), 48);
  EXPECT_GT(r["succeeded"].get<int>(), 0);
  const int exhausted = r["failed_by_code"].value("RESOURCE_EXHAUSTED", 0);
  EXPECT_GT(exhausted, 0);
  EXPECT_EQ(exhausted, r["failed"].get<int>());
  const auto metrics = ScrapeMetrics(server->metrics_address());
  EXPECT_EQ(MetricSum(metrics, "mamba_requests_total",
                      {"method=\"Generate\"", "code=\"RESOURCE_EXHAUSTED\""}),
            exhausted);
  EXPECT_EQ(MetricSum(metrics, "mamba_requests_total", {"method=\"Generate\"", "code=\"OK\""}),
            r["succeeded"].get<int>());
}

TEST(LoadIntegrationTest, HttpStreamsCountsAgreeWithTheServer) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  const ProgramResult run = RunLoad(
      server->grpc_address(),
      {"--http=" + server->http_address(), "--concurrency=4", "--requests=24",
       "--prompt_tokens=uniform:4:12", "--output_tokens=uniform:2:10", "--slo=ttft_ms:60000",
       "--json"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const json report = ReportOf(run);
  ASSERT_FALSE(report.is_discarded()) << run.out;
  EXPECT_EQ(report["config"]["protocol"], "http");
  const json& p = report["points"][0];
  EXPECT_EQ(p["requests"]["sent"], 24);
  EXPECT_EQ(p["requests"]["failed"], 0) << p.dump();
  EXPECT_EQ(p["requests"]["succeeded"], 24);
  EXPECT_EQ(p["finish_reasons"]["length"], 24);
  EXPECT_EQ(p["client"]["max_in_flight"], 4);
  EXPECT_EQ(p["ttft_ms"]["count"], 24);
  const int64_t output = p["tokens"]["output"];
  EXPECT_GE(output, 24 * 2);
  EXPECT_LE(output, 24 * 10);

  // The server saw 24 HTTP completions and no gRPC Generate, and generated what the client counted.
  const auto metrics = ScrapeMetrics(server->metrics_address());
  ASSERT_FALSE(metrics.empty());
  EXPECT_EQ(MetricSum(metrics, "mamba_requests_total",
                      {"protocol=\"http\"", "method=\"completions\"", "code=\"OK\""}),
            24);
  EXPECT_EQ(MetricSum(metrics, "mamba_requests_total", {"method=\"Generate\""}), 0);
  EXPECT_EQ(MetricSum(metrics, "mamba_generated_tokens_total"), output);
  EXPECT_EQ(MetricSum(metrics, "mamba_prompt_tokens_total"), p["tokens"]["prompt"].get<double>());
}

TEST(LoadIntegrationTest, HttpRefusalsAreCountedByTheirCode) {
  auto server = StartServer({"--max_queue=1", "--max_running=1"});
  ASSERT_NE(server, nullptr);
  const ProgramResult run = RunLoad(
      server->grpc_address(), {"--http=" + server->http_address(), "--concurrency=16",
                               "--requests=48", "--prompt_tokens=4", "--output_tokens=16",
                               "--json"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const json report = ReportOf(run);
  ASSERT_FALSE(report.is_discarded()) << run.out;
  const json& r = report["points"][0]["requests"];
  EXPECT_EQ(r["sent"], 48);
  EXPECT_GT(r["succeeded"].get<int>(), 0);
  const int exhausted = r["failed_by_code"].value("RESOURCE_EXHAUSTED", 0);  // HTTP 429
  EXPECT_GT(exhausted, 0);
  EXPECT_EQ(exhausted, r["failed"].get<int>());
  const auto metrics = ScrapeMetrics(server->metrics_address());
  EXPECT_EQ(MetricSum(metrics, "mamba_requests_total",
                      {"protocol=\"http\"", "code=\"RESOURCE_EXHAUSTED\""}),
            exhausted);
}

TEST(LoadIntegrationTest, HttpSendsTheBearerTokenAndReportsARefusedOne) {
  const std::string tokens = TempPath("http-tokens");
  {
    std::ofstream out(tokens);
    out << "load-test-secret-token-0123456789 alpha\n";
  }
  auto server = StartServer({"--auth_tokens_file=" + tokens});
  ASSERT_NE(server, nullptr);
  const std::vector<std::string> load = {"--http=" + server->http_address(), "--requests=4",
                                         "--prompt_tokens=4", "--output_tokens=2", "--json"};
  std::vector<std::string> with_token = load;
  with_token.push_back("--token=load-test-secret-token-0123456789");
  const ProgramResult ok = RunLoad(server->grpc_address(), with_token);
  ASSERT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_EQ(ReportOf(ok)["points"][0]["requests"]["succeeded"], 4);

  // A wrong token: gRPC refuses the model info call before any load starts.
  std::vector<std::string> wrong = load;
  wrong.push_back("--token=not-the-token-at-all-000000000");
  const ProgramResult refused = RunLoad(server->grpc_address(), wrong);
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_THAT(refused.err, HasSubstr("UNAUTHENTICATED"));
}

TEST(LoadIntegrationTest, HttpModeRefusesWhatItCannotDrive) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  ProgramResult run = RunLoad(server->grpc_address(),
                              {"--http=" + server->http_address(), "--sessions=2", "--turns=2"});
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.err, HasSubstr("--sessions and --chat run over gRPC"));
  run = RunLoad(server->grpc_address(), {"--http=10.11.12.13:8000", "--requests=2"});
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.err, HasSubstr("--http=10.11.12.13:8000"));
  EXPECT_THAT(run.err, HasSubstr("not a loopback address"));
  run = RunLoad(server->grpc_address(), {"--http=127.0.0.1", "--requests=2"});
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.err, HasSubstr("use HOST:PORT"));
  // The metrics port is HTTP but not the OpenAI API.
  run = RunLoad(server->grpc_address(), {"--http=" + server->metrics_address(), "--requests=2"});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.err, HasSubstr("/v1/models"));
}

TEST(LoadIntegrationTest, OpenLoopReportsAchievedRateNextToTarget) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  const std::string json_path = TempPath("open.json");
  const ProgramResult run = RunLoad(
      server->grpc_address(), {"--rate=40", "--requests=40", "--prompt_tokens=4",
                               "--output_tokens=4", "--json_out=" + json_path, "--warmup=4"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("rate=40 (open loop)"));
  EXPECT_THAT(run.out, HasSubstr("target 40.00 req/s, achieved "));
  const json report = json::parse(ReadAll(json_path), nullptr, false);
  ASSERT_FALSE(report.is_discarded());
  const json& p = report["points"][0];
  EXPECT_EQ(p["requests"]["sent"], 40);  // the warmup's requests are not counted
  EXPECT_EQ(p["arrival_rate"]["target"], 40.0);
  const double achieved = p["arrival_rate"]["achieved"];
  EXPECT_GT(achieved, 20.0);
  EXPECT_LT(achieved, 60.0);
}

TEST(LoadIntegrationTest, SessionsReportColdAndWarmTurnsAndResumedTokens) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  const ProgramResult run =
      RunLoad(server->grpc_address(), {"--sessions=3", "--turns=3", "--think_time_ms=5",
                                       "--prompt_tokens=8", "--output_tokens=4", "--json"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const json report = ReportOf(run);
  ASSERT_FALSE(report.is_discarded()) << run.out;
  const json& p = report["points"][0];
  EXPECT_EQ(p["requests"]["sent"], 9);
  EXPECT_EQ(p["requests"]["succeeded"], 9);
  const json& s = p["sessions"];
  EXPECT_EQ(s["created"], 3);
  EXPECT_EQ(s["closed"], 3);
  EXPECT_EQ(s["ids_chosen_by_server"], 0);  // the server adopted the client's ids
  EXPECT_EQ(s["cold_ttft_ms"]["count"], 3);
  EXPECT_EQ(s["warm_ttft_ms"]["count"], 6);
  // Each turn leaves 8 input + 4 generated tokens in the state: turn 2 resumes 12, turn 3 24.
  EXPECT_EQ(s["resumed_tokens"], 3 * (12 + 24));
  EXPECT_EQ(p["tokens"]["prompt"], 9 * 8);  // only new tokens are processed
  const auto metrics = ScrapeMetrics(server->metrics_address());
  EXPECT_EQ(MetricSum(metrics, "mamba_session_resumed_tokens_total"), 3 * (12 + 24));

  // The sessions were closed at the end.
  auto channel = ::mamba::server::testing::Connect(server->grpc_address());
  auto sessions = v1::Sessions::NewStub(channel);
  grpc::ClientContext context;
  v1::ListSessionsResponse list;
  ASSERT_TRUE(sessions->ListSessions(&context, v1::ListSessionsRequest(), &list).ok());
  EXPECT_EQ(list.total_size(), 0);

  // The text report shows the same.
  const ProgramResult text = RunLoad(
      server->grpc_address(), {"--sessions=2", "--turns=2", "--prompt_tokens=4", "--output_tokens=2"});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_THAT(text.out, HasSubstr("cold TTFT"));
  EXPECT_THAT(text.out, HasSubstr("warm TTFT"));
  EXPECT_THAT(text.out, HasSubstr("resumed tokens 12"));
}

// Chat mode: stateless conversations resend their whole history each turn. With the prefix
// cache each warm turn prefills only its new input plus the token the previous turn generated
// last (never fed); without it, everything again. The shared system prompt's end is marked, so
// every conversation's first turn resumes there once one has passed it.
TEST(LoadIntegrationTest, ChatResendsHistoryAndTheCacheMakesTurnsCostTheirNewTokens) {
  for (bool cache : {true, false}) {
    SCOPED_TRACE(cache);
    auto server = StartServer({cache ? "--prefix_cache=true" : "--prefix_cache=false"});
    ASSERT_NE(server, nullptr);
    const ProgramResult run = RunLoad(
        server->grpc_address(), {"--chat=3", "--turns=3", "--system_prompt_tokens=40",
                                 "--prompt_tokens=8", "--output_tokens=4", "--json"});
    ASSERT_EQ(run.exit_code, 0) << run.err;
    const json report = ReportOf(run);
    ASSERT_FALSE(report.is_discarded()) << run.out;
    const json& p = report["points"][0];
    EXPECT_EQ(p["requests"]["sent"], 9);
    EXPECT_EQ(p["requests"]["succeeded"], 9);
    const json& t = p["turns"];
    EXPECT_EQ(t["warm_turns"], 6);
    if (cache) {
      EXPECT_DOUBLE_EQ(t["warm_prefill_tokens"].get<double>(), 8 + 1);
      EXPECT_DOUBLE_EQ(t["warm_hit_rate"].get<double>(), 1.0);
      const auto metrics = ScrapeMetrics(server->metrics_address());
      EXPECT_GE(MetricSum(metrics, "mamba_prefix_cache_hits_total"), 6);
    } else {
      // Turn 2 resends 40 + 8 + 4 + 8 tokens, turn 3 another 12: a mean of 66 per warm turn.
      EXPECT_DOUBLE_EQ(t["warm_prefill_tokens"].get<double>(), (60 + 72) / 2.0);
      EXPECT_DOUBLE_EQ(t["warm_hit_rate"].get<double>(), 0.0);
    }
  }
  // Chat mode needs token-id inputs and runs alone.
  const ProgramResult bad = RunLoad("127.0.0.1:1", {"--chat=2", "--prompt_text"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.err, HasSubstr("token-id inputs"));
}

TEST(LoadIntegrationTest, SweepPrintsARowPerPointAndWritesCsv) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  const std::string csv_path = TempPath("sweep.csv");
  const std::string json_path = TempPath("sweep.json");
  const ProgramResult run = RunLoad(
      server->grpc_address(),
      {"--sweep=concurrency:1,3", "--requests=6", "--prompt_tokens=4", "--output_tokens=3",
       "--csv=" + csv_path, "--json_out=" + json_path});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const std::vector<std::string> lines = absl::StrSplit(run.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 3u) << run.out;
  EXPECT_THAT(lines[0], ::testing::StartsWith("point"));
  EXPECT_THAT(lines[1], ::testing::StartsWith("concurrency=1 "));
  EXPECT_THAT(lines[2], ::testing::StartsWith("concurrency=3 "));
  const std::vector<std::string> csv = absl::StrSplit(ReadAll(csv_path), '\n', absl::SkipEmpty());
  ASSERT_EQ(csv.size(), 3u);
  // Fields may be quoted (the SLO list holds commas): count the commas outside quotes.
  const auto fields = [](const std::string& row) {
    size_t n = 1;
    bool quoted = false;
    for (char c : row) {
      if (c == '"') quoted = !quoted;
      if (c == ',' && !quoted) ++n;
    }
    return n;
  };
  EXPECT_EQ(fields(csv[1]), fields(csv[0]));
  EXPECT_EQ(fields(csv[2]), fields(csv[0]));
  EXPECT_THAT(csv[2], ::testing::StartsWith("concurrency=3,closed,3,"));
  const json report = json::parse(ReadAll(json_path), nullptr, false);
  ASSERT_EQ(report["points"].size(), 2u);
  // Never more in flight than the point's concurrency (how many overlap depends on timing).
  EXPECT_GE(report["points"][1]["client"]["max_in_flight"].get<int>(), 1);
  EXPECT_LE(report["points"][1]["client"]["max_in_flight"].get<int>(), 3);
  EXPECT_EQ(report["points"][0]["client"]["max_in_flight"], 1);
}

TEST(LoadIntegrationTest, PromptFilesAndRandomWordPrompts) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  const std::string prompts = TempPath("prompts.jsonl");
  {
    std::ofstream out(prompts);
    out << "{\"prompt\": \"The quick brown fox\", \"max_tokens\": 3}\n"
        << "{\"prompt\": \"jumps over the lazy dog\"}\n";
  }
  const ProgramResult file = RunLoad(server->grpc_address(),
                                     {"--prompts=" + prompts, "--requests=4", "--ignore_eos",
                                      "--output_tokens=5", "--json"});
  ASSERT_EQ(file.exit_code, 0) << file.err;
  const json fr = ReportOf(file);
  EXPECT_EQ(fr["points"][0]["requests"]["succeeded"], 4);
  EXPECT_EQ(fr["points"][0]["tokens"]["output"], 2 * 3 + 2 * 5);
  EXPECT_EQ(fr["config"]["prompt_source"], "file");

  const ProgramResult words = RunLoad(server->grpc_address(),
                                      {"--prompt_text", "--prompt_tokens=30", "--requests=3",
                                       "--output_tokens=2", "--json"});
  ASSERT_EQ(words.exit_code, 0) << words.err;
  const json wr = ReportOf(words);
  EXPECT_EQ(wr["points"][0]["requests"]["succeeded"], 3);
  const int64_t prompt_tokens = wr["points"][0]["tokens"]["prompt"];
  EXPECT_GT(prompt_tokens, 3 * 15);  // about 30 each, by the tokenizer's calibration
  EXPECT_LT(prompt_tokens, 3 * 60);
}

TEST(LoadIntegrationTest, DurationBoundsAnUnlimitedRun) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  const ProgramResult run =
      RunLoad(server->grpc_address(), {"--concurrency=2", "--duration=1.5", "--prompt_tokens=4",
                                       "--output_tokens=4", "--json"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const json p = ReportOf(run)["points"][0];
  EXPECT_GT(p["requests"]["sent"].get<int>(), 2);
  EXPECT_EQ(p["requests"]["failed"], 0);
  EXPECT_GE(p["duration_s"].get<double>(), 1.4);
  EXPECT_LT(p["duration_s"].get<double>(), 30.0);
}

TEST(LoadIntegrationTest, BadUsageIsRefusedWithAClearMessage) {
  struct Case {
    std::string addr;
    std::vector<std::string> args;
    std::string want;
  };
  const std::vector<Case> cases = {
      {"127.0.0.1:1", {"--concurrency=2"}, "--requests=N and/or --duration"},
      {"10.255.0.1:50051", {"--requests=1"}, "not a loopback address"},
      {"127.0.0.1:1", {"--requests=1", "--prompt_tokens=uniform:9:3"}, "--prompt_tokens="},
      {"127.0.0.1:1", {"--requests=1", "--rate=2", "--sessions=2"}, "do not mix"},
      {"127.0.0.1:1", {"--requests=1", "--slo=ttft:3"}, "--slo"},
      {"127.0.0.1:1", {"--requests=1", "--output_tokens=4", "--max_tokens=3"}, "not both"},
      {"127.0.0.1:1", {"--requests=1", "--sweep=concurrency:2", "--concurrency=3"}, "not both"},
      {"127.0.0.1:1", {"--requests=1", "--prompts=/nonexistent.jsonl"}, "cannot open"},
  };
  for (const Case& c : cases) {
    const ProgramResult run = RunLoad(c.addr, c.args, absl::Seconds(30));
    EXPECT_EQ(run.exit_code, 2) << c.want << ": " << run.err;
    EXPECT_THAT(run.err, HasSubstr(c.want));
  }
  // Nothing listens there: the connection failure is reported, not a crash.
  const ProgramResult down = RunLoad("127.0.0.1:1", {"--requests=1"}, absl::Seconds(60));
  EXPECT_EQ(down.exit_code, 1);
  EXPECT_THAT(down.err, HasSubstr("UNAVAILABLE"));
}

}  // namespace
}  // namespace mamba::client::load::testing
