#include "server/metrics/serving_metrics.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"

namespace mamba::metrics {
namespace {

double NonNegativeSeconds(absl::Duration d) { return std::max(0.0, absl::ToDoubleSeconds(d)); }

std::vector<double> PowersOfTwo(int count) {
  std::vector<double> out;
  double b = 1;
  for (int i = 0; i < count; ++i, b *= 2) out.push_back(b);
  return out;
}

}  // namespace

// Bounds are denser where the quantity usually lies (TTFT: tens to hundreds of ms; inter-token:
// 0.1 to 50 ms on a GPU, tens of ms on CPU), so p50/p90/p99 interpolate within narrow buckets.
std::vector<double> ServingBuckets::TimeToFirstToken() {
  return {0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.25,
          0.5,   0.75,   1,     1.5,  2.5,  5,    7.5,  10,   20,  30,   60};
}
std::vector<double> ServingBuckets::InterToken() {
  return {0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075, 0.01,
          0.015,  0.02,    0.03,   0.05,    0.075, 0.1,    0.25,  0.5,   1,     2.5,    5};
}
std::vector<double> ServingBuckets::EndToEnd() {
  return {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 240, 480, 960};
}
std::vector<double> ServingBuckets::QueueTime() {
  return {0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
          0.25,   0.5,    1,     2.5,    5,     10,   30,    60};
}
std::vector<double> ServingBuckets::PromptTokens() { return PowersOfTwo(17); }
std::vector<double> ServingBuckets::GeneratedTokens() { return PowersOfTwo(15); }
std::vector<double> ServingBuckets::StepTime() {
  return {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
          0.05,    0.1,    0.25,    0.5,    1,     2.5,    5,     10};
}
std::vector<double> ServingBuckets::BatchSize() {
  return {1, 2, 4, 8, 16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 1024};
}

absl::StatusOr<std::unique_ptr<ServingMetrics>> ServingMetrics::Create(Registry* registry,
                                                                       const Logger* logger) {
  if (registry == nullptr) return absl::InvalidArgumentError("ServingMetrics needs a registry");
  if (logger == nullptr) return absl::InvalidArgumentError("ServingMetrics needs a logger");
  std::unique_ptr<ServingMetrics> m(new ServingMetrics(registry, logger));
  if (absl::Status s = m->Register(); !s.ok()) return s;
  m->hook_id_ = registry->AddCollectHook([raw = m.get()] { raw->Collect(); });
  return m;
}

ServingMetrics::ServingMetrics(Registry* registry, const Logger* logger)
    : registry_(registry), logger_(logger) {}

ServingMetrics::~ServingMetrics() {
  if (hook_id_ != 0) registry_->RemoveCollectHook(hook_id_);
}

absl::Status ServingMetrics::Register() {
  Registry& r = *registry_;
  // Histograms --------------------------------------------------------------------------------
  struct HistogramDef {
    Histogram** target;
    const char* name;
    const char* help;
    std::vector<double> bounds;
  };
  HistogramDef histograms[] = {
      {&ttft_, "mamba_request_time_to_first_token_seconds",
       "Time from a generation request's arrival to its first generated token.",
       ServingBuckets::TimeToFirstToken()},
      {&inter_token_, "mamba_request_inter_token_latency_seconds",
       "Time between consecutive generated tokens of one request.", ServingBuckets::InterToken()},
      {&e2e_, "mamba_request_e2e_latency_seconds",
       "Time from a generation request's arrival to its end (any finish reason).",
       ServingBuckets::EndToEnd()},
      {&queue_time_, "mamba_request_queue_time_seconds",
       "Time a generation request waited before its first engine step.",
       ServingBuckets::QueueTime()},
      {&prompt_tokens_hist_, "mamba_request_prompt_tokens",
       "New prompt tokens processed per finished generation request (not counting tokens "
       "already held in its session's state).",
       ServingBuckets::PromptTokens()},
      {&generated_tokens_hist_, "mamba_request_generated_tokens",
       "Tokens generated per finished generation request.", ServingBuckets::GeneratedTokens()},
      {&batch_size_, "mamba_engine_batch_size", "Sequences advanced together in one engine step.",
       ServingBuckets::BatchSize()},
  };
  for (HistogramDef& h : histograms) {
    absl::StatusOr<Histogram*> created = r.AddHistogram(h.name, h.help, std::move(h.bounds));
    if (!created.ok()) return created.status();
    *h.target = *created;
  }
  absl::StatusOr<HistogramFamily*> steps = r.AddHistogramFamily(
      "mamba_engine_step_seconds",
      "Wall time of one engine step, by phase: prefill (prompt chunks only), decode (one token per "
      "running sequence only) or mixed (both in one batch).",
      {"phase"}, ServingBuckets::StepTime(), 3);
  if (!steps.ok()) return steps.status();
  for (auto [target, phase] :
       {std::pair{&step_prefill_, "prefill"}, std::pair{&step_decode_, "decode"},
        std::pair{&step_mixed_, "mixed"}}) {
    absl::StatusOr<Histogram*> h = (*steps)->WithLabels({phase});
    if (!h.ok()) return h.status();
    *target = *h;
  }

  // Counters ----------------------------------------------------------------------------------
  // 17 codes for each of the service's methods (about a dozen), with room to grow.
  absl::StatusOr<CounterFamily*> requests =
      r.AddCounterFamily("mamba_requests_total",
                         "Finished requests by protocol (grpc, http), method and status code.",
                         {"protocol", "method", "code"}, 1024);
  if (!requests.ok()) return requests.status();
  requests_ = *requests;
  struct CounterDef {
    Counter** target;
    const char* name;
    const char* help;
  };
  const CounterDef counters[] = {
      {&prompt_tokens_, "mamba_prompt_tokens_total",
       "Prompt tokens processed by prefill (generation requests and session creation)."},
      {&generated_tokens_, "mamba_generated_tokens_total", "Tokens generated."},
      {&resumed_tokens_, "mamba_session_resumed_tokens_total",
       "Prompt tokens not re-processed because a session's state already held them."},
  };
  for (const CounterDef& c : counters) {
    absl::StatusOr<Counter*> created = r.AddCounter(c.name, c.help);
    if (!created.ok()) return created.status();
    *c.target = *created;
  }
  absl::StatusOr<CounterFamily*> evictions = r.AddCounterFamily(
      "mamba_session_evictions_total",
      "Idle sessions evicted from device state slots: moved to host memory (to=\"host\") or "
      "dropped (to=\"dropped\"; a later turn on them gets NOT_FOUND).",
      {"to"}, 2);
  if (!evictions.ok()) return evictions.status();
  for (auto [target, to] :
       {std::pair{&evictions_to_host_, "host"}, std::pair{&evictions_dropped_, "dropped"}}) {
    absl::StatusOr<Counter*> c = (*evictions)->WithLabels({to});
    if (!c.ok()) return c.status();
    *target = *c;
  }

  // The prefix state cache: counted by the engine, read at scrape time (Collect adds the change).
  const CounterDef cache_counters[] = {
      {&cache_lookups_, "mamba_prefix_cache_lookups_total",
       "Stateless generation requests that looked up the prefix state cache."},
      {&cache_hits_, "mamba_prefix_cache_hits_total",
       "Stateless generation requests that resumed from a cached prefix of their input."},
      {&cache_hit_tokens_, "mamba_prefix_cache_hit_tokens_total",
       "Prompt tokens not prefilled because a cached state already held them."},
      {&cache_insertions_, "mamba_prefix_cache_insertions_total",
       "States kept by the prefix cache (checkpoints, and the ends of finished requests)."},
  };
  for (const CounterDef& c : cache_counters) {
    absl::StatusOr<Counter*> created = r.AddCounter(c.name, c.help);
    if (!created.ok()) return created.status();
    *c.target = *created;
  }
  absl::StatusOr<CounterFamily*> cache_evictions = r.AddCounterFamily(
      "mamba_prefix_cache_evictions_total",
      "Prefix cache entries evicted (least recently used first): moved from a device slot to "
      "host memory (to=\"host\") or dropped (to=\"dropped\").",
      {"to"}, 2);
  if (!cache_evictions.ok()) return cache_evictions.status();
  for (auto [target, to] : {std::pair{&cache_evictions_to_host_, "host"},
                            std::pair{&cache_evictions_dropped_, "dropped"}}) {
    absl::StatusOr<Counter*> c = (*cache_evictions)->WithLabels({to});
    if (!c.ok()) return c.status();
    *target = *c;
  }

  // Gauges ------------------------------------------------------------------------------------
  struct GaugeDef {
    Gauge** target;
    const char* name;
    const char* help;
  };
  const GaugeDef gauges[] = {
      {&running_, "mamba_requests_running", "Generation requests being advanced by the engine."},
      {&waiting_, "mamba_requests_waiting", "Generation requests queued for admission."},
      {&slots_, "mamba_state_slots", "State slots in the device pool."},
      {&slots_used_, "mamba_state_slots_used",
       "State slots holding a running request's or a resident session's state."},
      {&weights_bytes_, "mamba_weights_bytes", "Bytes of model weights on the device."},
      {&gpu_used_, "mamba_gpu_memory_used_bytes",
       "Device memory in use on the engine's GPU, by every process (0 on the CPU backend)."},
      {&gpu_total_, "mamba_gpu_memory_total_bytes",
       "Device memory of the engine's GPU (0 on the CPU backend)."},
  };
  for (const GaugeDef& g : gauges) {
    absl::StatusOr<Gauge*> created = r.AddGauge(g.name, g.help);
    if (!created.ok()) return created.status();
    *g.target = *created;
  }
  struct TierDef {
    const char* name;
    const char* help;
    Gauge** gpu;
    Gauge** host;
  };
  const TierDef tiers[] = {
      {"mamba_sessions",
       "Live sessions by where their state is: in a device state slot (tier=\"gpu\"; the slot pool "
       "in main memory on the CPU backend) or moved to host memory (tier=\"host\").",
       &sessions_gpu_, &sessions_host_},
      {"mamba_state_memory_bytes",
       "Bytes of recurrent state held for sessions and running requests, by tier (gpu, host).",
       &state_bytes_gpu_, &state_bytes_host_},
      {"mamba_prefix_cache_entries",
       "Prefix cache entries by tier: in spare device state slots (gpu) or host memory (host).",
       &cache_entries_gpu_, &cache_entries_host_},
      {"mamba_prefix_cache_bytes", "Bytes of state held by the prefix cache, by tier (gpu, host).",
       &cache_bytes_gpu_, &cache_bytes_host_},
  };
  for (const TierDef& t : tiers) {
    absl::StatusOr<GaugeFamily*> family = r.AddGaugeFamily(t.name, t.help, {"tier"}, 2);
    if (!family.ok()) return family.status();
    for (auto [target, tier] : {std::pair{t.gpu, "gpu"}, std::pair{t.host, "host"}}) {
      absl::StatusOr<Gauge*> g = (*family)->WithLabels({tier});
      if (!g.ok()) return g.status();
      *target = *g;
    }
  }
  absl::StatusOr<GaugeFamily*> info =
      r.AddGaugeFamily("mamba_model_info",
                       "The served model: always 1, with the model's name, family (mamba1, "
                       "mamba2, falcon_mamba), weight dtype and backend as labels.",
                       {"model", "family", "dtype", "backend"}, 1);
  if (!info.ok()) return info.status();
  model_info_ = *info;
  return absl::OkStatus();
}

void ServingMetrics::SetStatsSource(std::function<EngineStats()> stats) {
  absl::MutexLock lock(&sources_mu_);
  stats_source_ = std::move(stats);
}

void ServingMetrics::SetGpuMemorySource(std::function<absl::StatusOr<GpuMemoryInfo>()> gpu) {
  absl::MutexLock lock(&sources_mu_);
  gpu_source_ = std::move(gpu);
  gpu_error_logged_ = false;
}

absl::Status ServingMetrics::SetModelInfo(const ModelInfo& info) {
  absl::MutexLock lock(&sources_mu_);
  if (model_info_set_) {
    return absl::FailedPreconditionError(
        "the model info metric is already set; a process serves one model");
  }
  absl::StatusOr<Gauge*> g =
      model_info_->WithLabels({std::string_view(info.name),
                               std::string_view(model::FamilyName(info.config.family)),
                               std::string_view(info.weight_dtype),
                               std::string_view(info.backend)});
  if (!g.ok()) return g.status();
  (*g)->Set(1);
  model_info_set_ = true;
  weights_bytes_->Set(static_cast<double>(info.weight_bytes));
  slots_->Set(static_cast<double>(info.num_slots));
  return absl::OkStatus();
}

void ServingMetrics::Collect() {
  absl::MutexLock lock(&sources_mu_);
  if (stats_source_) {
    const EngineStats s = stats_source_();
    running_->Set(static_cast<double>(s.requests_running));
    waiting_->Set(static_cast<double>(s.requests_waiting));
    sessions_gpu_->Set(static_cast<double>(s.sessions_device));
    sessions_host_->Set(static_cast<double>(s.sessions_host));
    slots_->Set(static_cast<double>(s.slots_total));
    slots_used_->Set(static_cast<double>(s.slots_used));
    state_bytes_gpu_->Set(static_cast<double>(s.state_bytes_device));
    state_bytes_host_->Set(static_cast<double>(s.state_bytes_host));
    cache_entries_gpu_->Set(static_cast<double>(s.prefix_cache_device_entries));
    cache_entries_host_->Set(static_cast<double>(s.prefix_cache_host_entries));
    cache_bytes_gpu_->Set(static_cast<double>(s.prefix_cache_device_bytes));
    cache_bytes_host_->Set(static_cast<double>(s.prefix_cache_host_bytes));
    // The engine's totals only grow; add what they grew by since the last scrape.
    const std::pair<Counter*, int64_t> totals[] = {
        {cache_lookups_, s.prefix_cache_lookups},
        {cache_hits_, s.prefix_cache_hits},
        {cache_hit_tokens_, s.prefix_cache_hit_tokens},
        {cache_insertions_, s.prefix_cache_insertions},
        {cache_evictions_to_host_, s.prefix_cache_evictions_to_host},
        {cache_evictions_dropped_, s.prefix_cache_evictions_dropped},
    };
    for (const auto& [counter, total] : totals) {
      const double grown = static_cast<double>(total) - counter->Value();
      if (grown > 0) counter->IncrementBy(grown);
    }
  }
  if (gpu_source_) {
    absl::StatusOr<GpuMemoryInfo> mem = gpu_source_();
    if (mem.ok()) {
      gpu_used_->Set(static_cast<double>(mem->used_bytes));
      gpu_total_->Set(static_cast<double>(mem->total_bytes));
      gpu_error_logged_ = false;
    } else if (!gpu_error_logged_) {
      gpu_error_logged_ = true;
      logger_->Warning("cannot read GPU memory for metrics; keeping the last values",
                       {{"error", std::string(mem.status().ToString())}});
    }
  }
}

void ServingMetrics::RecordRpc(std::string_view protocol, std::string_view method,
                               absl::StatusCode code) {
  absl::StatusOr<Counter*> c = requests_->WithLabels({protocol, method, GrpcCodeName(code)});
  if (c.ok()) {
    (*c)->Increment();
  } else if (!rpc_label_error_logged_.exchange(true)) {
    logger_->Warning("an RPC was not counted in mamba_requests_total",
                     {{"method", method}, {"error", std::string(c.status().message())}});
  }
}

void ServingMetrics::OnStep(StepPhase phase, double seconds, int32_t batch_size,
                            int32_t prefill_tokens, int32_t /*decode_tokens*/) {
  Histogram* step = phase == StepPhase::kPrefill  ? step_prefill_
                    : phase == StepPhase::kDecode ? step_decode_
                                                  : step_mixed_;
  step->Observe(std::max(0.0, seconds));
  batch_size_->Observe(batch_size);
  if (prefill_tokens > 0) prompt_tokens_->Increment(static_cast<uint64_t>(prefill_tokens));
}

// Every generated token reaches exactly one of OnFirstToken and OnInterTokenLatency, so counting
// there keeps mamba_generated_tokens_total live during long generations.
void ServingMetrics::OnFirstToken(absl::Duration time_to_first_token) {
  ttft_->Observe(NonNegativeSeconds(time_to_first_token));
  generated_tokens_->Increment();
}

void ServingMetrics::OnInterTokenLatency(absl::Duration gap) {
  inter_token_->Observe(NonNegativeSeconds(gap));
  generated_tokens_->Increment();
}

void ServingMetrics::OnRequestFinished(const GenerationRequest& /*request*/,
                                       const GenerationResult& result) {
  e2e_->Observe(NonNegativeSeconds(result.timing.total));
  queue_time_->Observe(NonNegativeSeconds(result.timing.queue_time));
  prompt_tokens_hist_->Observe(result.usage.prompt_tokens);
  generated_tokens_hist_->Observe(result.usage.generated_tokens);
}

void ServingMetrics::OnSessionEviction(bool to_host) {
  (to_host ? evictions_to_host_ : evictions_dropped_)->Increment();
}

void ServingMetrics::OnResumedTokens(int64_t tokens) {
  if (tokens > 0) resumed_tokens_->Increment(static_cast<uint64_t>(tokens));
}

}  // namespace mamba::metrics
