// The consumer's handle on a running generation: the engine pushes output into it from the
// scheduler thread, the consumer (a gRPC reactor, a test, the benchmark) reads it and may cancel.
// Output the consumer has not read yet is merged, so a slow reader gets larger chunks instead of
// an unbounded queue.
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/types/span.h"
#include "engine/api/generation.h"

namespace mamba {

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
  // `cancel_signal` (optional) is incremented by every Cancel, so that the engine looks for
  // cancelled streams only when there may be one.
  GenerationStream(std::string request_id, std::function<void()> on_ready,
                   std::shared_ptr<std::atomic<uint64_t>> cancel_signal = nullptr);
  // Appends output; calls on_ready if the consumer was waiting. With `defer`, on_ready is not
  // called here: the return value says whether it is due, and the caller then calls NotifyReady
  // (the scheduler delivers a whole step's tokens first and wakes the consumers afterwards, so
  // that their threads are woken once a step instead of once a token).
  bool Push(absl::Span<const int32_t> ids, std::string_view text,
            const std::vector<TokenLogprobs>* logprobs, bool defer = false);
  bool Finish(GenerationResult result, bool defer = false);
  // Calls on_ready (after a deferred Push or Finish that returned true).
  void NotifyReady();
  // Tokens pushed but not yet read.
  int64_t unread_tokens() const { return unread_.load(std::memory_order_relaxed); }
  bool finished() const;

 private:
  // Whether on_ready is due (the consumer was waiting); calls it unless `defer`.
  bool NotifyLocked(std::unique_lock<std::mutex>& lock, bool defer);

  const std::string request_id_;
  std::function<void()> on_ready_;
  const std::shared_ptr<std::atomic<uint64_t>> cancel_signal_;
  mutable std::mutex mu_;
  GenerationChunk pending_;
  bool has_pending_ = false;
  bool consumer_waiting_ = true;
  bool finished_ = false;
  std::atomic<bool> cancelled_{false};
  std::atomic<int64_t> unread_{0};
};

}  // namespace mamba
