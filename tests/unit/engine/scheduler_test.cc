// Continuous batching through the real Engine on the CPU backend (synthetic:tiny): the DESIGN.md
// invariants under concurrency, sessions across host eviction, cancellation, capacity, fairness.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <thread>

#include "engine/engine.h"
#include "gtest/gtest.h"

namespace mamba {
namespace {

// Drains a stream, blocking the test thread (the engine never blocks).
struct Collected {
  std::vector<int32_t> tokens;
  std::string text;
  GenerationResult result;
  std::vector<absl::Time> token_times;
};

// Wakes a reader when its stream has output. The engine may call the callback after the reader
// has taken the final chunk and moved on (it runs outside the stream's lock), so the callback
// shares ownership of what it touches.
class Waiter {
 public:
  std::function<void()> Callback() {
    return [state = state_] {
      std::lock_guard<std::mutex> l(state->mu);
      ++state->signals;
      state->cv.notify_all();
    };
  }
  void Wait(int64_t* seen) {
    State& s = *state_;
    std::unique_lock<std::mutex> l(s.mu);
    s.cv.wait_for(l, std::chrono::milliseconds(50), [&] { return s.signals != *seen; });
    *seen = s.signals;
  }

 private:
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    int64_t signals = 0;
  };
  std::shared_ptr<State> state_ = std::make_shared<State>();
};

Collected Drain(GenerationStream& stream, Waiter& waiter) {
  Collected c;
  int64_t seen = 0;
  for (;;) {
    GenerationChunk chunk;
    if (!stream.Read(&chunk)) {
      waiter.Wait(&seen);
      continue;
    }
    const absl::Time now = absl::Now();
    for (int32_t t : chunk.token_ids) {
      c.tokens.push_back(t);
      c.token_times.push_back(now);
    }
    c.text += chunk.text;
    if (chunk.finished) {
      c.result = chunk.result;
      return c;
    }
  }
}

EngineOptions TinyOptions() {
  EngineOptions o;
  o.model = "synthetic:tiny";
  o.backend.kind = "cpu";
  o.seed = 7;
  o.backend.num_slots = 96;
  o.scheduler.max_running = 96;
  o.backend.cpu_threads = 2;
  return o;
}

std::vector<int32_t> RandomPrompt(std::mt19937& rng, int n) {
  std::uniform_int_distribution<int32_t> d(0, 255);
  std::vector<int32_t> p(static_cast<size_t>(n));
  for (auto& t : p) t = d(rng);
  return p;
}

GenerationRequest Greedy(std::vector<int32_t> prompt, int max_tokens) {
  GenerationRequest r;
  r.prompt = std::move(prompt);
  r.stopping.max_tokens = max_tokens;
  r.stopping.ignore_eos = true;
  return r;
}

Collected RunOne(Engine& engine, GenerationRequest r) {
  Waiter w;
  auto stream = engine.Submit(std::move(r), w.Callback());
  EXPECT_TRUE(stream.ok()) << stream.status();
  if (!stream.ok()) return {};
  return Drain(**stream, w);
}

SessionInfo CreateSession(Engine& engine, std::vector<int32_t> prompt) {
  std::promise<absl::StatusOr<SessionInfo>> p;
  engine.CreateSession("", std::move(prompt), absl::ZeroDuration(),
                       [&](absl::StatusOr<SessionInfo> s) { p.set_value(std::move(s)); });
  absl::StatusOr<SessionInfo> s = p.get_future().get();
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? *s : SessionInfo{};
}

TEST(SchedulerTest, BatchInvariance64ConcurrentGreedyRequests) {
  auto engine = Engine::Create(TinyOptions());
  ASSERT_TRUE(engine.ok()) << engine.status();
  std::mt19937 rng(1);
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < 64; ++i) {
    reqs.push_back(Greedy(RandomPrompt(rng, 1 + static_cast<int>(rng() % 90)),
                          1 + static_cast<int>(rng() % 40)));
  }
  // Alone, one at a time.
  std::vector<std::vector<int32_t>> alone;
  for (const auto& r : reqs) alone.push_back(RunOne(**engine, r).tokens);
  // All at once.
  std::vector<std::thread> threads;
  std::vector<std::vector<int32_t>> together(reqs.size());
  for (size_t i = 0; i < reqs.size(); ++i) {
    threads.emplace_back([&, i] { together[i] = RunOne(**engine, reqs[i]).tokens; });
  }
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_EQ(together[i], alone[i]) << "request " << i;
    EXPECT_EQ(static_cast<int>(alone[i].size()), reqs[i].stopping.max_tokens);
  }
}

