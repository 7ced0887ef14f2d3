#include "server/metrics/serving_metrics.h"

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/metrics/process_metrics.h"
#include "tests/unit/metrics/exposition_parser.h"

namespace mamba::metrics {
namespace {

using testing::Exposition;
using ::testing::HasSubstr;
using testing::ParseExposition;
using Phase = EngineObserver::StepPhase;

class ServingMetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto m = ServingMetrics::Create(&registry_, &logger_);
    ASSERT_TRUE(m.ok()) << m.status();
    metrics_ = *std::move(m);
  }

  Exposition Scrape() {
    auto parsed = ParseExposition(registry_.Expose());
    EXPECT_TRUE(parsed.ok()) << parsed.status();
    return parsed.ok() ? *parsed : Exposition();
  }

  std::vector<std::string> log_lines_;
  Logger logger_{LogLevel::kInfo, [this](std::string_view l) { log_lines_.emplace_back(l); }};
  Registry registry_;
  std::unique_ptr<ServingMetrics> metrics_;
};

TEST_F(ServingMetricsTest, DefinesEveryMetricOfTheIssue) {
  const std::vector<std::pair<std::string, MetricType>> expected = {
      {"mamba_request_time_to_first_token_seconds", MetricType::kHistogram},
      {"mamba_request_inter_token_latency_seconds", MetricType::kHistogram},
      {"mamba_request_e2e_latency_seconds", MetricType::kHistogram},
      {"mamba_request_queue_time_seconds", MetricType::kHistogram},
      {"mamba_request_prompt_tokens", MetricType::kHistogram},
      {"mamba_request_generated_tokens", MetricType::kHistogram},
      {"mamba_engine_step_seconds", MetricType::kHistogram},
      {"mamba_engine_batch_size", MetricType::kHistogram},
      {"mamba_requests_total", MetricType::kCounter},
      {"mamba_prompt_tokens_total", MetricType::kCounter},
      {"mamba_generated_tokens_total", MetricType::kCounter},
      {"mamba_session_resumed_tokens_total", MetricType::kCounter},
      {"mamba_session_evictions_total", MetricType::kCounter},
      {"mamba_requests_running", MetricType::kGauge},
      {"mamba_requests_waiting", MetricType::kGauge},
      {"mamba_sessions", MetricType::kGauge},
      {"mamba_state_slots", MetricType::kGauge},
      {"mamba_state_slots_used", MetricType::kGauge},
      {"mamba_state_memory_bytes", MetricType::kGauge},
      {"mamba_weights_bytes", MetricType::kGauge},
      {"mamba_gpu_memory_used_bytes", MetricType::kGauge},
      {"mamba_gpu_memory_total_bytes", MetricType::kGauge},
      {"mamba_model_info", MetricType::kGauge},
      {"mamba_prefix_cache_lookups_total", MetricType::kCounter},
      {"mamba_prefix_cache_hits_total", MetricType::kCounter},
      {"mamba_prefix_cache_hit_tokens_total", MetricType::kCounter},
      {"mamba_prefix_cache_insertions_total", MetricType::kCounter},
      {"mamba_prefix_cache_evictions_total", MetricType::kCounter},
      {"mamba_prefix_cache_entries", MetricType::kGauge},
      {"mamba_prefix_cache_bytes", MetricType::kGauge},
  };
  const auto registered = registry_.Metrics();
  for (const auto& e : expected) {
    EXPECT_NE(std::find(registered.begin(), registered.end(), e), registered.end()) << e.first;
  }
  EXPECT_EQ(registered.size(), expected.size());
  // Registering twice in one registry is refused, not silently merged.
  EXPECT_EQ(ServingMetrics::Create(&registry_, &logger_).status().code(),
            absl::StatusCode::kAlreadyExists);
}

