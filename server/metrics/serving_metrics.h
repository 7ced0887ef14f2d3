// Every mamba_* metric, defined once: names, help, labels and buckets. ServingMetrics records into
// them from three places:
//   - the engine, through the EngineObserver interface (per step, per token, per finished request,
//     per eviction), on the scheduler thread: each call is a few relaxed atomic adds, no lock;
//   - the gRPC layer, through RecordRpc (one call per finished RPC: mamba_requests_total);
//   - a collect hook that runs at scrape time and copies Engine::Stats(), ModelInfo and the GPU's
//     memory figures into gauges.
// The metric table with meanings and labels is in docs/observability.md.
//
// Typical wiring in the server:
//   Registry registry;
//   RegisterProcessMetrics(&registry);
//   auto metrics = ServingMetrics::Create(&registry);              // before the engine
//   auto engine = Engine::Create(options, metrics->get());
//   metrics->SetModelInfo(engine->model_info());
//   metrics->SetStatsSource([e = engine.get()] { return e->Stats(); });
//   ... serve; on shutdown: SetStatsSource(nullptr) before the engine is destroyed.
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "engine/api/engine_observer.h"
#include "engine/api/engine_stats.h"
#include "engine/api/model_info.h"
#include "server/metrics/registry.h"
#include "server/metrics/request_log.h"

namespace mamba::metrics {

// Device memory as cudaMemGetInfo reports it (used = total - free).
struct GpuMemoryInfo {
  int64_t used_bytes = 0;
  int64_t total_bytes = 0;
};

// Histogram bucket upper bounds, chosen for each quantity's range (exposed for tests and docs).
struct ServingBuckets {
  static std::vector<double> TimeToFirstToken();  // 1 ms .. 60 s
  static std::vector<double> InterToken();        // 0.1 ms .. 5 s
  static std::vector<double> EndToEnd();          // 10 ms .. 16 min
  static std::vector<double> QueueTime();         // 0.1 ms .. 60 s
  static std::vector<double> PromptTokens();      // 1 .. 65536, powers of two
  static std::vector<double> GeneratedTokens();   // 1 .. 16384, powers of two
  static std::vector<double> StepTime();          // 50 us .. 10 s
  static std::vector<double> BatchSize();         // 1 .. 1024
};

class ServingMetrics final : public EngineObserver {
 public:
  // Registers the mamba_* metrics in `registry` (which must outlive the returned object). Fails
  // if any of them is already registered. Problems found at scrape time (a failing GPU memory
  // source, an RPC label set past its bound) are reported once through `logger`.
  static absl::StatusOr<std::unique_ptr<ServingMetrics>> Create(
      Registry* registry, const Logger* logger = &DefaultLogger());
  // Removes the collect hook (waiting for a scrape in progress); the metrics stay registered.
  ~ServingMetrics() override;
  ServingMetrics(const ServingMetrics&) = delete;
  ServingMetrics& operator=(const ServingMetrics&) = delete;

  // Where the scrape-time gauges come from. `stats` is called once per scrape; after a Set call
  // returns, the previous source is not running and will not be called again, so pass nullptr
  // before destroying what it reads. Without a source the gauges keep their last values.
  void SetStatsSource(std::function<EngineStats()> stats);
  // `gpu` should wrap cudaMemGetInfo for the engine's device; without one (CPU backend) the GPU
  // gauges read 0. An error keeps the previous values and is logged once.
  void SetGpuMemorySource(std::function<absl::StatusOr<GpuMemoryInfo>()> gpu);
  // Sets mamba_model_info{model,dtype,backend} 1, mamba_weights_bytes and the slot count. A model
  // is served for the life of the process: a second call fails with FAILED_PRECONDITION.
  absl::Status SetModelInfo(const ModelInfo& info);

  // Counts one finished RPC in mamba_requests_total{method,code}. `method` is the gRPC method's
  // name ("Generate", "CreateSession", ...); `code` maps 1:1 to gRPC codes.
  void RecordRpc(std::string_view protocol, std::string_view method, absl::StatusCode code);

  // EngineObserver (scheduler thread).
  void OnStep(StepPhase phase, double seconds, int32_t batch_size, int32_t prefill_tokens,
              int32_t decode_tokens) override;
  void OnFirstToken(absl::Duration time_to_first_token) override;
  void OnInterTokenLatency(absl::Duration gap) override;
  void OnRequestFinished(const GenerationRequest& request, const GenerationResult& result) override;
  void OnSessionEviction(bool to_host) override;
  void OnResumedTokens(int64_t tokens) override;

 private:
  ServingMetrics(Registry* registry, const Logger* logger);
  absl::Status Register();
  void Collect();

  Registry* const registry_;
  const Logger* const logger_;
  int64_t hook_id_ = 0;

  // Histograms.
  Histogram* ttft_ = nullptr;
  Histogram* inter_token_ = nullptr;
  Histogram* e2e_ = nullptr;
  Histogram* queue_time_ = nullptr;
  Histogram* prompt_tokens_hist_ = nullptr;
  Histogram* generated_tokens_hist_ = nullptr;
  Histogram* step_prefill_ = nullptr;
  Histogram* step_decode_ = nullptr;
  Histogram* step_mixed_ = nullptr;
  Histogram* batch_size_ = nullptr;
  // Counters.
  CounterFamily* requests_ = nullptr;
  Counter* prompt_tokens_ = nullptr;
  Counter* generated_tokens_ = nullptr;
  Counter* resumed_tokens_ = nullptr;
  Counter* evictions_to_host_ = nullptr;
  Counter* evictions_dropped_ = nullptr;
  Counter* cache_lookups_ = nullptr;
  Counter* cache_hits_ = nullptr;
  Counter* cache_hit_tokens_ = nullptr;
  Counter* cache_insertions_ = nullptr;
  Counter* cache_evictions_to_host_ = nullptr;
  Counter* cache_evictions_dropped_ = nullptr;
  // Gauges.
  Gauge* running_ = nullptr;
  Gauge* waiting_ = nullptr;
  Gauge* sessions_gpu_ = nullptr;
  Gauge* sessions_host_ = nullptr;
  Gauge* slots_ = nullptr;
  Gauge* slots_used_ = nullptr;
  Gauge* state_bytes_gpu_ = nullptr;
  Gauge* state_bytes_host_ = nullptr;
  Gauge* cache_entries_gpu_ = nullptr;
  Gauge* cache_entries_host_ = nullptr;
  Gauge* cache_bytes_gpu_ = nullptr;
  Gauge* cache_bytes_host_ = nullptr;
  Gauge* weights_bytes_ = nullptr;
  Gauge* gpu_used_ = nullptr;
  Gauge* gpu_total_ = nullptr;
  GaugeFamily* model_info_ = nullptr;

  absl::Mutex sources_mu_;
  std::function<EngineStats()> stats_source_ ABSL_GUARDED_BY(sources_mu_);
  std::function<absl::StatusOr<GpuMemoryInfo>()> gpu_source_ ABSL_GUARDED_BY(sources_mu_);
  bool gpu_error_logged_ ABSL_GUARDED_BY(sources_mu_) = false;
  bool model_info_set_ ABSL_GUARDED_BY(sources_mu_) = false;
  std::atomic<bool> rpc_label_error_logged_{false};
};

}  // namespace mamba::metrics
