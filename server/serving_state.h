// What every service shares: the engine (once loaded), the server's phase (loading, serving,
// draining, stopped), request limits, and the set of running Generate calls that a drain has to
// wait for and finally cancel.
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/engine.h"
#include "grpcpp/server_context.h"
#include "server/metrics/request_log.h"
#include "server/request_validation.h"
#include "server/stream_dispatcher.h"
#include "server/token_auth.h"

namespace mamba::server {

enum class ServingPhase { kLoading, kServing, kDraining, kStopped };

// A running Generate call, as the drain sees it.
class DrainableCall {
 public:
  virtual ~DrainableCall() = default;
  // Asks the engine to stop the generation; the call then ends with FINISH_REASON_CANCELLED.
  virtual void CancelGeneration() = 0;
  // Ends the call now with `status`, whatever the engine does (the last resort of a drain).
  virtual void ForceFinish(const grpc::Status& status) = 0;
};

// Called once per finished RPC (request log line, request counter), on a gRPC or engine thread;
// must be quick.
using CallObserver = std::function<void(const metrics::RequestRecord&)>;

class ServingState {
 public:
  ServingState(const RequestLimits& limits, int stream_threads, int prompt_threads,
               bool deterministic_seeds, uint64_t seed);
  ServingState(const ServingState&) = delete;
  ServingState& operator=(const ServingState&) = delete;

  const RequestLimits& limits() const { return limits_; }
  // Threads that send stream output (Generate) ...
  StreamDispatcher& dispatcher() { return dispatcher_; }
  // ... and the thread that builds session replies (encoding an exported state, the response
  // protobuf), so that neither runs on the engine's scheduler thread that completes them.
  StreamDispatcher& reply_dispatcher() { return reply_dispatcher_; }
  // ... and the threads that tokenize long text prompts, so that a large prompt does not hold a
  // gRPC callback thread (short ones are tokenized inline: see kInlinePromptBytes).
  StreamDispatcher& prompt_dispatcher() { return prompt_dispatcher_; }

  // Makes `engine` (not owned; it must outlive the calls) available and the phase kServing.
  void SetEngine(Engine* engine);
  ServingPhase phase() const { return phase_.load(std::memory_order_acquire); }
  // Enters kDraining: new calls are refused from now on.
  void BeginDrain();
  // Enters kStopped and forgets the engine.
  void Stop();

  // The engine if the server takes new calls, else UNAVAILABLE saying why ("the model is still
  // loading", "server is shutting down").
  absl::StatusOr<Engine*> EngineForNewCall() const;
  // The engine for work that belongs to a call already admitted (null once stopped).
  Engine* engine() const { return engine_.load(std::memory_order_acquire); }
  ModelLimits model_limits() const;

  // Authenticates a call and returns the tenant it acts for. Without an authenticator every call
  // belongs to the same tenant, "" (the engine's "no tenant"); with one, the call's bearer token
  // names the tenant, and a missing or unknown token is UNAUTHENTICATED. Services call this
  // before any other work on the request.
  absl::StatusOr<std::string> Authenticate(const grpc::CallbackServerContext& context) const;
  // The same for an HTTP request's Authorization header (nullopt when it sent none).
  absl::StatusOr<std::string> Authenticate(std::optional<std::string_view> authorization) const;
  // Turns bearer-token authentication on (null: off). Set before serving.
  void set_authenticator(std::shared_ptr<const TokenAuthenticator> authenticator) {
    authenticator_ = std::move(authenticator);
  }

  // Seed for a request that did not choose one: random, or with deterministic seeds a sequence
  // derived from --seed (reproducible runs in tests and benchmarks).
  uint64_t NextDefaultSeed();

  // Running Generate calls.
  void Register(const std::shared_ptr<DrainableCall>& call);
  void Unregister(const DrainableCall* call);
  int64_t active_generations() const;
  // Waits until no Generate call is running or `deadline` passes; true when none is left.
  bool WaitForNoGenerations(absl::Time deadline);
  // The calls running now (strong references, taken outside any lock of theirs).
  std::vector<std::shared_ptr<DrainableCall>> ActiveGenerations() const;

  // Every finished call is reported here (metrics, request log). Set before serving.
  void set_call_observer(CallObserver observer) { call_observer_ = std::move(observer); }
  void ReportCall(const metrics::RequestRecord& record) const {
    if (call_observer_) call_observer_(record);
  }

  // Unary calls waiting for an engine callback; Shutdown waits for them.
  void BeginEngineCall();
  void EndEngineCall();
  bool WaitForNoEngineCalls(absl::Time deadline);

 private:
  const RequestLimits limits_;
  const bool deterministic_seeds_;
  std::atomic<uint64_t> seed_counter_;
  std::atomic<ServingPhase> phase_{ServingPhase::kLoading};
  std::atomic<Engine*> engine_{nullptr};
  CallObserver call_observer_;
  std::shared_ptr<const TokenAuthenticator> authenticator_;

  mutable std::mutex mu_;
  std::condition_variable idle_cv_;
  std::unordered_map<const DrainableCall*, std::weak_ptr<DrainableCall>> generations_;
  int64_t engine_calls_ = 0;

  // Last members: their threads stop before the rest of the state goes away.
  StreamDispatcher dispatcher_;
  StreamDispatcher reply_dispatcher_{1};
  StreamDispatcher prompt_dispatcher_;
};

}  // namespace mamba::server
