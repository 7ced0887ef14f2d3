// Continuous batching. One scheduler thread per backend owns the backend, its state slots and the
// placement of session states; every engine step it advances each running sequence by one decode
// token and feeds chunks of pending prompts up to a token budget, so that a long prompt never
// stalls running streams for more than one chunk.
//
// Thread-safety: Enqueue(), Post(), Stats() and Stop() may be called from any thread; everything
// else runs on the scheduler thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "engine/backend.h"
#include "engine/engine.h"
#include "engine/generation.h"
#include "engine/session_store.h"
#include "engine/stop_matcher.h"
#include "engine/tokenizer/tokenizer.h"

namespace mamba {

// A request inside the scheduler: a generation, or the processing of a new session's prompt.
struct ScheduledRequest {
  GenerationRequest request;
  std::shared_ptr<GenerationStream> stream;  // null for session-prompt processing
  std::shared_ptr<Session> session;          // reserved (busy) for the request's lifetime
  // Called instead of streaming for session-prompt processing (generate == false).
  std::function<void(absl::Status)> on_processed;
  bool generate = true;

  absl::Time arrival;
  std::optional<absl::Time> first_scheduled;
  std::optional<absl::Time> first_token;
  absl::Time last_token_time;

  // Filled at admission.
  int32_t slot = -1;
  std::vector<int32_t> feed;   // session's pending tokens + prompt
  size_t fed = 0;              // prefix of `feed` already in the state
  int64_t cached_tokens = 0;   // session tokens before this request
  std::vector<int32_t> history;  // prompt + generated, for the repetition penalty
  int32_t generated = 0;
  int32_t last_token = -1;     // sampled, streamed, not yet fed
  std::optional<IncrementalDecoder> decoder;
  std::optional<StopMatcher> stops;
  bool done = false;
  bool stop_string_hit = false;
};

struct SchedulerOptions {
  int32_t max_running = 256;
  int32_t max_queue = 1024;
  int32_t max_prefill_tokens_per_step = 2048;
  int32_t max_unread_tokens = 256;
  int32_t tenant_max_running = 0;
  double host_state_memory_gb = 4.0;
  std::optional<int32_t> eos_id;
};

class Scheduler {
 public:
  Scheduler(Backend* backend, const Tokenizer* tokenizer, SessionStore* sessions,
            const SchedulerOptions& options, EngineObserver* observer);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  void Start();
  // Cancels everything still queued or running (streams finish with kCancelled) and joins.
  void Stop();

  // Queues a request. RESOURCE_EXHAUSTED when the queue or the tenant is at its limit; UNAVAILABLE
  // after Stop().
  absl::Status Enqueue(std::shared_ptr<ScheduledRequest> request);
  // Runs `command` on the scheduler thread (session operations that touch states). Returns false,
  // without running it, after Stop().
  bool Post(std::function<void()> command);

  // Scheduler-thread helpers for session commands -------------------------------------------
  // A free slot, evicting idle sessions (to host memory, or dropping them past the host budget)
  // when none is free; nullopt when every slot is held by running work.
  std::optional<int32_t> AcquireSlot();
  void FreeSlot(int32_t slot);
  // Makes room for `bytes` more of host state by dropping the oldest idle host sessions; false
  // when the budget cannot hold them even then.
  bool ReserveHostBytes(int64_t bytes, const Session* keep);
  void ReleaseHostBytes(int64_t bytes);
  bool ReserveHostBytesLocked(const SessionStore::Lock& held, int64_t bytes, const Session* keep);
  // Removes a session and frees what its state held (caller holds the store lock).
  void DropSessionLocked(const SessionStore::Lock& held, Session& s, bool evicted);
  // Ends the request (queued or running) that holds `session`, if any, with kCancelled.
  void CancelSessionRequest(const Session* session);
  int64_t host_bytes() const { return host_bytes_; }
  Backend* backend() { return backend_; }

  EngineStats Stats() const;

 private:
  void Run();
  void ExpireSessions(absl::Time now);
  void CheckCancellations(absl::Time now);
  void Admit(absl::Time now);
  // Binds the head request to a slot and builds its feed. False when no slot can be had now;
  // true with *error set when binding failed (the request must then end).
  bool TryBind(ScheduledRequest& r, absl::Status* error);
  void StepOnce();
  void HandleToken(ScheduledRequest& r, const SeqResult& result, absl::Time now);
  void Finish(ScheduledRequest& r, FinishReason reason, absl::Status status);
  void FinishAllWithError(const absl::Status& status);
  bool RunningForTenantAtLimit(const std::string& tenant) const;

  Backend* const backend_;
  const Tokenizer* const tokenizer_;
  SessionStore* const sessions_;
  const SchedulerOptions options_;
  EngineObserver* const observer_;
  const int64_t state_bytes_;
  const int64_t host_budget_bytes_;

  std::thread thread_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::deque<std::shared_ptr<ScheduledRequest>> inbox_;
  std::vector<std::function<void()>> commands_;
  std::map<std::string, int32_t> tenant_active_;  // queued + running per tenant (guarded by mu_)

  // Scheduler thread only.
  std::deque<std::shared_ptr<ScheduledRequest>> waiting_;
  std::vector<std::shared_ptr<ScheduledRequest>> running_;
  std::vector<int32_t> free_slots_;
  int64_t host_bytes_ = 0;
  absl::Time next_expiry_check_ = absl::InfinitePast();
  std::vector<SeqWork> work_;
  std::vector<SeqResult> results_;
  std::vector<ScheduledRequest*> work_owner_;

  // Counters (read by Stats() from any thread).
  std::atomic<int64_t> queued_{0};  // inbox + waiting
  std::atomic<int64_t> running_count_{0};
  std::atomic<int64_t> slots_used_{0};
  std::atomic<int64_t> host_bytes_stat_{0};
  std::atomic<int64_t> evictions_to_host_{0};
  std::atomic<int64_t> evictions_dropped_{0};
  std::atomic<int64_t> restores_{0};
  std::atomic<int64_t> resumed_tokens_{0};
  std::atomic<int64_t> prompt_tokens_{0};
  std::atomic<int64_t> generated_tokens_{0};
  std::atomic<int64_t> steps_{0};
};

}  // namespace mamba
