// The Engine facade: everything a protocol (the gRPC server, a benchmark, a test) needs from the
// model side, and nothing else. It owns the tokenizer, the backend, the sessions and the scheduler
// thread, and never blocks its callers on the device: Submit() and the session calls return at
// once (or complete through a callback).
//
// The engine's boundary is where requests are checked: Submit validates a request once (token
// ids, stop token ids, max_tokens, and the sampling rules of sampling::ValidateSamplingParams),
// so everything behind it (scheduler, backends) works on valid requests only. Protocols keep
// only their own limits (message sizes, field encodings, --max_prompt_tokens).
//
// Callbacks (`on_ready`, the session callbacks) run on the scheduler thread: they must be quick
// and must not call back into the engine; build replies elsewhere.
//
// Thread-safety: every public method may be called from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/api/engine_observer.h"
#include "engine/api/engine_stats.h"
#include "engine/api/generation.h"
#include "engine/api/generation_stream.h"
#include "engine/api/model_info.h"
#include "engine/api/session_info.h"
#include "engine/backend/backend.h"
#include "engine/prefix_cache/prefix_cache_options.h"
#include "engine/scheduler/scheduler_options.h"
#include "engine/sessions/session_codec.h"
#include "engine/sessions/session_options.h"
#include "engine/tokenizer/tokenizer.h"

namespace mamba {

namespace prefix_cache {
class PrefixCache;
}
namespace scheduler {
class Scheduler;
}
namespace sessions {
class SessionKeys;
class SessionStore;
class StatePlacement;
}  // namespace sessions

// Every option of an engine. The nested structs carry their own defaults (written once, where
// they are used); a flag parser or a test fills the fields it cares about.
struct EngineOptions {
  std::string model;                // checkpoint folder or "synthetic:NAME"; "" = the default model
  std::string tokenizer;            // tokenizer.json; "" = beside the model (byte-level if none)
  std::string dtype = "auto";       // weights: auto | f32 | f16 | bf16
  uint64_t seed = 0;                // synthetic weights
  backend::BackendOptions backend;  // kind, device, slots, threads, state dtype, ...
  scheduler::SchedulerOptions scheduler;  // batching and queue limits
  sessions::SessionOptions sessions;      // session limits, TTL, host memory for idle states
  prefix_cache::PrefixCacheOptions prefix_cache;  // states reused by stateless requests
};

// The special tokens `tokenizer` puts before a text when it adds special tokens (a BOS), found by
// encoding a one-character text with and without them; empty when it adds none in front.
std::vector<int32_t> TextPrefixTokens(const tokenizer::Tokenizer& tokenizer);

class Engine {
 public:
  // Loads the model and tokenizer, creates the backend and starts the scheduler thread.
  // `observer` (may be null) must outlive the engine.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(const EngineOptions& options,
                                                        EngineObserver* observer = nullptr);
  ~Engine();  // Shutdown() then joins.
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  const ModelInfo& model_info() const { return info_; }
  const tokenizer::Tokenizer& tokenizer() const { return *tokenizer_; }
  const EngineOptions& options() const { return options_; }

  // Queues a generation. Fails at once with INVALID_ARGUMENT for an invalid request (the message
  // names the field, the value and what is allowed), RESOURCE_EXHAUSTED when the queue is full or
  // the tenant is at its limit, NOT_FOUND for an unknown, expired or evicted session,
  // FAILED_PRECONDITION when the session is busy. `on_ready` is called (from an engine thread,
  // without locks held) when output is available. It can run after the consumer has read the
  // final chunk, so whatever it touches must be kept alive by the callback itself (shared or weak
  // ownership), not by the consumer's scope.
  absl::StatusOr<std::shared_ptr<GenerationStream>> Submit(GenerationRequest request,
                                                           std::function<void()> on_ready);

  using SessionCallback = std::function<void(absl::StatusOr<SessionInfo>)>;
  // Creates a session, processing `prompt` (may be empty) into its state before `done` runs.
  // ttl zero = the default TTL. `requested_id` (32 lowercase hex digits, chosen by the client so
  // that a session-affinity proxy can route the creation to the replica that will own it) is
  // adopted when given: INVALID_ARGUMENT when malformed, ALREADY_EXISTS when taken; "" = a new
  // random id.
  // When `deadline` passes before the prompt is processed, the session is closed and `done` gets
  // DEADLINE_EXCEEDED.
  void CreateSession(const std::string& tenant, std::vector<int32_t> prompt, absl::Duration ttl,
                     SessionCallback done, const std::string& requested_id = "",
                     absl::Time deadline = absl::InfiniteFuture());
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
  // Copies a session's state out, with what the export format records (tokens, pending tokens,
  // model identity, state layout and dtype). `done` gets the raw snapshot on the scheduler
  // thread: encode it (EncodeExport) and build the reply on another thread, so that streams do
  // not wait for it.
  void ExportSession(const std::string& tenant, const std::string& id,
                     std::function<void(absl::StatusOr<sessions::SessionSnapshot>)> done);
  // The export bytes of `snapshot`: versioned and signed with the session key
  // (sessions/session_codec.h). Any thread.
  std::string EncodeExport(const sessions::SessionSnapshot& snapshot) const;
  // Creates a session from ExportSession bytes. INVALID_ARGUMENT for bytes that are malformed,
  // altered, or not signed with one of this server's session keys, and for contents out of range
  // (non-finite or huge state values, token counts, pending tokens); FAILED_PRECONDITION for
  // another model's state. Decoding and checking run on the calling thread. `requested_id` as for
  // CreateSession (a session moved between replicas keeps its id).
  void ImportSession(const std::string& tenant, std::string bytes, absl::Duration ttl,
                     SessionCallback done, const std::string& requested_id = "");

  EngineStats Stats() const;
  // Device memory in use and in total (bytes; zeros on the CPU backend). Any thread.
  void DeviceMemory(int64_t* used, int64_t* total) const { backend_->DeviceMemory(used, total); }

  // Stops admitting work, cancels every running generation and stops the scheduler. Idempotent.
  void Shutdown();

 private:
  Engine();
  EngineOptions options_;
  ModelInfo info_;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer_;
  std::unique_ptr<backend::Backend> backend_;
  std::unique_ptr<sessions::SessionKeys> keys_;
  std::unique_ptr<sessions::SessionStore> sessions_;
  std::unique_ptr<sessions::StatePlacement> placement_;
  std::unique_ptr<prefix_cache::PrefixCache> cache_;  // before the scheduler, after placement
  std::unique_ptr<scheduler::Scheduler> scheduler_;  // declared last: stopped and destroyed first
};

}  // namespace mamba
