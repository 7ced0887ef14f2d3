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
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

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

}  // namespace mamba
