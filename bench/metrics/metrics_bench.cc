// Per-observation cost of the metrics the engine records, and the cost of a scrape.
//   build/bin/metrics-bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
// "Token" is what one generated token costs through the EngineObserver (inter-token histogram
// plus the generated-token counter); "Step" what one engine step costs. Compare with the decode
// step times in PERF.md: at batch B a step pays B tokens + 1 step.
#include <benchmark/benchmark.h>

#include <memory>
#include <thread>

#include "server/metrics/process_metrics.h"
#include "server/metrics/registry.h"
#include "server/metrics/serving_metrics.h"

namespace mamba::metrics {
namespace {

// The observer the engine gets when metrics are off, for the baseline of the virtual call.
class NullObserver final : public EngineObserver {
 public:
  void OnStep(StepPhase, double, int32_t, int32_t, int32_t) override {}
  void OnFirstToken(absl::Duration) override {}
  void OnInterTokenLatency(absl::Duration) override {}
  void OnRequestFinished(const GenerationRequest&, const GenerationResult&) override {}
  void OnSessionEviction(bool) override {}
  void OnResumedTokens(int64_t) override {}
};

void BM_CounterIncrement(benchmark::State& state) {
  static Registry* registry = new Registry();
  static Counter* c = *registry->AddCounter("bench_counter_total", "x");
  for (auto _ : state) c->Increment();
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_CounterIncrement)->ThreadRange(1, 4)->UseRealTime();

void BM_GaugeSet(benchmark::State& state) {
  Registry registry;
  Gauge* g = *registry.AddGauge("bench_gauge", "x");
  double v = 0;
  for (auto _ : state) g->Set(v += 1);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_GaugeSet);

void BM_HistogramObserve(benchmark::State& state) {
  static Registry* registry = new Registry();
  static Histogram* h =
      *registry->AddHistogram("bench_latency_seconds", "x", ServingBuckets::InterToken());
  // Values spread over the buckets, as real latencies are.
  double v = 0.0001;
  for (auto _ : state) {
    h->Observe(v);
    v = v > 4 ? 0.0001 : v * 1.37;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_HistogramObserve)->ThreadRange(1, 4)->UseRealTime();

template <typename Observer>
std::unique_ptr<EngineObserver> MakeObserver(Registry* registry);
template <>
std::unique_ptr<EngineObserver> MakeObserver<NullObserver>(Registry*) {
  return std::make_unique<NullObserver>();
}
template <>
std::unique_ptr<EngineObserver> MakeObserver<ServingMetrics>(Registry* registry) {
  return *ServingMetrics::Create(registry);
}

template <typename Observer>
void BM_Token(benchmark::State& state) {
  Registry registry;
  std::unique_ptr<EngineObserver> owned = MakeObserver<Observer>(&registry);
  EngineObserver* observer = owned.get();
  benchmark::DoNotOptimize(observer);
  absl::Duration gap = absl::Microseconds(700);
  for (auto _ : state) {
    observer->OnInterTokenLatency(gap);
    gap += absl::Nanoseconds(1);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK_TEMPLATE(BM_Token, NullObserver);
BENCHMARK_TEMPLATE(BM_Token, ServingMetrics);

template <typename Observer>
void BM_Step(benchmark::State& state) {
  Registry registry;
  std::unique_ptr<EngineObserver> owned = MakeObserver<Observer>(&registry);
  EngineObserver* observer = owned.get();
  benchmark::DoNotOptimize(observer);
  int32_t batch = 1;
  for (auto _ : state) {
    observer->OnStep(EngineObserver::StepPhase::kDecode, 0.0007, batch, 0, batch);
    batch = batch == 256 ? 1 : batch + 1;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK_TEMPLATE(BM_Step, NullObserver);
BENCHMARK_TEMPLATE(BM_Step, ServingMetrics);

// A decode step's worth of recording at batch B: B tokens and one step.
void BM_DecodeStepRecording(benchmark::State& state) {
  Registry registry;
  std::unique_ptr<EngineObserver> owned = MakeObserver<ServingMetrics>(&registry);
  EngineObserver* observer = owned.get();
  const int32_t batch = static_cast<int32_t>(state.range(0));
  for (auto _ : state) {
    for (int32_t i = 0; i < batch; ++i) observer->OnInterTokenLatency(absl::Microseconds(700 + i));
    observer->OnStep(EngineObserver::StepPhase::kDecode, 0.0007, batch, 0, batch);
  }
  state.SetItemsProcessed(state.iterations() * batch);
}
BENCHMARK(BM_DecodeStepRecording)->Arg(1)->Arg(64)->Arg(256);

// A full scrape with every metric mamba-serve exports and realistic label sets.
void BM_Expose(benchmark::State& state) {
  Registry registry;
  (void)RegisterProcessMetrics(&registry);
  std::unique_ptr<ServingMetrics> m = *ServingMetrics::Create(&registry);
  m->SetStatsSource([] { return EngineStats{}; });
  for (const char* method : {"Generate", "CreateSession", "GetSession", "ForkSession",
                             "CloseSession", "ListSessions", "Tokenize", "Detokenize"}) {
    for (absl::StatusCode code : {absl::StatusCode::kOk, absl::StatusCode::kInvalidArgument,
                                  absl::StatusCode::kNotFound, absl::StatusCode::kCancelled}) {
      m->RecordRpc("grpc", method, code);
    }
  }
  size_t bytes = 0;
  for (auto _ : state) {
    std::string text = registry.Expose();
    bytes = text.size();
    benchmark::DoNotOptimize(text);
  }
  state.counters["bytes"] = static_cast<double>(bytes);
}
BENCHMARK(BM_Expose)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace mamba::metrics

BENCHMARK_MAIN();
