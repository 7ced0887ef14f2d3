#include "engine/cpu/thread_pool.h"

#include <immintrin.h>

#include <algorithm>

namespace mamba::cpu {
namespace {

// About 100 microseconds of spinning before sleeping: long enough to bridge the gaps between the
// regions of one step, short enough not to burn a core while the backend is idle.
constexpr int kSpinIterations = 4000;
// Chunks per thread in ParallelFor: enough that a late or preempted thread costs little, few
// enough that each chunk still streams a long contiguous range of weights.
constexpr int64_t kChunksPerThread = 4;

}  // namespace

ThreadPool::ThreadPool(int num_threads) : num_threads_(std::max(num_threads, 1)) {
  workers_.reserve(num_threads_ - 1);
  for (int i = 1; i < num_threads_; ++i) workers_.emplace_back([this, i] { WorkerLoop(i); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true, std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_release);
  generation_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::WorkerLoop(int index) {
  uint32_t seen = 0;
  for (;;) {
    uint32_t g = generation_.load(std::memory_order_acquire);
    for (int spin = 0; g == seen; ++spin) {
      if (spin < kSpinIterations) {
        _mm_pause();
      } else {
        generation_.wait(seen, std::memory_order_acquire);
      }
      g = generation_.load(std::memory_order_acquire);
    }
    seen = g;
    if (stop_.load(std::memory_order_acquire)) return;
    RunClaims(g, index);
  }
}

void ThreadPool::RunClaims(uint32_t generation, int thread) {
  uint64_t v = next_.load(std::memory_order_acquire);
  for (;;) {
    if (static_cast<uint32_t>(v >> 32) != generation) return;  // that job is over
    const int64_t n = num_chunks_.load(std::memory_order_acquire);
    const int64_t chunk = static_cast<int64_t>(v & 0xffffffffu);
    if (chunk >= n) return;
    if (!next_.compare_exchange_weak(v, v + 1, std::memory_order_acq_rel)) continue;
    // The claim succeeded, so the job is still current and stays so until this chunk is done.
    (*job_.load(std::memory_order_relaxed))(chunk, thread);
    if (done_.fetch_add(1, std::memory_order_acq_rel) + 1 == n) done_.notify_all();
    v = next_.load(std::memory_order_acquire);
  }
}

void ThreadPool::RunChunks(int64_t num_chunks, absl::FunctionRef<void(int64_t, int)> fn) {
  if (num_chunks <= 0) return;
  if (num_threads_ == 1 || num_chunks == 1) {
    for (int64_t c = 0; c < num_chunks; ++c) fn(c, 0);
    return;
  }
  const uint32_t g = ++last_generation_;
  // Close the previous job's claims before changing num_chunks_: a worker that read next_ just
  // before could otherwise pair that old position with the new, larger count, claim a chunk that
  // does not exist (running the new job out of range and counting it in done_, so that this
  // call returns early or never). After this store its claim fails; a worker that sees the new
  // count (acquire) also sees this store.
  next_.store((static_cast<uint64_t>(g) << 32) | 0xffffffffu, std::memory_order_relaxed);
  job_.store(&fn, std::memory_order_relaxed);
  num_chunks_.store(num_chunks, std::memory_order_release);
  done_.store(0, std::memory_order_relaxed);
  next_.store(static_cast<uint64_t>(g) << 32, std::memory_order_release);
  generation_.store(g, std::memory_order_release);
  generation_.notify_all();
  RunClaims(g, 0);
  int64_t done = done_.load(std::memory_order_acquire);
  for (int spin = 0; done != num_chunks; ++spin) {
    if (spin < kSpinIterations) {
      _mm_pause();
    } else {
      done_.wait(done, std::memory_order_acquire);
    }
    done = done_.load(std::memory_order_acquire);
  }
}

void ThreadPool::ParallelFor(int64_t n, int64_t align,
                             absl::FunctionRef<void(int64_t, int64_t)> fn) {
  if (n <= 0) return;
  align = std::max<int64_t>(align, 1);
  const int64_t units = (n + align - 1) / align;
  const int64_t chunks = std::min<int64_t>(units, num_threads_ * kChunksPerThread);
  const int64_t per = (units + chunks - 1) / chunks * align;
  const int64_t used = (n + per - 1) / per;
  RunChunks(used, [&](int64_t c, int) { fn(c * per, std::min(n, (c + 1) * per)); });
}

}  // namespace mamba::cpu
