// The load tester's figures on known inputs: percentiles (numpy's linear interpolation), token
// arrival accounting (ITL), a point's report, goodput, and the JSON / CSV / text renderings.
#include "client/load_stats.h"

#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mambaserve/v1/generation.pb.h"

namespace mamba::client::load {
namespace {

namespace v1 = ::mambaserve::v1;
using ::testing::HasSubstr;

TEST(LoadStatsTest, PercentileInterpolatesLinearlyLikeNumpy) {
  // Values from numpy.percentile(x, p) with its default method ("linear").
  const std::vector<double> four = {1, 2, 3, 4};
  struct Case {
    double p;
    double want;
  };
  for (const Case& c : {Case{0, 1}, Case{25, 1.75}, Case{50, 2.5}, Case{90, 3.7}, Case{99, 3.97},
                        Case{100, 4}}) {
    EXPECT_NEAR(Percentile(four, c.p), c.want, 1e-12) << "p" << c.p;
  }
  EXPECT_EQ(Percentile({7}, 0), 7);
  EXPECT_EQ(Percentile({7}, 99), 7);
  EXPECT_EQ(Percentile({}, 50), 0);
}

TEST(LoadStatsTest, SummarizeOneToHundred) {
  std::vector<double> values;
  for (int i = 100; i >= 1; --i) values.push_back(i);  // unsorted on purpose
  const Distribution d = Summarize(values);
  EXPECT_EQ(d.count, 100);
  EXPECT_DOUBLE_EQ(d.mean, 50.5);
  EXPECT_NEAR(d.p50, 50.5, 1e-9);
  EXPECT_NEAR(d.p90, 90.1, 1e-9);
  EXPECT_NEAR(d.p95, 95.05, 1e-9);
  EXPECT_NEAR(d.p99, 99.01, 1e-9);
  EXPECT_EQ(d.max, 100);
  std::vector<double> none;
  EXPECT_EQ(Summarize(none).count, 0);
  EXPECT_EQ(Summarize(none).max, 0);
}

TEST(LoadStatsTest, TokenArrivalsGiveItlSamplesSplitOverTokens) {
  RequestRecord r;
  RecordTokenArrival(&r, 0.100, 1);  // the first token: TTFT, no ITL sample
  RecordTokenArrival(&r, 0.150, 1);  // one sample of 50 ms
  RecordTokenArrival(&r, 0.160, 0);  // no tokens (e.g. the final usage message): not an arrival
  RecordTokenArrival(&r, 0.300, 3);  // 150 ms after the last token, over 3: three of 50 ms
  EXPECT_DOUBLE_EQ(r.first_token_s, 0.100);
  EXPECT_EQ(r.tokens_received, 5);
  ASSERT_EQ(r.itl_s.size(), 4u);
  for (float s : r.itl_s) EXPECT_NEAR(s, 0.050, 1e-6);

  RequestRecord batched;
  RecordTokenArrival(&batched, 0.2, 4);  // a first response with several tokens adds no samples
  EXPECT_EQ(batched.tokens_received, 4);
  EXPECT_TRUE(batched.itl_s.empty());
}

RequestRecord Ok(double send, double first, double end, int tokens, int usage_tokens, int prompt,
                 int finish = v1::FINISH_REASON_LENGTH) {
  RequestRecord r;
  r.status_code = 0;
  r.finished = true;
  r.finish_reason = finish;
  r.send_s = send;
  r.first_token_s = first;
  r.end_s = end;
  r.tokens_received = tokens;
  r.usage_generated_tokens = usage_tokens;
  r.usage_prompt_tokens = prompt;
  if (tokens > 1) r.itl_s.assign(static_cast<size_t>(tokens - 1), static_cast<float>(0.1));
  return r;
}

std::vector<RequestRecord> MixedRecords() {
  std::vector<RequestRecord> records;
  records.push_back(Ok(0.0, 0.1, 0.5, 5, 5, 10));
  RequestRecord exhausted;
  exhausted.status_code = 8;  // RESOURCE_EXHAUSTED
  exhausted.send_s = 0.2;
  exhausted.end_s = 0.21;
  records.push_back(exhausted);
  records.push_back(Ok(1.0, 1.3, 1.4, 2, 3, 6, v1::FINISH_REASON_EOS));  // usage disagrees
  RequestRecord incomplete;  // OK status but the stream never said why it ended
  incomplete.tokens_received = 1;
  records.push_back(incomplete);
  return records;
}

PhaseMeasurements TwoSeconds() {
  PhaseMeasurements m;
  m.duration_s = 2.0;
  m.last_send_s = 1.0;
  m.cpu_user_s = 0.006;
  m.cpu_system_s = 0.002;
  m.channels = 3;
  m.max_in_flight = 2;
  return m;
}

PointSetup Closed(int concurrency) {
  PointSetup s;
  s.mode = "closed";
  s.label = "concurrency=" + std::to_string(concurrency);
  s.concurrency = concurrency;
  return s;
}

TEST(LoadStatsTest, PointReportCountsAndLatencies) {
  const Slo slo = *ParseSlo("ttft_ms:200");
  const PointReport r = BuildPointReport(Closed(2), MixedRecords(), TwoSeconds(), slo);
  EXPECT_EQ(r.sent, 4);
  EXPECT_EQ(r.succeeded, 2);
  EXPECT_EQ(r.failed, 2);
  EXPECT_EQ(r.sent, r.succeeded + r.failed);
  EXPECT_EQ(r.failed_by_code,
            (std::map<std::string, int64_t>{{"INCOMPLETE", 1}, {"RESOURCE_EXHAUSTED", 1}}));
  EXPECT_EQ(r.finish_reasons, (std::map<std::string, int64_t>{{"eos", 1}, {"length", 1}}));
  EXPECT_EQ(r.prompt_tokens, 16);
  EXPECT_EQ(r.output_tokens, 7);
  EXPECT_EQ(r.tokens_received, 8);  // the incomplete stream's token too
  EXPECT_EQ(r.usage_mismatches, 1);
  EXPECT_DOUBLE_EQ(r.request_throughput, 1.0);
  EXPECT_DOUBLE_EQ(r.output_token_throughput, 3.5);
  EXPECT_DOUBLE_EQ(r.total_token_throughput, 11.5);
  EXPECT_EQ(r.ttft_ms.count, 2);
  EXPECT_NEAR(r.ttft_ms.mean, 200, 1e-9);
  EXPECT_NEAR(r.ttft_ms.max, 300, 1e-9);
  // TPOT = (e2e - ttft) / (tokens - 1): 400 ms / 4 and 100 ms / 1.
  EXPECT_EQ(r.tpot_ms.count, 2);
  EXPECT_NEAR(r.tpot_ms.mean, 100, 1e-9);
  EXPECT_NEAR(r.e2e_ms.mean, 450, 1e-9);
  EXPECT_NEAR(r.e2e_ms.p50, 450, 1e-9);
  EXPECT_EQ(r.itl_ms.count, 5);
  EXPECT_NEAR(r.itl_ms.p99, 100, 1e-4);
  EXPECT_EQ(r.good_requests, 1);  // the 300 ms TTFT misses the objective
  EXPECT_DOUBLE_EQ(r.goodput, 0.5);
  EXPECT_NEAR(r.cpu_us_per_token, 1000, 1e-6);  // 8 ms of CPU over 8 tokens
  EXPECT_EQ(r.achieved_rate, 0);                // closed loop: no arrival rate
}

// A stream that counted its tokens only from the final usage (no token-carrying event arrived:
// an SSE stream whose text was all held back) has no TTFT and no TPOT; it used to give a TPOT of
// (end - (-1)) / (tokens - 1).
TEST(LoadStatsTest, NoTpotWithoutTheFirstTokensArrival) {
  RequestRecord r;
  r.finished = true;
  r.send_s = 0.1;
  r.end_s = 0.5;
  r.tokens_received = 5;
  r.usage_generated_tokens = 5;
  const PointReport p = BuildPointReport(Closed(1), {r}, TwoSeconds(), Slo{});
  EXPECT_EQ(p.succeeded, 1);
  EXPECT_EQ(p.output_tokens, 5);
  EXPECT_EQ(p.ttft_ms.count, 0);
  EXPECT_EQ(p.tpot_ms.count, 0);
  EXPECT_EQ(p.e2e_ms.count, 1);
  // A TPOT objective is judged on the bound (end - send) / (tokens - 1) = 100 ms.
  EXPECT_TRUE(MeetsSlo(r, *ParseSlo("tpot_ms:100")));
  EXPECT_FALSE(MeetsSlo(r, *ParseSlo("tpot_ms:99")));
}

TEST(LoadStatsTest, SloParsingAndMeeting) {
  EXPECT_TRUE(ParseSlo("")->empty());
  const Slo both = *ParseSlo("ttft_ms:500,tpot_ms:50");
  EXPECT_EQ(both.ttft_ms, 500);
  EXPECT_EQ(both.tpot_ms, 50);
  EXPECT_FALSE(both.e2e_ms.has_value());
  EXPECT_EQ(both.ToString(), "ttft_ms:500,tpot_ms:50");
  EXPECT_EQ(ParseSlo("e2e_ms:1500")->e2e_ms, 1500);
  for (const char* bad : {"ttft:5", "ttft_ms", "ttft_ms:-1", "ttft_ms:0", "ttft_ms:abc",
                          "itl_ms:5", ","}) {
    absl::StatusOr<Slo> slo = ParseSlo(bad);
    ASSERT_FALSE(slo.ok()) << bad;
    EXPECT_THAT(std::string(slo.status().message()), HasSubstr("ttft_ms, tpot_ms, e2e_ms"))
        << bad;
  }
  EXPECT_THAT(std::string(ParseSlo("ttft_ms:1,ttft_ms:2").status().message()),
              HasSubstr("'ttft_ms' is given twice"));
  const RequestRecord fast = Ok(0, 0.1, 0.5, 5, 5, 1);  // ttft 100 ms, tpot 100 ms, e2e 500 ms
  EXPECT_TRUE(MeetsSlo(fast, *ParseSlo("ttft_ms:100")));
  EXPECT_FALSE(MeetsSlo(fast, *ParseSlo("ttft_ms:99")));
  EXPECT_TRUE(MeetsSlo(fast, *ParseSlo("tpot_ms:100")));
  EXPECT_FALSE(MeetsSlo(fast, *ParseSlo("ttft_ms:500,tpot_ms:50")));
  EXPECT_FALSE(MeetsSlo(fast, *ParseSlo("e2e_ms:400")));
  RequestRecord failed = fast;
  failed.status_code = 8;
  EXPECT_FALSE(MeetsSlo(failed, *ParseSlo("ttft_ms:1000")));
  const RequestRecord one_token = Ok(0, 0.1, 0.1, 1, 1, 1);  // no TPOT to judge
  EXPECT_TRUE(MeetsSlo(one_token, *ParseSlo("tpot_ms:1")));
}

TEST(LoadStatsTest, SessionsSplitColdAndWarmAndSumResumedTokens) {
  std::vector<RequestRecord> records;
  for (int session = 0; session < 2; ++session) {
    for (int turn = 0; turn < 3; ++turn) {
      RequestRecord r = Ok(turn, turn + (turn == 0 ? 0.4 : 0.1), turn + 0.6, 4, 4, 8);
      r.turn = turn;
      r.usage_cached_tokens = turn * 12;
      records.push_back(r);
    }
  }
  PointSetup s;
  s.mode = "sessions";
  s.label = "sessions=2";
  s.sessions = 2;
  s.turns = 3;
  const PointReport r = BuildPointReport(s, records, TwoSeconds(), Slo{});
  EXPECT_EQ(r.cold_ttft_ms.count, 2);
  EXPECT_NEAR(r.cold_ttft_ms.mean, 400, 1e-6);
  EXPECT_EQ(r.warm_ttft_ms.count, 4);
  EXPECT_NEAR(r.warm_ttft_ms.mean, 100, 1e-6);
  EXPECT_EQ(r.resumed_tokens, 2 * (12 + 24));
  EXPECT_EQ(r.good_requests, 0);  // no objectives, no goodput
  const std::string text = RenderText(r);
  EXPECT_THAT(text, HasSubstr("cold TTFT"));
  EXPECT_THAT(text, HasSubstr("warm TTFT"));
  EXPECT_THAT(text, HasSubstr("resumed tokens 72"));
  EXPECT_THAT(text, ::testing::Not(HasSubstr("Goodput")));
  const nlohmann::json j = PointJson(r);
  EXPECT_EQ(j["sessions"]["resumed_tokens"], 72);
  EXPECT_EQ(j["sessions"]["cold_ttft_ms"]["count"], 2);
  EXPECT_EQ(j["sessions"]["warm_ttft_ms"]["count"], 4);
  EXPECT_FALSE(j.contains("goodput"));
}

TEST(LoadStatsTest, OpenLoopReportsAchievedNextToTarget) {
  PointSetup s;
  s.mode = "open";
  s.label = "rate=5";
  s.rate = 5;
  s.burstiness = 1;
  const PointReport r = BuildPointReport(s, MixedRecords(), TwoSeconds(), Slo{});
  EXPECT_DOUBLE_EQ(r.achieved_rate, 4.0);  // 4 sent, the last at 1 s
  EXPECT_THAT(RenderText(r), HasSubstr("target 5.00 req/s, achieved 4.00 req/s"));
  const nlohmann::json j = PointJson(r);
  EXPECT_EQ(j["arrival_rate"]["target"], 5.0);
  EXPECT_EQ(j["arrival_rate"]["achieved"], 4.0);
  EXPECT_THAT(RenderSweepRow(r), HasSubstr("4.00"));
}

TEST(LoadStatsTest, JsonHasEveryFigureAndTheConfiguration) {
  const PointReport r =
      BuildPointReport(Closed(2), MixedRecords(), TwoSeconds(), *ParseSlo("ttft_ms:200"));
  const nlohmann::json report =
      ReportJson({{"concurrency", 2}}, {{"model", "synthetic:tiny"}}, {r, r});
  EXPECT_EQ(report["config"]["concurrency"], 2);
  EXPECT_EQ(report["server"]["model"], "synthetic:tiny");
  ASSERT_EQ(report["points"].size(), 2u);
  const nlohmann::json& p = report["points"][0];
  EXPECT_EQ(p["setup"]["mode"], "closed");
  EXPECT_EQ(p["setup"]["concurrency"], 2);
  EXPECT_EQ(p["requests"]["sent"], 4);
  EXPECT_EQ(p["requests"]["succeeded"], 2);
  EXPECT_EQ(p["requests"]["failed"], 2);
  EXPECT_EQ(p["requests"]["failed_by_code"]["RESOURCE_EXHAUSTED"], 1);
  for (const char* key : {"duration_s", "request_throughput", "output_token_throughput",
                          "total_token_throughput"}) {
    EXPECT_TRUE(p[key].is_number()) << key;
  }
  for (const char* metric : {"ttft_ms", "itl_ms", "tpot_ms", "e2e_ms"}) {
    for (const char* stat : {"count", "mean", "p50", "p90", "p95", "p99", "max"}) {
      EXPECT_TRUE(p[metric][stat].is_number()) << metric << "." << stat;
    }
  }
  EXPECT_EQ(p["goodput"]["good_requests"], 1);
  EXPECT_EQ(p["goodput"]["slo"], "ttft_ms:200");
  EXPECT_EQ(p["tokens"]["usage_mismatches"], 1);
  EXPECT_NEAR(p["client"]["cpu_us_per_token"].get<double>(), 1000, 1e-6);
  EXPECT_EQ(p["client"]["channels"], 3);
}

TEST(LoadStatsTest, CsvRowsMatchTheHeader) {
  const std::string header = CsvHeader();
  ASSERT_EQ(header.back(), '\n');
  const std::vector<std::string> columns =
      absl::StrSplit(header.substr(0, header.size() - 1), ',');
  EXPECT_EQ(columns.front(), "label");
  EXPECT_THAT(columns, ::testing::Contains("ttft_ms_p99"));
  EXPECT_THAT(columns, ::testing::Contains("cpu_us_per_token"));
  EXPECT_THAT(columns, ::testing::Contains("achieved_rate"));
  const PointReport r =
      BuildPointReport(Closed(2), MixedRecords(), TwoSeconds(), *ParseSlo("ttft_ms:200"));
  const std::string row = CsvRow(r);
  ASSERT_EQ(row.back(), '\n');
  const std::vector<std::string> fields = absl::StrSplit(row.substr(0, row.size() - 1), ',');
  ASSERT_EQ(fields.size(), columns.size());
  EXPECT_EQ(fields[0], "concurrency=2");
  for (size_t i = 0; i < columns.size(); ++i) {
    if (columns[i] == "sent") {
      EXPECT_EQ(fields[i], "4");
    } else if (columns[i] == "failed_by_code") {
      EXPECT_EQ(fields[i], "INCOMPLETE:1;RESOURCE_EXHAUSTED:1");
    } else if (columns[i] == "good_requests") {
      EXPECT_EQ(fields[i], "1");
    }
  }
  PointSetup odd = Closed(1);
  odd.label = "a,\"b\"";
  EXPECT_EQ(CsvRow(BuildPointReport(odd, {}, TwoSeconds(), Slo{})).substr(0, 10), "\"a,\"\"b\"\"\",");
}

TEST(LoadStatsTest, TextReportNamesEverything) {
  const PointReport r =
      BuildPointReport(Closed(2), MixedRecords(), TwoSeconds(), *ParseSlo("ttft_ms:200"));
  const std::string text = RenderText(r);
  EXPECT_THAT(text, HasSubstr("concurrency=2 (closed loop)"));
  EXPECT_THAT(text, HasSubstr("sent 4, succeeded 2, failed 2 (INCOMPLETE 1, RESOURCE_EXHAUSTED 1)"));
  EXPECT_THAT(text, HasSubstr("Goodput (ttft_ms:200): 1 requests"));
  EXPECT_THAT(text, HasSubstr("WARNING: 1 requests"));
  EXPECT_THAT(text, HasSubstr("1000.0 us CPU per token"));
  for (const char* row : {"TTFT", "ITL", "TPOT", "E2E"}) EXPECT_THAT(text, HasSubstr(row));
  const std::string sweep_header = RenderSweepHeader();
  const std::string sweep_row = RenderSweepRow(r);
  EXPECT_THAT(sweep_row, ::testing::StartsWith("concurrency=2"));
  EXPECT_EQ(sweep_header.back(), '\n');
  EXPECT_EQ(sweep_row.back(), '\n');
}

}  // namespace
}  // namespace mamba::client::load
