#include "server/serving_state.h"

#include "absl/random/random.h"

namespace mamba::server {
namespace {

// SplitMix64 finalizer: consecutive counters become unrelated seeds.
uint64_t Mix(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace

ServingState::ServingState(const RequestLimits& limits, int stream_threads, int prompt_threads,
                           bool deterministic_seeds, uint64_t seed)
    : limits_(limits),
      deterministic_seeds_(deterministic_seeds),
      seed_counter_(Mix(seed)),
      dispatcher_(stream_threads),
      prompt_dispatcher_(prompt_threads) {}

void ServingState::SetEngine(Engine* engine) {
  engine_.store(engine, std::memory_order_release);
  ServingPhase expected = ServingPhase::kLoading;
  phase_.compare_exchange_strong(expected, ServingPhase::kServing);
}

void ServingState::BeginDrain() {
  ServingPhase p = phase_.load();
  while (p != ServingPhase::kDraining && p != ServingPhase::kStopped &&
         !phase_.compare_exchange_weak(p, ServingPhase::kDraining)) {
  }
}

void ServingState::Stop() {
  phase_.store(ServingPhase::kStopped);
  engine_.store(nullptr);
}

absl::StatusOr<Engine*> ServingState::EngineForNewCall() const {
  switch (phase()) {
    case ServingPhase::kLoading:
      return absl::UnavailableError("the model is still loading; retry when readiness is SERVING");
    case ServingPhase::kDraining:
    case ServingPhase::kStopped:
      return absl::UnavailableError("server is shutting down");
    case ServingPhase::kServing:
      break;
  }
  Engine* engine = engine_.load(std::memory_order_acquire);
  if (engine == nullptr) return absl::UnavailableError("server is shutting down");
  return engine;
}

ModelLimits ServingState::model_limits() const {
  ModelLimits m;
  Engine* engine = this->engine();
  if (engine != nullptr) {
    m.vocab_size = engine->model_info().config.vocab_size;
    m.tokenizer = &engine->tokenizer();
    m.max_token_bytes = engine->model_info().max_token_bytes;
    m.text_prefix_tokens = engine->model_info().text_prefix_tokens;
  }
  return m;
}

absl::StatusOr<std::string> ServingState::Authenticate(
    const grpc::CallbackServerContext& context) const {
  if (authenticator_ == nullptr) return std::string();
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) return authenticator_->Authenticate(std::nullopt);
  return authenticator_->Authenticate(std::string_view(it->second.data(), it->second.size()));
}

absl::StatusOr<std::string> ServingState::Authenticate(
    std::optional<std::string_view> authorization) const {
  if (authenticator_ == nullptr) return std::string();
  return authenticator_->Authenticate(authorization);
}

uint64_t ServingState::NextDefaultSeed() {
  if (deterministic_seeds_) return Mix(seed_counter_.fetch_add(1, std::memory_order_relaxed));
  thread_local absl::BitGen gen;
  return absl::Uniform<uint64_t>(gen);
}

void ServingState::Register(const std::shared_ptr<DrainableCall>& call) {
  std::lock_guard<std::mutex> lock(mu_);
  generations_[call.get()] = call;
}

void ServingState::Unregister(const DrainableCall* call) {
  bool now_idle;
  {
    std::lock_guard<std::mutex> lock(mu_);
    generations_.erase(call);
    now_idle = generations_.empty();
  }
  if (now_idle) idle_cv_.notify_all();
}

int64_t ServingState::active_generations() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int64_t>(generations_.size());
}

bool ServingState::WaitForNoGenerations(absl::Time deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  return idle_cv_.wait_until(lock, absl::ToChronoTime(deadline),
                             [this] { return generations_.empty(); });
}

std::vector<std::shared_ptr<DrainableCall>> ServingState::ActiveGenerations() const {
  std::vector<std::shared_ptr<DrainableCall>> calls;
  std::lock_guard<std::mutex> lock(mu_);
  calls.reserve(generations_.size());
  for (const auto& [ptr, weak] : generations_) {
    if (std::shared_ptr<DrainableCall> call = weak.lock()) calls.push_back(std::move(call));
  }
  return calls;
}

void ServingState::BeginEngineCall() {
  std::lock_guard<std::mutex> lock(mu_);
  ++engine_calls_;
}

void ServingState::EndEngineCall() {
  bool now_idle;
  {
    std::lock_guard<std::mutex> lock(mu_);
    now_idle = --engine_calls_ == 0;
  }
  if (now_idle) idle_cv_.notify_all();
}

bool ServingState::WaitForNoEngineCalls(absl::Time deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  return idle_cv_.wait_until(lock, absl::ToChronoTime(deadline),
                             [this] { return engine_calls_ == 0; });
}

}  // namespace mamba::server
