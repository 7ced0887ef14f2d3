#include "engine/api/generation_stream.h"

#include <utility>

namespace mamba {

GenerationStream::GenerationStream(std::string request_id, std::function<void()> on_ready,
                                   std::shared_ptr<std::atomic<uint64_t>> cancel_signal)
    : request_id_(std::move(request_id)),
      on_ready_(std::move(on_ready)),
      cancel_signal_(std::move(cancel_signal)) {}

bool GenerationStream::Read(GenerationChunk* chunk) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!has_pending_) {
    consumer_waiting_ = !finished_;
    return false;
  }
  *chunk = std::move(pending_);
  pending_ = GenerationChunk();
  has_pending_ = false;
  consumer_waiting_ = false;
  unread_.fetch_sub(static_cast<int64_t>(chunk->token_ids.size()), std::memory_order_relaxed);
  return true;
}

void GenerationStream::Cancel() {
  cancelled_.store(true, std::memory_order_relaxed);
  if (cancel_signal_ != nullptr) cancel_signal_->fetch_add(1, std::memory_order_release);
}

bool GenerationStream::finished() const {
  std::lock_guard<std::mutex> lock(mu_);
  return finished_;
}

bool GenerationStream::Push(absl::Span<const int32_t> ids, std::string_view text,
                            const std::vector<TokenLogprobs>* logprobs, bool defer) {
  std::unique_lock<std::mutex> lock(mu_);
  if (finished_) return false;
  pending_.token_ids.insert(pending_.token_ids.end(), ids.begin(), ids.end());
  pending_.text.append(text.data(), text.size());
  if (logprobs != nullptr) {
    pending_.logprobs.insert(pending_.logprobs.end(), logprobs->begin(), logprobs->end());
  }
  unread_.fetch_add(static_cast<int64_t>(ids.size()), std::memory_order_relaxed);
  has_pending_ = true;
  return NotifyLocked(lock, defer);
}

bool GenerationStream::Finish(GenerationResult result, bool defer) {
  std::unique_lock<std::mutex> lock(mu_);
  if (finished_) return false;
  finished_ = true;
  pending_.finished = true;
  pending_.result = std::move(result);
  has_pending_ = true;
  return NotifyLocked(lock, defer);
}

void GenerationStream::NotifyReady() {
  if (on_ready_) on_ready_();
}

bool GenerationStream::NotifyLocked(std::unique_lock<std::mutex>& lock, bool defer) {
  if (!consumer_waiting_) return false;
  consumer_waiting_ = false;
  lock.unlock();
  if (!defer) NotifyReady();
  return true;
}

}  // namespace mamba