TEST_F(ServingMetricsTest, BucketsCoverEachQuantity) {
  auto first_last = [](const std::vector<double>& b) { return std::pair{b.front(), b.back()}; };
  EXPECT_EQ(first_last(ServingBuckets::TimeToFirstToken()), (std::pair{0.001, 60.0}));
  EXPECT_EQ(first_last(ServingBuckets::InterToken()), (std::pair{0.0001, 5.0}));
  EXPECT_EQ(first_last(ServingBuckets::PromptTokens()), (std::pair{1.0, 65536.0}));
  EXPECT_EQ(first_last(ServingBuckets::GeneratedTokens()), (std::pair{1.0, 16384.0}));
  EXPECT_EQ(first_last(ServingBuckets::BatchSize()), (std::pair{1.0, 1024.0}));
  for (const auto& b : {ServingBuckets::TimeToFirstToken(), ServingBuckets::InterToken(),
                        ServingBuckets::EndToEnd(), ServingBuckets::QueueTime(),
                        ServingBuckets::PromptTokens(), ServingBuckets::GeneratedTokens(),
                        ServingBuckets::StepTime(), ServingBuckets::BatchSize()}) {
    EXPECT_TRUE(ValidateBucketBounds(b).ok());
    EXPECT_LE(b.size(), 25u);  // every bucket is a series per scrape: keep them few
  }
}

TEST_F(ServingMetricsTest, ZeroSeriesExistBeforeAnyTraffic) {
  // Alerts use rate() and ratios over these; they must exist from the first scrape.
  Exposition e = Scrape();
  for (const char* phase : {"prefill", "decode", "mixed"}) {
    EXPECT_EQ(*e.Value("mamba_engine_step_seconds_count", {{"phase", phase}}), 0) << phase;
  }
  EXPECT_EQ(*e.Value("mamba_session_evictions_total", {{"to", "host"}}), 0);
  EXPECT_EQ(*e.Value("mamba_session_evictions_total", {{"to", "dropped"}}), 0);
  EXPECT_EQ(*e.Value("mamba_sessions", {{"tier", "gpu"}}), 0);
  EXPECT_EQ(*e.Value("mamba_sessions", {{"tier", "host"}}), 0);
  EXPECT_EQ(*e.Value("mamba_gpu_memory_used_bytes"), 0);
  EXPECT_EQ(*e.Value("mamba_request_time_to_first_token_seconds_count"), 0);
}

