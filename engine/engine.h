// The Engine facade: everything the server needs from the model side. It owns the tokenizer, the
// backend, the session store and the scheduler thread, and never blocks its callers on the
// device: Submit() and the session calls return at once (or complete through a callback).
//
// Thread-safety: every public method may be called from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/backend.h"
#include "engine/generation.h"
#include "engine/model_config.h"
#include "engine/tokenizer/tokenizer.h"

namespace mamba {

struct EngineOptions {
  std::string model = "";            // checkpoint folder or "synthetic:NAME"; "" = default model
  std::string tokenizer = "";        // tokenizer.json; "" = beside the model (byte-level if none)
  std::string backend = "auto";      // auto | cpu | cuda
  int32_t device = 0;                // GPU index for cuda
  std::string dtype = "auto";        // auto | f32 | f16 | bf16 (weights)
  std::string state_dtype = "f32";   // f32 | bf16 (cuda only)
  double gpu_memory_fraction = 0.9;  // of free memory after the weights, for state slots
  int32_t cpu_threads = 0;           // 0 = all cores
  int32_t num_slots = 0;             // state slots; 0 = backend's choice (from memory on cuda)
  uint64_t seed = 0;                 // synthetic weights; default sampling seeds derive from it
  bool deterministic = false;        // batch-invariant kernels (cuda)

  // Scheduler.
  int32_t max_running = 256;               // sequences advanced together (<= slots)
  int32_t max_queue = 1024;                // requests waiting for admission
  int32_t max_prefill_tokens_per_step = 2048;
  int32_t max_unread_tokens = 256;         // a stream further behind is paused
  // Sessions.
  int32_t max_sessions = 10000;
  absl::Duration session_ttl = absl::Minutes(30);   // default TTL of idle sessions
  double host_state_memory_gb = 4.0;                // budget for sessions moved to host memory
  int32_t tenant_max_sessions = 0;                  // 0 = unlimited
  int32_t tenant_max_running = 0;                   // 0 = unlimited
};

// What the server reports in GetModelInfo.
struct ModelInfo {
  std::string name;
  std::string source;
  std::string identity;
  ModelConfig config;
  int64_t num_parameters = 0;
  std::string backend;         // cpu | cuda
  std::string device;
  std::string weight_dtype;
  std::string state_dtype;
  int64_t weight_bytes = 0;
  int64_t state_bytes_per_session = 0;
  int32_t num_slots = 0;
  int32_t tokenizer_vocab_size = 0;
  std::string tokenizer_kind;  // bpe | byte
  std::optional<int32_t> eos_token_id;
  // Things the loader noticed but accepted (e.g. unexpected tensors it ignored); log them.
  std::vector<std::string> warnings;
};

// The consumer's handle on a running generation. Created by Engine::Submit; the engine pushes
// output, the consumer reads it and may cancel.
class GenerationStream {
 public:
  GenerationStream(const GenerationStream&) = delete;
  GenerationStream& operator=(const GenerationStream&) = delete;

  // Moves all output produced since the last call into *chunk. Returns false, and arranges for
  // `on_ready` to be called when more arrives, if there is nothing new. Never blocks.
  bool Read(GenerationChunk* chunk);
  // Asks the engine to stop this generation; it finishes with kCancelled within one step (the
  // tokens already produced stay in the session, if any). Idempotent.
  void Cancel();
  bool cancelled() const { return cancelled_.load(std::memory_order_relaxed); }
  const std::string& request_id() const { return request_id_; }

  // Engine side ------------------------------------------------------------------------------
  GenerationStream(std::string request_id, std::function<void()> on_ready);
  // Appends output; calls on_ready if the consumer was waiting.
  void Push(const std::vector<int32_t>& ids, std::string_view text,
            const std::vector<TokenLogprobs>* logprobs);
  void Finish(GenerationResult result);
  // Tokens pushed but not yet read.
  int64_t unread_tokens() const { return unread_.load(std::memory_order_relaxed); }
  bool finished() const;

 private:
  void NotifyLocked(std::unique_lock<std::mutex>& lock);

