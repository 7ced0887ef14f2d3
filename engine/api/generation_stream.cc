#include "engine/api/generation_stream.h"

#include <utility>

namespace mamba {

GenerationStream::GenerationStream(std::string request_id, std::function<void()> on_ready)
    : request_id_(std::move(request_id)), on_ready_(std::move(on_ready)) {}

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

void GenerationStream::Cancel() { cancelled_.store(true, std::memory_order_relaxed); }

bool GenerationStream::finished() const {
  std::lock_guard<std::mutex> lock(mu_);
  return finished_;
}

void GenerationStream::Push(const std::vector<int32_t>& ids, std::string_view text,
                            const std::vector<TokenLogprobs>* logprobs) {
  std::unique_lock<std::mutex> lock(mu_);
  if (finished_) return;
  pending_.token_ids.insert(pending_.token_ids.end(), ids.begin(), ids.end());
  pending_.text.append(text.data(), text.size());
  if (logprobs != nullptr) {
    pending_.logprobs.insert(pending_.logprobs.end(), logprobs->begin(), logprobs->end());
  }
  unread_.fetch_add(static_cast<int64_t>(ids.size()), std::memory_order_relaxed);
  has_pending_ = true;
  NotifyLocked(lock);
}

void GenerationStream::Finish(GenerationResult result) {
  std::unique_lock<std::mutex> lock(mu_);
  if (finished_) return;
  finished_ = true;
  pending_.finished = true;
  pending_.result = std::move(result);
  has_pending_ = true;
  NotifyLocked(lock);
}

void GenerationStream::NotifyLocked(std::unique_lock<std::mutex>& lock) {
  if (!consumer_waiting_) return;
  consumer_waiting_ = false;
  lock.unlock();
  if (on_ready_) on_ready_();
}

}  // namespace mamba