TEST_F(ServingMetricsTest, ObserverRecordsStepsTokensAndRequests) {
  EngineObserver* observer = metrics_.get();
  observer->OnStep(Phase::kPrefill, 0.020, 2, 300, 0);
  observer->OnStep(Phase::kDecode, 0.004, 3, 0, 3);
  observer->OnStep(Phase::kDecode, 0.003, 3, 0, 3);
  observer->OnStep(Phase::kMixed, 0.012, 4, 50, 3);
  observer->OnFirstToken(absl::Milliseconds(30));
  observer->OnFirstToken(absl::Milliseconds(300));
  for (int i = 0; i < 10; ++i) observer->OnInterTokenLatency(absl::Microseconds(1800));
  observer->OnInterTokenLatency(absl::Milliseconds(-1));  // clock oddities clamp to 0
  GenerationRequest request;
  GenerationResult result;
  result.usage.prompt_tokens = 100;
  result.usage.generated_tokens = 6;
  result.timing.queue_time = absl::Milliseconds(2);
  result.timing.time_to_first_token = absl::Milliseconds(30);
  result.timing.total = absl::Milliseconds(50);
  observer->OnRequestFinished(request, result);
  observer->OnSessionEviction(true);
  observer->OnSessionEviction(true);
  observer->OnSessionEviction(false);
  observer->OnResumedTokens(512);
  observer->OnResumedTokens(0);

  Exposition e = Scrape();
  EXPECT_EQ(*e.Value("mamba_engine_step_seconds_count", {{"phase", "prefill"}}), 1);
  EXPECT_EQ(*e.Value("mamba_engine_step_seconds_count", {{"phase", "decode"}}), 2);
  EXPECT_EQ(*e.Value("mamba_engine_step_seconds_count", {{"phase", "mixed"}}), 1);
  EXPECT_DOUBLE_EQ(*e.Value("mamba_engine_step_seconds_sum", {{"phase", "decode"}}), 0.007);
  EXPECT_EQ(*e.Value("mamba_engine_batch_size_count"), 4);
  EXPECT_EQ(*e.Value("mamba_engine_batch_size_sum"), 12);
  EXPECT_EQ(*e.Value("mamba_prompt_tokens_total"), 350);
  EXPECT_EQ(*e.Value("mamba_generated_tokens_total"), 13);  // 2 first tokens + 11 later ones
  // TTFT 30 ms lands in le=0.04, 300 ms in le=0.5.
  EXPECT_EQ(*e.Value("mamba_request_time_to_first_token_seconds_bucket", {{"le", "0.02"}}), 0);
  EXPECT_EQ(*e.Value("mamba_request_time_to_first_token_seconds_bucket", {{"le", "0.04"}}), 1);
  EXPECT_EQ(*e.Value("mamba_request_time_to_first_token_seconds_bucket", {{"le", "0.25"}}), 1);
  EXPECT_EQ(*e.Value("mamba_request_time_to_first_token_seconds_bucket", {{"le", "0.5"}}), 2);
  EXPECT_EQ(*e.Value("mamba_request_inter_token_latency_seconds_bucket", {{"le", "0.0001"}}), 1);
  EXPECT_EQ(*e.Value("mamba_request_inter_token_latency_seconds_bucket", {{"le", "0.002"}}), 11);
  EXPECT_EQ(*e.Value("mamba_request_e2e_latency_seconds_count"), 1);
  EXPECT_DOUBLE_EQ(*e.Value("mamba_request_e2e_latency_seconds_sum"), 0.05);
  EXPECT_DOUBLE_EQ(*e.Value("mamba_request_queue_time_seconds_sum"), 0.002);
  EXPECT_EQ(*e.Value("mamba_request_prompt_tokens_bucket", {{"le", "64"}}), 0);
  EXPECT_EQ(*e.Value("mamba_request_prompt_tokens_bucket", {{"le", "128"}}), 1);
  EXPECT_EQ(*e.Value("mamba_request_generated_tokens_sum"), 6);
  EXPECT_EQ(*e.Value("mamba_session_evictions_total", {{"to", "host"}}), 2);
  EXPECT_EQ(*e.Value("mamba_session_evictions_total", {{"to", "dropped"}}), 1);
  EXPECT_EQ(*e.Value("mamba_session_resumed_tokens_total"), 512);
}

TEST_F(ServingMetricsTest, CountsRpcsByMethodAndCode) {
  metrics_->RecordRpc("grpc", "Generate", absl::StatusCode::kOk);
  metrics_->RecordRpc("grpc", "Generate", absl::StatusCode::kOk);
  metrics_->RecordRpc("grpc", "Generate", absl::StatusCode::kResourceExhausted);
  metrics_->RecordRpc("grpc", "CreateSession", absl::StatusCode::kInvalidArgument);
  metrics_->RecordRpc("grpc", "Tokenize", static_cast<absl::StatusCode>(99));  // outside gRPC's codes
  Exposition e = Scrape();
  EXPECT_EQ(*e.Value("mamba_requests_total", {{"method", "Generate"}, {"code", "OK"}}), 2);
  EXPECT_EQ(
      *e.Value("mamba_requests_total", {{"method", "Generate"}, {"code", "RESOURCE_EXHAUSTED"}}),
      1);
  EXPECT_EQ(
      *e.Value("mamba_requests_total", {{"method", "CreateSession"}, {"code", "INVALID_ARGUMENT"}}),
      1);
  EXPECT_EQ(*e.Value("mamba_requests_total", {{"method", "Tokenize"}, {"code", "UNKNOWN"}}), 1);
}

TEST_F(ServingMetricsTest, RpcLabelsStayBounded) {
  // A buggy caller passing request-specific strings as the method cannot grow the series forever.
  for (int i = 0; i < 1100; ++i) {
    metrics_->RecordRpc("grpc", "method-" + std::to_string(i), absl::StatusCode::kOk);
  }
  EXPECT_EQ(Scrape().Find("mamba_requests_total").size(), 1024u);
  ASSERT_EQ(log_lines_.size(), 1u);  // reported once, not 76 times
  EXPECT_THAT(log_lines_[0], HasSubstr("\"level\":\"warning\""));
  EXPECT_THAT(log_lines_[0], HasSubstr("mamba_requests_total"));
}

