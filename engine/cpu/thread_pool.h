// A small persistent thread pool for the CPU backend's fork-join regions. A decode step runs about
// five regions per layer, each tens of microseconds of work, so starting one must cost far less:
// workers spin briefly on an atomic generation counter before they sleep on it.
//
// Work is handed out in chunks that threads claim one at a time, so the caller never waits for a
// thread that has not started (on a busy machine a worker may be descheduled for milliseconds):
// it claims the remaining chunks itself and waits only for chunks already being run. Which thread
// runs a chunk never changes a result in this backend.
//
// Thread-safety: the pool is driven by one thread at a time (the backend's owner).
#pragma once

#include <atomic>
#include <cstdint>
#include <thread>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"

namespace mamba::cpu {

class ThreadPool {
 public:
  // `num_threads` counts the calling thread: the pool starts num_threads - 1 workers. Values < 1
  // mean 1.
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return num_threads_; }

  // Calls fn(chunk, thread) once for every chunk in [0, num_chunks), spread over the threads
  // (`thread` in [0, num_threads()) names the one running it, for per-thread scratch; a thread
  // runs one chunk at a time), and returns when every call has returned.
  void RunChunks(int64_t num_chunks, absl::FunctionRef<void(int64_t, int)> fn);

  // Splits [0, n) into contiguous ranges whose boundaries are multiples of `align` (a few per
  // thread) and calls fn(begin, end) for each, in parallel.
  void ParallelFor(int64_t n, int64_t align, absl::FunctionRef<void(int64_t, int64_t)> fn);

 private:
  void WorkerLoop(int index);
  // Claims and runs chunks of generation `generation` until none is left.
  void RunClaims(uint32_t generation, int thread);

  const int num_threads_;
  std::vector<std::thread> workers_;
  uint32_t last_generation_ = 0;  // owner thread only
  // The current job. job_ and num_chunks_ are published before next_ (release) and read after a
  // claim on next_ (acquire) succeeds.
  std::atomic<const absl::FunctionRef<void(int64_t, int)>*> job_{nullptr};
  std::atomic<int64_t> num_chunks_{0};
  std::atomic<uint64_t> next_{0};        // generation << 32 | next unclaimed chunk
  std::atomic<int64_t> done_{0};         // chunks of the current generation finished
  std::atomic<uint32_t> generation_{0};  // wakes the workers
  std::atomic<bool> stop_{false};
};

}  // namespace mamba::cpu
