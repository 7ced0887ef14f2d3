// Continuous batching. One scheduler thread per backend owns the backend and runs every state
// move (through StatePlacement); every engine step it advances each running sequence by one
// decode token and feeds chunks of pending prompts up to a token budget, so that a long prompt
// never stalls running streams for more than one chunk. A sequence that fails in a step (its
// SeqResult says so) ends alone; the others continue.
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
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "engine/api/engine_observer.h"
#include "engine/api/engine_stats.h"
#include "engine/api/generation.h"
#include "engine/api/generation_stream.h"
#include "engine/backend/backend.h"
#include "engine/prefix_cache/prefix_cache.h"
#include "engine/scheduler/scheduler_options.h"
#include "engine/scheduler/stop_matcher.h"
#include "engine/sessions/session_store.h"
#include "engine/sessions/state_placement.h"
#include "engine/tokenizer/tokenizer.h"

namespace mamba::scheduler {

// A request inside the scheduler: a generation, or the processing of a new session's prompt.
struct ScheduledRequest {
  GenerationRequest request;
  std::shared_ptr<GenerationStream> stream;    // null for session-prompt processing
  std::shared_ptr<sessions::Session> session;  // reserved (busy) for the request's lifetime
  // Called instead of streaming for session-prompt processing (generate == false).
  std::function<void(absl::Status)> on_processed;
  bool generate = true;

  absl::Time arrival;
  std::optional<absl::Time> first_scheduled;
  std::optional<absl::Time> first_token;
  absl::Time last_token_time;

  // Filled at admission.
  int32_t slot = -1;
  std::vector<int32_t> feed;     // session's pending tokens + prompt
  size_t fed = 0;                // prefix of `feed` already in the state
  int64_t cached_tokens = 0;     // session tokens before this request
  std::vector<int32_t> history;  // prompt + generated, for the repetition penalty
  // Prefix cache (stateless generations when the cache is on): the tokens the slot's state holds
  // exactly (a hit's prefix, then every token fed), and the positions in the prompt after which a
  // snapshot is kept (ascending; the next one is checkpoints[next_checkpoint]).
  bool cached = false;
  std::vector<int32_t> state_tokens;
  std::vector<int64_t> checkpoints;
  size_t next_checkpoint = 0;
  int32_t generated = 0;
  int32_t last_token = -1;  // sampled, streamed, not yet fed
  std::optional<tokenizer::IncrementalDecoder> decoder;
  std::optional<StopMatcher> stops;
  bool done = false;
  bool stop_string_hit = false;
};

class Scheduler {
 public:
  // None of the pointers is owned; all must outlive the scheduler. `observer` and `cache` may be
  // null (no prefix cache).
  Scheduler(backend::Backend* backend, const tokenizer::Tokenizer* tokenizer,
            sessions::SessionStore* sessions, sessions::StatePlacement* placement,
            const SchedulerOptions& options, EngineObserver* observer,
            prefix_cache::PrefixCache* cache = nullptr);
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
  // Ends the request (queued or running) that holds `session`, if any, with kCancelled.
  void CancelSessionRequest(const sessions::Session* session);
  backend::Backend* backend() { return backend_; }
  sessions::StatePlacement* placement() { return placement_; }

  // Requests, tokens and steps; the session and slot counters are StatePlacement's.
  EngineStats Stats() const;

  // Incremented by every GenerationStream::Cancel of this scheduler's streams.
  const std::shared_ptr<std::atomic<uint64_t>>& cancel_signal() const { return cancel_signal_; }

 private:
  void Run();
  // Ends the requests that were cancelled or passed their deadline (or whose session closed).
  // Walks them only when a stream was cancelled since the last walk or the earliest deadline
  // has come, not every step.
  void CheckCancellations(absl::Time now);
  void Admit(absl::Time now);
  // Binds the head request to a slot and builds its feed. False when no slot can be had now;
  // true with *error set when binding failed (the request must then end).
  bool TryBind(ScheduledRequest& r, absl::Status* error);
  // Ends `r` with kError and `status`, dropping its session when its state may have changed.
  void FailSequence(ScheduledRequest& r, const absl::Status& status);
  void StepOnce();
  void HandleToken(ScheduledRequest& r, const backend::SeqResult& result, absl::Time now);
  void Finish(ScheduledRequest& r, FinishReason reason, absl::Status status);
  void FinishAllWithError(const absl::Status& status);
  bool RunningForTenantAtLimit(const std::string& tenant) const;
  // The positions of `r`'s prompt after which the cache keeps a state (see ScheduledRequest).
  void PlanCheckpoints(ScheduledRequest& r);
  // Output to `r`'s stream: its consumer is woken now, or after the step's delivery.
  void Push(ScheduledRequest& r, absl::Span<const int32_t> ids, std::string_view text,
            const std::vector<TokenLogprobs>* logprobs);
  void FinishStream(ScheduledRequest& r, GenerationResult result);

  backend::Backend* const backend_;
  const tokenizer::Tokenizer* const tokenizer_;
  sessions::SessionStore* const sessions_;
  sessions::StatePlacement* const placement_;
  const SchedulerOptions options_;
  EngineObserver* const observer_;
  prefix_cache::PrefixCache* const cache_;  // null or disabled: no prefix cache
  const std::optional<int32_t> eos_id_;

  std::thread thread_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::deque<std::shared_ptr<ScheduledRequest>> inbox_;
  std::vector<std::function<void()>> commands_;
  std::map<std::string, int32_t> tenant_active_;  // queued + running per tenant (guarded by mu_)

  const std::shared_ptr<std::atomic<uint64_t>> cancel_signal_ =
      std::make_shared<std::atomic<uint64_t>>(0);

  // Scheduler thread only.
  uint64_t cancels_seen_ = 0;                              // cancel_signal_ at the last walk
  absl::Time next_deadline_ = absl::InfiniteFuture();  // the earliest deadline not yet passed
  std::deque<std::shared_ptr<ScheduledRequest>> waiting_;
  std::vector<std::shared_ptr<ScheduledRequest>> running_;
  absl::Time next_expiry_check_ = absl::InfinitePast();
  std::vector<backend::SeqWork> work_;
  std::vector<backend::SeqResult> results_;
  std::vector<ScheduledRequest*> work_owner_;
  // While a step's results are delivered, the streams whose consumers are to be woken (each
  // once, after the whole step: one wake-up of a stream thread per step, not per token).
  bool delivering_ = false;
  std::vector<std::shared_ptr<GenerationStream>> ready_;

  // Counters (read by Stats() from any thread).
  std::atomic<int64_t> queued_{0};  // inbox + waiting
  std::atomic<int64_t> running_count_{0};
  std::atomic<int64_t> resumed_tokens_{0};
  std::atomic<int64_t> prompt_tokens_{0};
  std::atomic<int64_t> generated_tokens_{0};
  std::atomic<int64_t> steps_{0};
};

}  // namespace mamba::scheduler