TEST_F(ServingMetricsTest, CollectorRefreshesGaugesAtScrapeTime) {
  EngineStats stats;
  int calls = 0;
  metrics_->SetStatsSource([&] {
    ++calls;
    return stats;
  });
  stats.requests_running = 5;
  stats.requests_waiting = 7;
  stats.sessions_device = 11;
  stats.sessions_host = 13;
  stats.slots_total = 64;
  stats.slots_used = 16;
  stats.state_bytes_device = 16 * 2600000;
  stats.state_bytes_host = 13 * 2600000;
  Exposition e = Scrape();
  EXPECT_EQ(calls, 1);  // one Stats() call per scrape, whatever the number of gauges
  EXPECT_EQ(*e.Value("mamba_requests_running"), 5);
  EXPECT_EQ(*e.Value("mamba_requests_waiting"), 7);
  EXPECT_EQ(*e.Value("mamba_sessions", {{"tier", "gpu"}}), 11);
  EXPECT_EQ(*e.Value("mamba_sessions", {{"tier", "host"}}), 13);
  EXPECT_EQ(*e.Value("mamba_state_slots"), 64);
  EXPECT_EQ(*e.Value("mamba_state_slots_used"), 16);
  EXPECT_EQ(*e.Value("mamba_state_memory_bytes", {{"tier", "gpu"}}), 41600000);
  EXPECT_EQ(*e.Value("mamba_state_memory_bytes", {{"tier", "host"}}), 33800000);
  stats.requests_running = 0;
  EXPECT_EQ(*Scrape().Value("mamba_requests_running"), 0);
  // The prefix cache's totals are the engine's: counters follow them; entries and bytes per tier.
  stats.prefix_cache_lookups = 10;
  stats.prefix_cache_hits = 4;
  stats.prefix_cache_hit_tokens = 900;
  stats.prefix_cache_evictions_to_host = 2;
  stats.prefix_cache_device_entries = 3;
  stats.prefix_cache_host_bytes = 5000;
  e = Scrape();
  EXPECT_EQ(*e.Value("mamba_prefix_cache_lookups_total"), 10);
  EXPECT_EQ(*e.Value("mamba_prefix_cache_hit_tokens_total"), 900);
  EXPECT_EQ(*e.Value("mamba_prefix_cache_evictions_total", {{"to", "host"}}), 2);
  EXPECT_EQ(*e.Value("mamba_prefix_cache_entries", {{"tier", "gpu"}}), 3);
  EXPECT_EQ(*e.Value("mamba_prefix_cache_bytes", {{"tier", "host"}}), 5000);
  stats.prefix_cache_hits = 9;
  EXPECT_EQ(*Scrape().Value("mamba_prefix_cache_hits_total"), 9);
  EXPECT_EQ(calls, 4);
  // Detached: the source is not called again, the last values stay.
  metrics_->SetStatsSource(nullptr);
  stats.requests_waiting = 99;
  EXPECT_EQ(*Scrape().Value("mamba_requests_waiting"), 7);
  EXPECT_EQ(calls, 4);
}

TEST_F(ServingMetricsTest, ModelInfoIsSetOnce) {
  ModelInfo info;
  info.name = "mamba-130m";
  info.weight_dtype = "f16";
  info.backend = "cuda";
  info.weight_bytes = 259500000;
  info.num_slots = 256;
  ASSERT_TRUE(metrics_->SetModelInfo(info).ok());
  Exposition e = Scrape();
  EXPECT_EQ(*e.Value("mamba_model_info", {{"model", "mamba-130m"},
                                           {"family", "mamba1"},
                                           {"dtype", "f16"},
                                           {"backend", "cuda"}}),
            1);
  EXPECT_EQ(*e.Value("mamba_weights_bytes"), 259500000);
  EXPECT_EQ(*e.Value("mamba_state_slots"), 256);
  info.name = "other";
  EXPECT_EQ(metrics_->SetModelInfo(info).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Scrape().Find("mamba_model_info").size(), 1u);
}

