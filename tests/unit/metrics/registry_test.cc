#include "server/metrics/registry.h"

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/metrics/exposition_parser.h"

namespace mamba::metrics {
namespace {

using ::testing::HasSubstr;
using testing::ParseExposition;

TEST(RegistryTest, RendersEveryTypeExactly) {
  Registry r;
  Counter* c = *r.AddCounter("demo_events_total", "Events seen.");
  c->Increment(3);
  c->IncrementBy(0.5);
  Gauge* g = *r.AddGauge("demo_temperature_celsius", "Current temperature.");
  g->Set(-1.25);
  Histogram* h = *r.AddHistogram("demo_latency_seconds", "Latency.", {0.1, 1, 10});
  for (double v : {0.0625, 0.125, 0.5, 2.0, 100.0}) h->Observe(v);  // exact in binary
  CounterFamily* f =
      *r.AddCounterFamily("demo_requests_total", "Requests by code.", {"method", "code"});
  (*f->WithLabels({"Get", "OK"}))->Increment(2);
  (*f->WithLabels({"Get", "NOT_FOUND"}))->Increment();

  EXPECT_EQ(r.Expose(),
            "# HELP demo_events_total Events seen.\n"
            "# TYPE demo_events_total counter\n"
            "demo_events_total 3.5\n"
            "# HELP demo_temperature_celsius Current temperature.\n"
            "# TYPE demo_temperature_celsius gauge\n"
            "demo_temperature_celsius -1.25\n"
            "# HELP demo_latency_seconds Latency.\n"
            "# TYPE demo_latency_seconds histogram\n"
            "demo_latency_seconds_bucket{le=\"0.1\"} 1\n"
            "demo_latency_seconds_bucket{le=\"1\"} 3\n"
            "demo_latency_seconds_bucket{le=\"10\"} 4\n"
            "demo_latency_seconds_bucket{le=\"+Inf\"} 5\n"
            "demo_latency_seconds_sum 102.6875\n"
            "demo_latency_seconds_count 5\n"
            "# HELP demo_requests_total Requests by code.\n"
            "# TYPE demo_requests_total counter\n"
            "demo_requests_total{method=\"Get\",code=\"OK\"} 2\n"
            "demo_requests_total{method=\"Get\",code=\"NOT_FOUND\"} 1\n");
}

TEST(RegistryTest, EscapesHelpAndLabelValuesInOutput) {
  Registry r;
  GaugeFamily* f = *r.AddGaugeFamily("demo_info", "Line one\nback\\slash \"quoted\"", {"v"});
  (*f->WithLabels({"a\"b\\c\nd"}))->Set(1);
  const std::string text = r.Expose();
  EXPECT_THAT(text, HasSubstr("# HELP demo_info Line one\\nback\\\\slash \"quoted\"\n"));
  EXPECT_THAT(text, HasSubstr("demo_info{v=\"a\\\"b\\\\c\\nd\"} 1\n"));
  // And an independent reader gets the original strings back.
  auto parsed = ParseExposition(text);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->help["demo_info"], "Line one\nback\\slash \"quoted\"");
  ASSERT_EQ(parsed->samples.size(), 1u);
  EXPECT_EQ(parsed->samples[0].Label("v"), "a\"b\\c\nd");
}

TEST(RegistryTest, HistogramLabelledSeriesPutLeLast) {
  Registry r;
  HistogramFamily* f = *r.AddHistogramFamily("demo_step_seconds", "Steps.", {"phase"}, {1});
  (*f->WithLabels({"decode"}))->Observe(0.5);
  EXPECT_THAT(r.Expose(), HasSubstr("demo_step_seconds_bucket{phase=\"decode\",le=\"1\"} 1\n"
                                    "demo_step_seconds_bucket{phase=\"decode\",le=\"+Inf\"} 1\n"
                                    "demo_step_seconds_sum{phase=\"decode\"} 0.5\n"
                                    "demo_step_seconds_count{phase=\"decode\"} 1\n"));
}

TEST(RegistryTest, BucketBoundariesAreInclusive) {
  Registry r;
  Histogram* h = *r.AddHistogram("demo_x", "x", {1, 2});
  h->Observe(1);                                        // le=1
  h->Observe(1.0001);                                   // le=2
  h->Observe(2);                                        // le=2
  h->Observe(-5);                                       // le=1: below every bound
  h->Observe(std::numeric_limits<double>::infinity());  // +Inf only
  h->Observe(std::nan(""));                             // ignored
  Histogram::Snapshot s = h->Read();
  EXPECT_EQ(s.cumulative, (std::vector<uint64_t>{2, 4, 5}));
  EXPECT_EQ(s.count, 5u);
  EXPECT_TRUE(std::isinf(s.sum));
}

TEST(RegistryTest, CounterIgnoresDecrements) {
  Registry r;
  Counter* c = *r.AddCounter("demo_total", "x");
  c->IncrementBy(2.5);
  c->IncrementBy(-1);
  c->IncrementBy(std::nan(""));
  c->Increment(0);
  EXPECT_EQ(c->Value(), 2.5);
}

TEST(RegistryTest, RejectsBadRegistrations) {
  Registry r;
  ASSERT_TRUE(r.AddCounter("demo_total", "x").ok());
  ASSERT_TRUE(r.AddHistogram("demo_hist", "x", {1}).ok());
  struct Case {
    const char* what;
    absl::Status status;
    absl::StatusCode code;
    const char* message;
  } cases[] = {
      {"bad name", r.AddGauge("bad-name", "x").status(), absl::StatusCode::kInvalidArgument,
       "invalid metric name"},
      {"counter suffix", r.AddCounter("demo_events", "x").status(),
       absl::StatusCode::kInvalidArgument, "_total"},
      {"duplicate", r.AddGauge("demo_total", "x").status(), absl::StatusCode::kAlreadyExists,
       "clashes"},
      {"histogram series clash", r.AddGauge("demo_hist_count", "x").status(),
       absl::StatusCode::kAlreadyExists, "demo_hist_count"},
      {"reserved label", r.AddGaugeFamily("demo_g1", "x", {"__name__"}).status(),
       absl::StatusCode::kInvalidArgument, "label name"},
      {"repeated label", r.AddGaugeFamily("demo_g2", "x", {"a", "a"}).status(),
       absl::StatusCode::kInvalidArgument, "twice"},
      {"le label", r.AddHistogramFamily("demo_h2", "x", {"le"}, {1}).status(),
       absl::StatusCode::kInvalidArgument, "\"le\""},
      {"unsorted buckets", r.AddHistogram("demo_h3", "x", {1, 0.5}).status(),
       absl::StatusCode::kInvalidArgument, "strictly increasing"},
      {"equal buckets", r.AddHistogram("demo_h4", "x", {1, 1}).status(),
       absl::StatusCode::kInvalidArgument, "strictly increasing"},
      {"infinite bucket",
       r.AddHistogram("demo_h5", "x", {1, std::numeric_limits<double>::infinity()}).status(),
       absl::StatusCode::kInvalidArgument, "finite"},
      {"help not utf-8", r.AddGauge("demo_g3", "bad \xff").status(),
       absl::StatusCode::kInvalidArgument, "UTF-8"},
      {"histogram callback",
       r.AddCallback("demo_g4", "x", MetricType::kHistogram,
                     [] { return std::optional<double>(1); }),
       absl::StatusCode::kInvalidArgument, "counter or a gauge"},
      {"max_series 0", r.AddGaugeFamily("demo_g5", "x", {"a"}, 0).status(),
       absl::StatusCode::kInvalidArgument, "max_series"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(c.status.code(), c.code) << c.what << ": " << c.status;
    EXPECT_THAT(std::string(c.status.message()), HasSubstr(c.message)) << c.what;
  }
  // Nothing half-registered: only the two good metrics are listed.
  EXPECT_EQ(r.Metrics().size(), 2u);
}

TEST(RegistryTest, LabelValuesAreCheckedAndBounded) {
  Registry r;
  CounterFamily* f = *r.AddCounterFamily("demo_total", "x", {"a", "b"}, 3);
  EXPECT_EQ(f->WithLabels({"only one"}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(f->WithLabels({"x", "\xc3"}).status().code(), absl::StatusCode::kInvalidArgument);
  Counter* first = *f->WithLabels({"1", "x"});
  EXPECT_EQ(*f->WithLabels({"1", "x"}), first);  // same series, same pointer
  ASSERT_TRUE(f->WithLabels({"2", "x"}).ok());
  ASSERT_TRUE(f->WithLabels({"3", "x"}).ok());
  absl::StatusOr<Counter*> over = f->WithLabels({"4", "x"});
  EXPECT_EQ(over.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(over.status().message()), HasSubstr("maximum of 3"));
  EXPECT_TRUE(f->WithLabels({"1", "x"}).ok());  // existing series still reachable
  EXPECT_EQ(f->size(), 3u);
  // Length-prefixed keys: ("ab","c") and ("a","bc") are different series.
  CounterFamily* g = *r.AddCounterFamily("demo2_total", "x", {"a", "b"});
  EXPECT_NE(*g->WithLabels({"ab", "c"}), *g->WithLabels({"a", "bc"}));
}

TEST(RegistryTest, CallbacksAndCollectHooks) {
  Registry r;
  double source = 7;
  ASSERT_TRUE(r.AddCallback("demo_value", "x", MetricType::kGauge, [&] {
                 return std::optional<double>(source);
               }).ok());
  ASSERT_TRUE(r.AddCallback("demo_missing", "x", MetricType::kGauge, [] {
                 return std::optional<double>();
               }).ok());
  Gauge* g = *r.AddGauge("demo_refreshed", "x");
  int hook_runs = 0;
  const int64_t id = r.AddCollectHook([&] {
    ++hook_runs;
    g->Set(hook_runs * 10);
  });
  std::string text = r.Expose();
  EXPECT_THAT(text, HasSubstr("demo_value 7\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE demo_missing gauge\n# HELP demo_refreshed"));
  EXPECT_THAT(text, HasSubstr("demo_refreshed 10\n"));
  source = 8;
  text = r.Expose();
  EXPECT_THAT(text, HasSubstr("demo_value 8\n"));
  EXPECT_THAT(text, HasSubstr("demo_refreshed 20\n"));
  r.RemoveCollectHook(id);
  text = r.Expose();
  EXPECT_THAT(text, HasSubstr("demo_refreshed 20\n"));
  EXPECT_EQ(hook_runs, 2);
}

TEST(RegistryTest, ExponentialBuckets) {
  EXPECT_EQ(*ExponentialBuckets(1, 2, 4), (std::vector<double>{1, 2, 4, 8}));
  EXPECT_FALSE(ExponentialBuckets(0, 2, 4).ok());
  EXPECT_FALSE(ExponentialBuckets(1, 1, 4).ok());
  EXPECT_FALSE(ExponentialBuckets(1, 2, 0).ok());
}

// Many threads record into the same series while another scrapes: no update is lost, and every
// scrape is internally consistent (cumulative buckets, +Inf == _count).
TEST(RegistryTest, ConcurrentUpdatesAndScrapes) {
  Registry r;
  Counter* c = *r.AddCounter("demo_ops_total", "x");
  Counter* cf = *r.AddCounter("demo_fraction_total", "x");
  Gauge* g = *r.AddGauge("demo_level", "x");
  Histogram* h = *r.AddHistogram("demo_lat_seconds", "x", {0.001, 0.01, 0.1, 1});
  CounterFamily* f = *r.AddCounterFamily("demo_by_thread_total", "x", {"t"}, 64);

  constexpr int kThreads = 8;
  constexpr int kPerThread = 20000;
  std::atomic<bool> stop{false};
  std::atomic<int> scrapes{0};
  std::thread scraper([&] {
    while (!stop.load()) {
      auto parsed = ParseExposition(r.Expose());
      ASSERT_TRUE(parsed.ok()) << parsed.status();
      std::vector<const testing::Sample*> buckets = parsed->Find("demo_lat_seconds_bucket");
      ASSERT_EQ(buckets.size(), 5u);
      for (size_t i = 1; i < buckets.size(); ++i) {
        EXPECT_LE(buckets[i - 1]->value, buckets[i]->value);
      }
      EXPECT_EQ(buckets.back()->value, *parsed->Value("demo_lat_seconds_count"));
      scrapes.fetch_add(1);
    }
  });
  std::vector<std::thread> workers;
  for (int t = 0; t < kThreads; ++t) {
    workers.emplace_back([&, t] {
      Counter* mine = *f->WithLabels({std::to_string(t)});
      std::mt19937 rng(t);
      std::uniform_real_distribution<double> dist(0, 2);
      for (int i = 0; i < kPerThread; ++i) {
        c->Increment();
        cf->IncrementBy(0.5);
        g->Add(1);
        h->Observe(dist(rng));
        mine->Increment();
      }
    });
  }
  for (auto& w : workers) w.join();
  stop.store(true);
  scraper.join();
  EXPECT_GT(scrapes.load(), 0);

  const double total = static_cast<double>(kThreads) * kPerThread;
  EXPECT_EQ(c->Value(), total);
  EXPECT_EQ(cf->Value(), total * 0.5);
  EXPECT_EQ(g->Value(), total);
  Histogram::Snapshot s = h->Read();
  EXPECT_EQ(s.count, static_cast<uint64_t>(total));
  auto parsed = ParseExposition(r.Expose());
  ASSERT_TRUE(parsed.ok());
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(*parsed->Value("demo_by_thread_total", {{"t", std::to_string(t)}}), kPerThread);
  }
}

// Threads racing to create the same labelled series all get the same one.
TEST(RegistryTest, ConcurrentSeriesCreation) {
  Registry r;
  CounterFamily* f = *r.AddCounterFamily("demo_total", "x", {"k"}, 16);
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([f] {
      for (int i = 0; i < 1600; ++i) (*f->WithLabels({std::to_string(i % 16)}))->Increment();
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(f->size(), 16u);
  for (int k = 0; k < 16; ++k) EXPECT_EQ((*f->WithLabels({std::to_string(k)}))->Value(), 800);
}

}  // namespace
}  // namespace mamba::metrics
