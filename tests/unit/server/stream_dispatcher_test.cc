#include "server/stream_dispatcher.h"

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace mamba::server {
namespace {

class CountingTarget : public ReadyTarget {
 public:
  void OnReady() override {
    const std::thread::id self = std::this_thread::get_id();
    if (self == creator_) ran_on_caller_thread.store(true);
    count.fetch_add(1);
  }
  std::atomic<int> count{0};
  std::atomic<bool> ran_on_caller_thread{false};

 private:
  const std::thread::id creator_ = std::this_thread::get_id();
};

TEST(StreamDispatcherTest, RunsEveryPostOffTheCallersThread) {
  auto target = std::make_shared<CountingTarget>();
  {
    StreamDispatcher dispatcher(2);
    EXPECT_EQ(dispatcher.threads(), 2);
    for (int i = 0; i < 1000; ++i) dispatcher.Post(target);
  }  // the destructor runs what is queued
  EXPECT_EQ(target->count.load(), 1000);
  EXPECT_FALSE(target->ran_on_caller_thread.load());
}

TEST(StreamDispatcherTest, ManyProducersAndIdleWakeUps) {
  StreamDispatcher dispatcher(3);
  auto target = std::make_shared<CountingTarget>();
  std::vector<std::thread> producers;
  for (int p = 0; p < 4; ++p) {
    producers.emplace_back([&] {
      for (int i = 0; i < 500; ++i) {
        dispatcher.Post(target);
        // Let the dispatcher go idle now and then, so that wake-ups are exercised too.
        if (i % 100 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
    });
  }
  for (std::thread& t : producers) t.join();
  // Wait on dispatched(), not on the target's count: a worker counts a post as dispatched
  // only after OnReady returned, so the count can reach 2000 while the last post is still
  // being accounted for.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (dispatcher.dispatched() < 2000u && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(dispatcher.dispatched(), 2000u);
  EXPECT_EQ(target->count.load(), 2000);
}

// Posts made while a woken thread has not run yet send no further wake-up; that thread must
// still run them, and the next post after it went idle again must wake it: bursts after idle
// periods, many times, with one and two threads.
TEST(StreamDispatcherTest, BurstsAfterIdlePeriodsAllRun) {
  for (int threads : {1, 2}) {
    StreamDispatcher dispatcher(threads);
    auto target = std::make_shared<CountingTarget>();
    uint64_t posted = 0;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    for (int round = 0; round < 300; ++round) {
      for (int i = 0; i < 1 + round % 4; ++i, ++posted) dispatcher.Post(target);
      // Wait for the burst to run (a lost wake-up leaves it queued until the deadline), then
      // let the threads go idle.
      while (dispatcher.dispatched() < posted && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::yield();
      }
      ASSERT_EQ(dispatcher.dispatched(), posted) << "round " << round << ", " << threads
                                                 << " threads";
      if (round % 3 == 0) std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }
}

TEST(StreamDispatcherTest, KeepsTargetsAliveUntilTheyRan) {
  std::weak_ptr<CountingTarget> weak;
  {
    StreamDispatcher dispatcher(1);
    auto target = std::make_shared<CountingTarget>();
    weak = target;
    dispatcher.Post(std::move(target));
  }
  EXPECT_TRUE(weak.expired());  // ran, then released by the dispatcher
}

TEST(StreamDispatcherTest, AtLeastOneThread) {
  StreamDispatcher dispatcher(0);
  EXPECT_EQ(dispatcher.threads(), 1);
}

TEST(StreamDispatcherTest, StopRunsWhatIsQueuedThenPostsRunInline) {
  StreamDispatcher dispatcher(1);
  std::atomic<int> ran{0};
  std::atomic<bool> release{false};
  // The first task holds the only thread while ten more queue up behind it.
  dispatcher.PostTask([&] {
    while (!release.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    ran.fetch_add(1);
  });
  for (int i = 0; i < 10; ++i) dispatcher.PostTask([&] { ran.fetch_add(1); });
  std::thread stopper([&] { dispatcher.Stop(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  release = true;
  stopper.join();
  EXPECT_EQ(ran.load(), 11);  // Stop ran every queued task before returning
  dispatcher.Stop();          // idempotent

  // After Stop a post runs on the caller's thread, so nothing posted is ever lost.
  std::thread::id where;
  dispatcher.PostTask([&] { where = std::this_thread::get_id(); });
  EXPECT_EQ(where, std::this_thread::get_id());
  EXPECT_EQ(dispatcher.dispatched(), 12u);
}

}  // namespace
}  // namespace mamba::server