TEST_F(ServingMetricsTest, GpuMemoryFromTheServersCallback) {
  absl::StatusOr<GpuMemoryInfo> next = GpuMemoryInfo{60LL << 30, 80LL << 30};
  metrics_->SetGpuMemorySource([&] { return next; });
  Exposition e = Scrape();
  EXPECT_EQ(*e.Value("mamba_gpu_memory_used_bytes"), static_cast<double>(60LL << 30));
  EXPECT_EQ(*e.Value("mamba_gpu_memory_total_bytes"), static_cast<double>(80LL << 30));
  // A failing source keeps the last values and logs once.
  next = absl::InternalError("cudaMemGetInfo: unspecified launch failure");
  e = Scrape();
  Scrape();
  EXPECT_EQ(*e.Value("mamba_gpu_memory_used_bytes"), static_cast<double>(60LL << 30));
  ASSERT_EQ(log_lines_.size(), 1u);
  EXPECT_THAT(log_lines_[0], HasSubstr("unspecified launch failure"));
}

TEST_F(ServingMetricsTest, DestroyingTheMetricsDetachesTheCollector) {
  int calls = 0;
  metrics_->SetStatsSource([&] {
    ++calls;
    return EngineStats{};
  });
  Scrape();
  metrics_.reset();
  Scrape();  // must not call into the destroyed object
  EXPECT_EQ(calls, 1);
}

// Generate a full exposition with every kind of series populated, as promtool sees it (see
// deploy_config_test.cc), and check the histogram invariants on every histogram in it.
TEST_F(ServingMetricsTest, EveryHistogramIsConsistent) {
  ASSERT_TRUE(RegisterProcessMetrics(&registry_).ok());
  EngineObserver* observer = metrics_.get();
  for (int i = 0; i < 200; ++i) {
    observer->OnStep(i % 3 == 0 ? Phase::kPrefill : Phase::kDecode, 0.0001 * i, i % 70, i, i % 7);
    observer->OnFirstToken(absl::Microseconds(500 * i));
    observer->OnInterTokenLatency(absl::Microseconds(37 * i));
    GenerationResult r;
    r.usage.prompt_tokens = i * 13;
    r.usage.generated_tokens = i;
    r.timing.total = absl::Milliseconds(7 * i);
    r.timing.queue_time = absl::Microseconds(90 * i);
    observer->OnRequestFinished(GenerationRequest{}, r);
  }
  Exposition e = Scrape();
  int histograms = 0;
  for (const auto& [name, type] : e.type) {
    if (type != "histogram") continue;
    ++histograms;
    // Group buckets by their labels other than le.
    std::map<std::string, std::vector<const testing::Sample*>> by_series;
    for (const testing::Sample* s : e.Find(name + "_bucket")) {
      std::string key;
      for (const auto& [k, v] : s->labels) {
        if (k != "le") key += k + "=" + v + ",";
      }
      by_series[key].push_back(s);
    }
    ASSERT_FALSE(by_series.empty()) << name;
    for (const auto& [key, buckets] : by_series) {
      ASSERT_EQ(buckets.back()->Label("le"), "+Inf") << name << " " << key;
      double prev_le = -1e300, prev_count = 0;
      for (const testing::Sample* b : buckets) {
        const double le = b->Label("le") == "+Inf" ? 1e308 : std::stod(*b->Label("le"));
        EXPECT_GT(le, prev_le) << name;
        EXPECT_GE(b->value, prev_count) << name << " le=" << *b->Label("le");
        prev_le = le;
        prev_count = b->value;
      }
      std::map<std::string, std::string> match;
      for (const auto& [k, v] : buckets[0]->labels) {
        if (k != "le") match[k] = v;
      }
      EXPECT_EQ(buckets.back()->value, *e.Value(name + "_count", match)) << name << " " << key;
      EXPECT_GE(*e.Value(name + "_sum", match), 0) << name;
    }
  }
  EXPECT_EQ(histograms, 8);
}

}  // namespace
}  // namespace mamba::metrics