// OpenAI's additive penalties on the CPU backend under greedy decoding: synthetic:tiny repeats
// the last prompt token forever; with a penalty it says that token once (the penalty counts what
// the request generated, not the prompt, which holds the token four times) and then moves on. A
// frequency penalty grows with each repeat, so no token comes back more than a few times; a
// presence penalty is paid once, so a token the model prefers by more than that repeats anyway.
TEST(SchedulerTest, AdditivePenaltiesStopGreedyRepetition) {
  auto engine = Engine::Create(TinyOptions());
  ASSERT_TRUE(engine.ok()) << engine.status();
  std::mt19937 rng(1);
  std::vector<int32_t> prompt = RandomPrompt(rng, 16);
  prompt.insert(prompt.end(), 4, prompt.back());
  const GenerationRequest plain = Greedy(prompt, 40);
  const std::vector<int32_t> base = RunOne(**engine, plain).tokens;
  ASSERT_EQ(base.size(), 40u);
  ASSERT_EQ(std::count(base.begin(), base.end(), base[0]), 40) << "the model no longer loops";
  auto most_repeats = [](const std::vector<int32_t>& tokens) {
    std::map<int32_t, int> counts;
    int most = 0;
    for (int32_t t : tokens) most = std::max(most, ++counts[t]);
    return most;
  };
  struct Case {
    const char* name;
    float frequency, presence;
    int max_repeats;
  };
  for (const Case& c : {Case{"frequency", 2.0f, 0.0f, 3}, Case{"both", 1.0f, 1.0f, 3},
                        Case{"presence", 0.0f, 2.0f, 40}}) {
    SCOPED_TRACE(c.name);
    GenerationRequest r = plain;
    r.sampling.frequency_penalty = c.frequency;
    r.sampling.presence_penalty = c.presence;
    const std::vector<int32_t> got = RunOne(**engine, r).tokens;
    ASSERT_EQ(got.size(), 40u);
    EXPECT_EQ(got[0], base[0]);
    EXPECT_EQ(std::count(got.begin(), got.end(), base[0]), 1);
    EXPECT_LE(most_repeats(got), c.max_repeats);
  }
}

TEST(SchedulerTest, ChunkedPrefillMatchesWholePrefill) {
  std::mt19937 rng(2);
  GenerationRequest r = Greedy(RandomPrompt(rng, 300), 20);
  EngineOptions small = TinyOptions();
  small.scheduler.max_prefill_tokens_per_step = 17;
  auto a = Engine::Create(TinyOptions());
  auto b = Engine::Create(small);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(RunOne(**a, r).tokens, RunOne(**b, r).tokens);
}

TEST(SchedulerTest, SessionTurnsEqualOneLongRequest) {
  auto engine = Engine::Create(TinyOptions());
  ASSERT_TRUE(engine.ok());
  std::mt19937 rng(3);
  const std::vector<int32_t> t1 = RandomPrompt(rng, 40), t2 = RandomPrompt(rng, 25);
  SessionInfo s = CreateSession(**engine, {});
  GenerationRequest turn1 = Greedy(t1, 12);
  turn1.session_id = s.session_id;
  Collected out1 = RunOne(**engine, turn1);
  ASSERT_EQ(out1.tokens.size(), 12u);
  GenerationRequest turn2 = Greedy(t2, 15);
  turn2.session_id = s.session_id;
  Collected out2 = RunOne(**engine, turn2);
  EXPECT_EQ(out2.result.usage.cached_tokens, 40 + 12);
  EXPECT_EQ(out2.result.usage.prompt_tokens, 25);

  std::vector<int32_t> all = t1;
  all.insert(all.end(), out1.tokens.begin(), out1.tokens.end());
  all.insert(all.end(), t2.begin(), t2.end());
  EXPECT_EQ(RunOne(**engine, Greedy(all, 15)).tokens, out2.tokens);
  auto info = (*engine)->GetSession("", s.session_id);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->tokens, 40 + 12 + 25 + 15);
  EXPECT_FALSE(info->busy);
}