  const std::string request_id_;
  std::function<void()> on_ready_;
  mutable std::mutex mu_;
  GenerationChunk pending_;
  bool has_pending_ = false;
  bool consumer_waiting_ = true;
  bool finished_ = false;
  std::atomic<bool> cancelled_{false};
  std::atomic<int64_t> unread_{0};
};

enum class StateTier { kDevice, kHost };

struct SessionInfo {
  std::string session_id;
  std::string tenant;
  int64_t tokens = 0;            // tokens processed into the state so far
  absl::Time created;
  absl::Time last_used;
  absl::Time expires;
  absl::Duration ttl;
  StateTier tier = StateTier::kDevice;
  bool busy = false;             // a generation is running on it
};

struct SessionPage {
  std::vector<SessionInfo> sessions;
  std::string next_page_token;   // "" at the end
  int64_t total = 0;
};

// Counters and gauges the engine keeps; read by the metrics endpoint.
struct EngineStats {
  int64_t requests_running = 0;
  int64_t requests_waiting = 0;
  int64_t sessions_device = 0;
  int64_t sessions_host = 0;
  int64_t slots_total = 0;
  int64_t slots_used = 0;
  int64_t state_bytes_device = 0;
  int64_t state_bytes_host = 0;
  int64_t evictions_to_host = 0;
  int64_t evictions_dropped = 0;
  int64_t restores_from_host = 0;
  int64_t resumed_tokens = 0;
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
  int64_t steps = 0;
};

// Per-step and per-request notifications for metrics and logs. Called on the scheduler thread:
// implementations must be quick and must not call back into the engine.
class EngineObserver {
 public:
  virtual ~EngineObserver() = default;
  enum class StepPhase { kPrefill, kDecode, kMixed };
  virtual void OnStep(StepPhase phase, double seconds, int32_t batch_size, int32_t prefill_tokens,
                      int32_t decode_tokens) = 0;
  // A token was produced for a request; `since_previous` is the gap to its previous token
  // (zero for the first).
  virtual void OnFirstToken(absl::Duration time_to_first_token) = 0;
  virtual void OnInterTokenLatency(absl::Duration gap) = 0;
  virtual void OnRequestFinished(const GenerationRequest& request,
                                 const GenerationResult& result) = 0;
  virtual void OnSessionEviction(bool to_host) = 0;
  virtual void OnResumedTokens(int64_t tokens) = 0;
};

class Scheduler;
class SessionStore;

class Engine {
 public:
  // Loads the model and tokenizer, creates the backend and starts the scheduler thread.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(const EngineOptions& options,
                                                        EngineObserver* observer = nullptr);
  ~Engine();  // Shutdown() then joins.
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  const ModelInfo& model_info() const { return info_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  const EngineOptions& options() const { return options_; }

  // Queues a generation. Fails at once with RESOURCE_EXHAUSTED when the queue is full or the
  // tenant is at its limit, NOT_FOUND for an unknown, expired or evicted session,
  // FAILED_PRECONDITION when the session is busy, INVALID_ARGUMENT for out-of-range tokens.
  // `on_ready` is called (from an engine thread, without locks held) when output is available.
  // It can run after the consumer has read the final chunk, so whatever it touches must be kept
  // alive by the callback itself (shared or weak ownership), not by the consumer's scope.
  absl::StatusOr<std::shared_ptr<GenerationStream>> Submit(GenerationRequest request,
                                                           std::function<void()> on_ready);

  using SessionCallback = std::function<void(absl::StatusOr<SessionInfo>)>;
  // Creates a session, processing `prompt` (may be empty) into its state before `done` runs.
  // ttl zero = the default TTL. `requested_id` (32 lowercase hex digits, chosen by the client so
  // that a session-affinity proxy can route the creation to the replica that will own it) is
  // adopted when given: INVALID_ARGUMENT when malformed, ALREADY_EXISTS when taken; "" = a new
  // random id.
  void CreateSession(const std::string& tenant, std::vector<int32_t> prompt, absl::Duration ttl,
                     SessionCallback done, const std::string& requested_id = "");
  absl::StatusOr<SessionInfo> GetSession(const std::string& tenant, const std::string& id);
  // A new session with a copy of `id`'s state. The child's id keeps the parent's first 16 hex
  // digits (the part affinity proxies hash) and 64 fresh random bits, so it lands where the
  // parent's state is.
  void ForkSession(const std::string& tenant, const std::string& id, absl::Duration ttl,
                   SessionCallback done);
  // Closes a session (cancelling a generation running on it) and frees its state.
  void CloseSession(const std::string& tenant, const std::string& id,
                    std::function<void(absl::Status)> done);
  absl::StatusOr<SessionPage> ListSessions(const std::string& tenant, int32_t page_size,
                                           const std::string& page_token);
  // Serializes a session's state (versioned, checksummed, with the model identity).
  void ExportSession(const std::string& tenant, const std::string& id,
                     std::function<void(absl::StatusOr<std::string>)> done);
  // Creates a session from ExportSession bytes; refuses a different model's state.
  // `requested_id` as for CreateSession (a session moved between replicas keeps its id).
  void ImportSession(const std::string& tenant, std::string bytes, absl::Duration ttl,
                     SessionCallback done, const std::string& requested_id = "");

  EngineStats Stats() const;
  // Device memory in use and in total (bytes; zeros on the CPU backend). Any thread.
  void DeviceMemory(int64_t* used, int64_t* total) const { backend_->DeviceMemory(used, total); }

  // Stops admitting work, cancels every running generation and stops the scheduler. Idempotent.
  void Shutdown();

 private:
  Engine() = default;
  EngineOptions options_;
  ModelInfo info_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<SessionStore> sessions_;
  std::unique_ptr<Scheduler> scheduler_;  // declared last: stopped and destroyed first
};

}  // namespace mamba
