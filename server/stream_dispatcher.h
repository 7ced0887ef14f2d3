// Moves "output is ready" notifications off the engine's scheduler thread. The engine calls a
// stream's on_ready from the thread that steps the model; building and sending a response there
// (protobuf encoding, a gRPC write that may reach the socket) would make every running stream
// wait. So on_ready only queues the stream here, and dispatcher threads (one by default: see
// DefaultStreamThreads) do the work.
//
// Thread-safety: Post may be called from any thread; targets run on dispatcher threads, one at a
// time per Post (a target posted twice may run twice, possibly concurrently).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace mamba::server {

class ReadyTarget {
 public:
  virtual ~ReadyTarget() = default;
  // Called on a dispatcher thread after Post. Must not block.
  virtual void OnReady() = 0;
};

class StreamDispatcher {
 public:
  // Starts `threads` threads (at least one).
  explicit StreamDispatcher(int threads);
  // Stop().
  ~StreamDispatcher();
  StreamDispatcher(const StreamDispatcher&) = delete;
  StreamDispatcher& operator=(const StreamDispatcher&) = delete;

  // Queues `target`; the dispatcher keeps it alive until it has run. Cheap: one short lock, and
  // a wake-up only when a thread is idle.
  // After Stop the target runs on the calling thread.
  void Post(std::shared_ptr<ReadyTarget> target);
  // Post for a one-off piece of work.
  void PostTask(std::function<void()> task);

  // Runs what is queued, then joins the threads. Idempotent; Post may still be called after.
  void Stop();

  int threads() const { return static_cast<int>(threads_.size()); }
  // Targets run so far (for tests and metrics).
  uint64_t dispatched() const;

 private:
  void Run();

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<ReadyTarget>> queue_;
  int idle_ = 0;
  bool wake_pending_ = false;  // notified, and the woken thread has not run yet
  bool stopping_ = false;
  bool stopped_ = false;  // threads joined (guarded by stop_mu_)
  std::mutex stop_mu_;
  uint64_t dispatched_ = 0;
  std::vector<std::thread> threads_;
};

}  // namespace mamba::server