TEST(SchedulerTest, ForkDivergesWithoutTouchingParent) {
  auto engine = Engine::Create(TinyOptions());
  ASSERT_TRUE(engine.ok());
  std::mt19937 rng(4);
  const std::vector<int32_t> t1 = RandomPrompt(rng, 30);
  SessionInfo parent = CreateSession(**engine, t1);
  EXPECT_EQ(parent.tokens, 30);
  std::promise<absl::StatusOr<SessionInfo>> p;
  (*engine)->ForkSession("", parent.session_id, absl::ZeroDuration(),
                         [&](absl::StatusOr<SessionInfo> s) { p.set_value(std::move(s)); });
  absl::StatusOr<SessionInfo> child = p.get_future().get();
  ASSERT_TRUE(child.ok()) << child.status();
  EXPECT_NE(child->session_id, parent.session_id);

  GenerationRequest on_child = Greedy(RandomPrompt(rng, 9), 10);
  on_child.session_id = child->session_id;
  RunOne(**engine, on_child);
  // The parent continues as if the child never ran.
  const std::vector<int32_t> t2 = RandomPrompt(rng, 7);
  GenerationRequest on_parent = Greedy(t2, 10);
  on_parent.session_id = parent.session_id;
  std::vector<int32_t> all = t1;
  all.insert(all.end(), t2.begin(), t2.end());
  EXPECT_EQ(RunOne(**engine, on_parent).tokens, RunOne(**engine, Greedy(all, 10)).tokens);
}

TEST(SchedulerTest, SessionMovedToHostAndBackContinuesExactly) {
  EngineOptions o = TinyOptions();
  o.backend.num_slots = 2;
  o.scheduler.max_running = 2;
  auto engine = Engine::Create(o);
  auto roomy = Engine::Create(TinyOptions());
  ASSERT_TRUE(engine.ok() && roomy.ok());
  std::mt19937 rng(5);
  std::vector<std::vector<int32_t>> first, second;
  for (int i = 0; i < 4; ++i) first.push_back(RandomPrompt(rng, 20 + i));
  for (int i = 0; i < 4; ++i) second.push_back(RandomPrompt(rng, 10 + i));
  auto run = [&](Engine& e) {
    std::vector<std::string> ids;
    std::vector<std::vector<int32_t>> outs;
    for (int i = 0; i < 4; ++i) ids.push_back(CreateSession(e, {}).session_id);
    for (int turn = 0; turn < 2; ++turn) {
      for (int i = 0; i < 4; ++i) {
        GenerationRequest r = Greedy(turn == 0 ? first[i] : second[i], 8);
        r.session_id = ids[static_cast<size_t>(i)];
        outs.push_back(RunOne(e, r).tokens);
      }
    }
    return outs;
  };
  EXPECT_EQ(run(**engine), run(**roomy));
  EngineStats stats = (*engine)->Stats();
  EXPECT_GT(stats.evictions_to_host, 0);
  EXPECT_GT(stats.restores_from_host, 0);
  EXPECT_EQ(stats.evictions_dropped, 0);
}

