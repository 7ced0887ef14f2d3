#include "server/stream_dispatcher.h"

#include <utility>

namespace mamba::server {

StreamDispatcher::StreamDispatcher(int threads) {
  if (threads < 1) threads = 1;
  threads_.reserve(threads);
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Run(); });
}

StreamDispatcher::~StreamDispatcher() { Stop(); }

void StreamDispatcher::Stop() {
  std::lock_guard<std::mutex> stop_lock(stop_mu_);
  if (stopped_) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (std::thread& t : threads_) t.join();
  stopped_ = true;
}

namespace {

class TaskTarget final : public ReadyTarget {
 public:
  explicit TaskTarget(std::function<void()> task) : task_(std::move(task)) {}
  void OnReady() override { task_(); }

 private:
  std::function<void()> task_;
};

}  // namespace

void StreamDispatcher::PostTask(std::function<void()> task) {
  Post(std::make_shared<TaskTarget>(std::move(task)));
}

void StreamDispatcher::Post(std::shared_ptr<ReadyTarget> target) {
  bool wake;
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (stopping_) {
      // No thread will take it (they may be gone already): run it here.
      lock.unlock();
      target->OnReady();
      lock.lock();
      ++dispatched_;
      return;
    }
    queue_.push_back(std::move(target));
    // A busy thread picks the entry up when it loops; only sleeping threads need a wake-up,
    // which saves a futex call per token when the dispatcher keeps up. And one wake-up at a
    // time: until the woken thread runs (it then drains the queue), later entries need none.
    wake = idle_ > 0 && !wake_pending_;
    if (wake) wake_pending_ = true;
  }
  if (wake) cv_.notify_one();
}

uint64_t StreamDispatcher::dispatched() const {
  std::lock_guard<std::mutex> lock(mu_);
  return dispatched_;
}

void StreamDispatcher::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    if (queue_.empty()) {
      if (stopping_) return;
      // Every return from the wait clears the pending wake-up, also when another thread has
      // taken the entry meanwhile (a predicate wait would sleep again with it still set, and
      // no later post would wake anyone). The loop then looks at the queue again.
      ++idle_;
      cv_.wait(lock);
      --idle_;
      wake_pending_ = false;
      continue;
    }
    std::shared_ptr<ReadyTarget> target = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    target->OnReady();
    target.reset();  // may destroy the target; do it outside the lock
    lock.lock();
    ++dispatched_;
  }
}

}  // namespace mamba::server