TEST(SchedulerTest, PastTheHostBudgetOldestIdleSessionsAreDropped) {
  EngineOptions o = TinyOptions();
  o.backend.num_slots = 1;
  o.scheduler.max_running = 1;
  o.sessions.host_state_memory_gb = 1e-9;  // less than one state: evictions drop
  auto engine = Engine::Create(o);
  ASSERT_TRUE(engine.ok());
  SessionInfo a = CreateSession(**engine, {1, 2, 3});
  SessionInfo b = CreateSession(**engine, {4, 5, 6});  // needs a's slot: a is dropped
  (void)b;
  GenerationRequest r = Greedy({7}, 2);
  r.session_id = a.session_id;
  Waiter w;
  auto stream = (*engine)->Submit(r, w.Callback());
  ASSERT_FALSE(stream.ok());
  EXPECT_EQ(stream.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(std::string(stream.status().message()).find("evicted"), std::string::npos);
  EXPECT_EQ((*engine)->Stats().evictions_dropped, 1);
}

TEST(SchedulerTest, BusySessionAndUnknownSession) {
  auto engine = Engine::Create(TinyOptions());
  ASSERT_TRUE(engine.ok());
  SessionInfo s = CreateSession(**engine, {});
  GenerationRequest r = Greedy({1, 2, 3}, 200);
  r.session_id = s.session_id;
  Waiter w;
  auto first = (*engine)->Submit(r, w.Callback());
  ASSERT_TRUE(first.ok());
  auto second = (*engine)->Submit(r, w.Callback());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  (*first)->Cancel();
  Collected c = Drain(**first, w);
  EXPECT_EQ(c.result.finish_reason, FinishReason::kCancelled);
  r.session_id = std::string(32, 'a');
  EXPECT_EQ((*engine)->Submit(r, w.Callback()).status().code(), absl::StatusCode::kNotFound);
}

TEST(SchedulerTest, CancelledTurnLeavesSessionConsistent) {
  auto engine = Engine::Create(TinyOptions());
  ASSERT_TRUE(engine.ok());
  std::mt19937 rng(6);
  const std::vector<int32_t> t1 = RandomPrompt(rng, 30), t2 = RandomPrompt(rng, 5);
  SessionInfo s = CreateSession(**engine, {});
  GenerationRequest r = Greedy(t1, 100000);
  r.session_id = s.session_id;
  Waiter w;
  auto stream = (*engine)->Submit(r, w.Callback());
  ASSERT_TRUE(stream.ok());
  std::vector<int32_t> streamed;
  int64_t seen = 0;
  while (streamed.size() < 10) {
    GenerationChunk chunk;
    if ((*stream)->Read(&chunk)) {
      streamed.insert(streamed.end(), chunk.token_ids.begin(), chunk.token_ids.end());
    } else {
      w.Wait(&seen);
    }
  }
  (*stream)->Cancel();
  Collected rest = Drain(**stream, w);
  streamed.insert(streamed.end(), rest.tokens.begin(), rest.tokens.end());
  EXPECT_EQ(rest.result.finish_reason, FinishReason::kCancelled);
  auto info = (*engine)->GetSession("", s.session_id);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->tokens, static_cast<int64_t>(t1.size() + streamed.size()));
  // The next turn continues from exactly what was streamed.
  GenerationRequest next = Greedy(t2, 10);
  next.session_id = s.session_id;
  std::vector<int32_t> all = t1;
  all.insert(all.end(), streamed.begin(), streamed.end());
  all.insert(all.end(), t2.begin(), t2.end());
  EXPECT_EQ(RunOne(**engine, next).tokens, RunOne(**engine, Greedy(all, 10)).tokens);
}

TEST(SchedulerTest, CancellingAThirdFreesSlotsForQueuedRequests) {
  EngineOptions o = TinyOptions();
  o.backend.num_slots = 12;
  o.scheduler.max_running = 12;
  auto engine = Engine::Create(o);
  ASSERT_TRUE(engine.ok());
  std::vector<std::shared_ptr<GenerationStream>> streams;
  std::vector<std::unique_ptr<Waiter>> waiters;
  for (int i = 0; i < 18; ++i) {
    waiters.push_back(std::make_unique<Waiter>());
    auto s = (*engine)->Submit(Greedy({static_cast<int32_t>(i % 256), 1, 2}, 100000),
                               waiters.back()->Callback());
    ASSERT_TRUE(s.ok());
    streams.push_back(*s);
  }
  // 12 run, 6 wait for slots.
  for (int tries = 0; tries < 200 && (*engine)->Stats().requests_running < 12; ++tries) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ((*engine)->Stats().requests_running, 12);
  EXPECT_EQ((*engine)->Stats().requests_waiting, 6);
  for (int i = 0; i < 6; ++i) streams[static_cast<size_t>(i)]->Cancel();
  for (int tries = 0; tries < 300 && (*engine)->Stats().requests_waiting > 0; ++tries) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ((*engine)->Stats().requests_waiting, 0);
  EXPECT_EQ((*engine)->Stats().requests_running, 12);
  for (auto& s : streams) s->Cancel();
  for (size_t i = 0; i < streams.size(); ++i) Drain(*streams[i], *waiters[i]);
  for (int tries = 0; tries < 100 && (*engine)->Stats().slots_used > 0; ++tries) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ((*engine)->Stats().slots_used, 0);
  EXPECT_EQ((*engine)->Stats().requests_running, 0);
}

TEST(SchedulerTest, QueueOverflowIsResourceExhausted) {
  EngineOptions o = TinyOptions();
  o.backend.num_slots = 1;
  o.scheduler.max_running = 1;
  o.scheduler.max_queue = 3;
  auto engine = Engine::Create(o);
  ASSERT_TRUE(engine.ok());
  Waiter w;
  std::vector<std::shared_ptr<GenerationStream>> streams;
  absl::Status overflow;
  for (int i = 0; i < 10 && overflow.ok(); ++i) {
    auto s = (*engine)->Submit(Greedy({1, 2, 3}, 100000), w.Callback());
    if (s.ok()) {
      streams.push_back(*s);
    } else {
      overflow = s.status();
    }
  }
  EXPECT_EQ(overflow.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(std::string(overflow.message()).find("capacity"), std::string::npos);
  for (auto& s : streams) s->Cancel();
  for (auto& s : streams) Drain(*s, w);
}

TEST(SchedulerTest, DeadlineEndsTheRequest) {
  auto engine = Engine::Create(TinyOptions());
  ASSERT_TRUE(engine.ok());
  GenerationRequest r = Greedy({1, 2, 3}, 1000000);
  r.deadline = absl::Now() + absl::Milliseconds(200);
  Collected c = RunOne(**engine, r);
  EXPECT_EQ(c.result.finish_reason, FinishReason::kCancelled);
  EXPECT_EQ(c.result.status.code(), absl::StatusCode::kDeadlineExceeded);
}

// Consumers are woken after a step's output has been pushed to every stream of the step, not
// stream by stream while it is delivered: a stream thread woken by the first finds the rest ready
// too (and is woken once a step). Two requests queued behind a long prompt start in the same
// step; each one's first wake-up must find the other's first token already pushed.
TEST(SchedulerTest, ConsumersAreWokenAfterTheWholeStepIsDelivered) {
  for (int attempt = 0; attempt < 5; ++attempt) {
    auto engine = Engine::Create(TinyOptions());
    ASSERT_TRUE(engine.ok());
    std::mt19937 rng(static_cast<uint32_t>(attempt));
    Waiter long_waiter;
    auto long_prompt =
        (*engine)->Submit(Greedy(RandomPrompt(rng, 6000), 1), long_waiter.Callback());
    ASSERT_TRUE(long_prompt.ok());
    struct Seen {
      std::mutex mu;
      std::weak_ptr<GenerationStream> streams[2];  // weak: the callbacks hold Seen
      int64_t step[2] = {-1, -1};         // the engine's step count at the first wake-up
      int64_t other_unread[2] = {-1, -1};  // the other stream's unread tokens then
    };
    auto seen = std::make_shared<Seen>();
    Engine* e = engine->get();
    auto callback = [seen, e](int i) {
      return [seen, e, i] {
        std::lock_guard<std::mutex> l(seen->mu);
        std::shared_ptr<GenerationStream> other = seen->streams[1 - i].lock();
        if (seen->step[i] >= 0 || other == nullptr) return;
        seen->step[i] = e->Stats().steps;
        seen->other_unread[i] = other->unread_tokens();
      };
    };
    std::shared_ptr<GenerationStream> a, b;
    {
      // Both streams are known to the callbacks before either can run.
      std::lock_guard<std::mutex> l(seen->mu);
      auto sa = e->Submit(Greedy({1, 2}, 3), callback(0));
      auto sb = e->Submit(Greedy({3, 4}, 3), callback(1));
      ASSERT_TRUE(sa.ok() && sb.ok());
      a = *sa;
      b = *sb;
      seen->streams[0] = a;
      seen->streams[1] = b;
    }
    Drain(**long_prompt, long_waiter);
    for (int i = 0; i < 200; ++i) {
      {
        std::lock_guard<std::mutex> l(seen->mu);
        if (seen->step[0] >= 0 && seen->step[1] >= 0) break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    std::lock_guard<std::mutex> l(seen->mu);
    ASSERT_GE(seen->step[0], 0);
    ASSERT_GE(seen->step[1], 0);
    if (seen->step[0] != seen->step[1]) continue;  // not started together: try again
    EXPECT_GE(seen->other_unread[0], 1);
    EXPECT_GE(seen->other_unread[1], 1);
    return;
  }
  GTEST_SKIP() << "the two requests never started in the same step";
}

TEST(SchedulerTest, SlowReaderIsPausedOthersContinue) {
  EngineOptions o = TinyOptions();
  o.scheduler.max_unread_tokens = 8;
  auto engine = Engine::Create(o);
  ASSERT_TRUE(engine.ok());
  Waiter w;
  auto slow = (*engine)->Submit(Greedy({1, 2}, 1000), w.Callback());
  ASSERT_TRUE(slow.ok());
  Collected fast = RunOne(**engine, Greedy({3, 4}, 200));
  EXPECT_EQ(fast.tokens.size(), 200u);
  // The slow stream never read: it is held at the unread bound (plus the step in flight).
  EXPECT_LE((*slow)->unread_tokens(), 9);
  Collected rest = Drain(**slow, w);  // reading lets it finish
  EXPECT_EQ(rest.tokens.size(), 1000u);
}

TEST(SchedulerTest, LongPromptDoesNotStallRunningStreams) {
  EngineOptions o = TinyOptions();
  o.scheduler.max_prefill_tokens_per_step = 256;
  auto engine = Engine::Create(o);
  ASSERT_TRUE(engine.ok());
  std::mt19937 rng(8);
  std::vector<std::shared_ptr<GenerationStream>> streams;
  std::vector<std::unique_ptr<Waiter>> waiters;
  for (int i = 0; i < 32; ++i) {
    waiters.push_back(std::make_unique<Waiter>());
    auto s = (*engine)->Submit(Greedy({static_cast<int32_t>(i), 5, 6}, 1000000),
                               waiters.back()->Callback());
    ASSERT_TRUE(s.ok());
    streams.push_back(*s);
  }
  std::vector<Collected> results(32);
  std::vector<std::thread> readers;
  for (size_t i = 0; i < 32; ++i) {
    readers.emplace_back([&, i] { results[i] = Drain(*streams[i], *waiters[i]); });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const absl::Time t0 = absl::Now();
  Collected big = RunOne(**engine, Greedy(RandomPrompt(rng, 4096), 4));
  const absl::Time t1 = absl::Now();
  for (auto& s : streams) s->Cancel();
  for (auto& t : readers) t.join();
  EXPECT_EQ(big.tokens.size(), 4u);
  // The 4096-token prompt takes 16 chunks; meanwhile every stream keeps receiving tokens, so no
  // gap between two of a stream's tokens comes near the whole prefill's duration.
  absl::Duration worst = absl::ZeroDuration();
  for (const Collected& c : results) {
    int during = 0;
    for (size_t k = 1; k < c.token_times.size(); ++k) {
      if (c.token_times[k] < t0 || c.token_times[k - 1] > t1) continue;
      worst = std::max(worst, c.token_times[k] - c.token_times[k - 1]);
      ++during;
    }
    EXPECT_GT(during, 8);
  }
  EXPECT_LT(worst, (t1 - t0) / 4) << "worst gap " << worst << ", prefill " << (t1 - t0);
}

}  // namespace
}  // namespace mamba
