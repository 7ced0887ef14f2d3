// The prefix cache through the engine: every output with the cache equals the output without
// it, bit for bit (tokens and log-probabilities), while the cache's hits are where they should
// be: an exact repeat, a partial repeat, an interval checkpoint, a marked offset, a stateless
// client's next turn; under memory pressure; per tenant; after a cancelled prefill; on every
// model family; and it never keeps a slot a session or request needs. On the CPU backend, and on
// the CUDA backend in its deterministic mode where a GPU is visible (skipped elsewhere).
#include <chrono>
#include <future>
#include <limits>
#include <memory>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/backend_factory.h"
#include "engine/engine.h"
#include "gtest/gtest.h"

namespace mamba {
namespace {

using Tokens = std::vector<int32_t>;

// Where a test runs: a backend and a synthetic model.
struct Target {
  std::string backend;
  std::string model;
};

void PrintTo(const Target& target, std::ostream* os) { *os << target.backend << "/" << target.model; }

EngineOptions Options(const Target& target, bool cache) {
  EngineOptions o;
  o.model = "synthetic:" + target.model;
  o.seed = 5;
  o.backend.kind = target.backend;
  o.backend.num_slots = 16;
  o.backend.cpu_threads = 2;
  // Bitwise equality across different prefill splits needs the batch-invariant kernels on CUDA.
  o.backend.deterministic = target.backend == "cuda";
  o.scheduler.max_running = 16;
  o.scheduler.max_prefill_tokens_per_step = 256;
  o.prefix_cache.enabled = cache;
  o.prefix_cache.interval = 64;
  return o;
}

struct Outcome {
  Tokens tokens;
  std::vector<TokenLogprobs> logprobs;
  GenerationResult result;
};

// Runs `request` to the end (or until `cancel_after_steps` engine steps have passed: then cancels).
Outcome Generate(Engine& engine, GenerationRequest request, int64_t cancel_after_steps = -1) {
  absl::StatusOr<std::shared_ptr<GenerationStream>> stream = engine.Submit(request, [] {});
  EXPECT_TRUE(stream.ok()) << stream.status();
  Outcome run;
  if (!stream.ok()) return run;
  const int64_t steps0 = engine.Stats().steps;
  while (true) {
    GenerationChunk chunk;
    bool finished = false;
    while ((*stream)->Read(&chunk)) {
      run.tokens.insert(run.tokens.end(), chunk.token_ids.begin(), chunk.token_ids.end());
      run.logprobs.insert(run.logprobs.end(), chunk.logprobs.begin(), chunk.logprobs.end());
      if (chunk.finished) {
        run.result = chunk.result;
        finished = true;
      }
    }
    if (finished) return run;
    if (cancel_after_steps >= 0 && engine.Stats().steps - steps0 >= cancel_after_steps) {
      (*stream)->Cancel();
      cancel_after_steps = -1;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

// Creates a session and waits for the engine's answer (delivered on the scheduler thread).
absl::StatusOr<SessionInfo> CreateSession(Engine& engine, Tokens prompt) {
  std::promise<absl::StatusOr<SessionInfo>> answer;
  std::future<absl::StatusOr<SessionInfo>> result = answer.get_future();
  engine.CreateSession("", std::move(prompt), absl::ZeroDuration(),
                       [&answer](absl::StatusOr<SessionInfo> r) { answer.set_value(std::move(r)); });
  return result.get();
}

GenerationRequest Request(const Tokens& prompt, int max_tokens = 8, bool sampled = false) {
  GenerationRequest r;
  r.prompt = prompt;
  r.stopping.max_tokens = max_tokens;
  r.stopping.ignore_eos = true;
  r.logprobs = 3;
  if (sampled) {
    r.sampling.temperature = 0.8f;
    r.sampling.top_k = 20;
    r.sampling.seed = 99;
  }
  return r;
}

Tokens Random(int n, uint32_t seed) {
  Tokens t(n);
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (int32_t& v : t) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    v = static_cast<int32_t>((x >> 33) % 256);
  }
  return t;
}

Tokens Concat(std::initializer_list<Tokens> parts) {
  Tokens out;
  for (const Tokens& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

void ExpectSame(const Outcome& with, const Outcome& without) {
  ASSERT_EQ(with.tokens, without.tokens);
  ASSERT_EQ(with.logprobs.size(), without.logprobs.size());
  for (size_t i = 0; i < with.logprobs.size(); ++i) {
    // Bitwise: prefill is chunk-invariant (CPU; CUDA in deterministic mode), and a hit is a copy.
    EXPECT_EQ(with.logprobs[i].chosen.logprob, without.logprobs[i].chosen.logprob) << i;
    ASSERT_EQ(with.logprobs[i].top.size(), without.logprobs[i].top.size());
    for (size_t k = 0; k < with.logprobs[i].top.size(); ++k) {
      EXPECT_EQ(with.logprobs[i].top[k].token, without.logprobs[i].top[k].token);
      EXPECT_EQ(with.logprobs[i].top[k].logprob, without.logprobs[i].top[k].logprob);
    }
  }
  EXPECT_EQ(with.result.usage.prompt_tokens + with.result.usage.cached_tokens,
            without.result.usage.prompt_tokens);
}

class PrefixCacheEngineTest : public ::testing::TestWithParam<Target> {
 protected:
  void SetUp() override {
    if (GetParam().backend == "cuda" && !CudaAvailable()) GTEST_SKIP() << "no CUDA device visible";
    with_ = *Engine::Create(Options(GetParam(), true));
    without_ = *Engine::Create(Options(GetParam(), false));
  }
  // Runs `request` on both engines; checks they agree; returns the cached engine's run.
  Outcome Both(const GenerationRequest& request) {
    Outcome a = Generate(*with_, request);
    Outcome b = Generate(*without_, request);
    ExpectSame(a, b);
    EXPECT_EQ(b.result.usage.cached_tokens, 0);
    return a;
  }
  std::unique_ptr<Engine> with_;
  std::unique_ptr<Engine> without_;
};

TEST_P(PrefixCacheEngineTest, HitsWhereExpectedAndOutputsNeverChange) {
  const Tokens system = Random(150, 1);  // crosses the 64-token interval twice
  const Tokens question = Random(20, 2);

  // First time: nothing cached.
  Outcome first = Both(Request(Concat({system, question})));
  EXPECT_EQ(first.result.usage.cached_tokens, 0);
  // The same prompt again: everything but its last token.
  Outcome again = Both(Request(Concat({system, question}), 8, /*sampled=*/true));
  EXPECT_EQ(again.result.usage.cached_tokens, 169);
  EXPECT_EQ(again.result.usage.prompt_tokens, 1);
  // Another question after the same system prompt: the interval checkpoint at 128.
  Outcome other = Both(Request(Concat({system, Random(20, 3)})));
  EXPECT_EQ(other.result.usage.cached_tokens, 128);
  // A stateless client's next turn (the whole history resent): the end of the previous request.
  const Tokens turn2 = Concat({system, question, first.tokens, Random(10, 4)});
  Outcome next = Both(Request(turn2));
  EXPECT_EQ(next.result.usage.cached_tokens, 170 + 7);  // input + generated but the last
  // Marked offsets: the caller marks the end of the system prompt; a later request sharing only
  // that part hits it exactly.
  const Tokens system2 = Random(40, 5);
  GenerationRequest marked = Request(Concat({system2, Random(9, 6)}));
  marked.cache_checkpoints = {40};
  Both(marked);
  Outcome shared = Both(Request(Concat({system2, Random(9, 7)})));
  EXPECT_EQ(shared.result.usage.cached_tokens, 40);

  const EngineStats s = with_->Stats();
  EXPECT_GE(s.prefix_cache_hits, 4);
  EXPECT_GE(s.prefix_cache_hit_tokens, 169 + 128 + 177 + 40);
  EXPECT_GT(s.prefix_cache_device_entries, 0);
  EXPECT_EQ(s.slots_used, 0);  // the cache's slots are not counted as used
}

TEST_P(PrefixCacheEngineTest, EntriesArePerTenant) {
  const Tokens prompt = Random(200, 8);
  GenerationRequest alice = Request(prompt);
  alice.tenant = "alice";
  Both(alice);
  GenerationRequest bob = alice;
  bob.tenant = "bob";
  EXPECT_EQ(Both(bob).result.usage.cached_tokens, 0);
  EXPECT_EQ(Both(alice).result.usage.cached_tokens, 199);
}

TEST_P(PrefixCacheEngineTest, ACancelledPrefillLeavesOnlyCorrectEntries) {
  EngineOptions o = Options(GetParam(), true);
  o.scheduler.max_prefill_tokens_per_step = 16;  // the prompt takes many steps
  std::unique_ptr<Engine> engine = *Engine::Create(o);
  // 125 steps of prefill, so that a loaded machine's scheduling delays cannot let the request
  // finish before the cancellation after 4 steps (300 tokens did, once, beside a build).
  const Tokens prompt = Random(2000, 9);
  Outcome cancelled = Generate(*engine, Request(prompt), /*cancel_after_steps=*/4);
  EXPECT_EQ(cancelled.result.finish_reason, FinishReason::kCancelled);
  // Whatever was kept holds exactly the tokens it says: the same request now equals a fresh run.
  Outcome after = Generate(*engine, Request(prompt));
  ExpectSame(after, Generate(*without_, Request(prompt)));
  EXPECT_EQ(engine->Stats().slots_used, 0);
}

TEST_P(PrefixCacheEngineTest, MemoryPressureEvictsWhileRequestsHit) {
  EngineOptions o = Options(GetParam(), true);
  std::unique_ptr<Engine> probe = *Engine::Create(o);
  const double state_gb = static_cast<double>(probe->model_info().state_bytes_per_session) /
                          (1024.0 * 1024.0 * 1024.0);
  probe.reset();
  o.prefix_cache.device_gb = 3 * state_gb * 1.001;  // three entries on the device
  o.prefix_cache.host_gb = 2 * state_gb * 1.001;    // two in host memory
  std::unique_ptr<Engine> engine = *Engine::Create(o);
  for (int round = 0; round < 3; ++round) {
    for (uint32_t i = 0; i < 6; ++i) {
      const Tokens prompt = Concat({Random(30, 100 + i), Random(5, round * 10 + i)});
      Outcome a = Generate(*engine, Request(prompt));
      ExpectSame(a, Generate(*without_, Request(prompt)));
    }
  }
  const EngineStats s = engine->Stats();
  EXPECT_LE(s.prefix_cache_device_entries, 3);
  EXPECT_LE(s.prefix_cache_host_entries, 2);
  EXPECT_GT(s.prefix_cache_evictions_to_host + s.prefix_cache_evictions_dropped, 0);
  EXPECT_EQ(s.slots_used, 0);
}

TEST_P(PrefixCacheEngineTest, NeverKeepsASlotASessionOrRequestNeeds) {
  EngineOptions o = Options(GetParam(), true);
  o.backend.num_slots = 4;
  o.scheduler.max_running = 4;
  std::unique_ptr<Engine> engine = *Engine::Create(o);
  // Fill every slot with cache entries...
  for (uint32_t i = 0; i < 8; ++i) Generate(*engine, Request(Random(20, 200 + i), 2));
  EXPECT_GE(engine->Stats().prefix_cache_device_entries, 3);
  // ... then four sessions and a request at once: all get slots.
  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i) {
    absl::StatusOr<SessionInfo> info = CreateSession(*engine, Random(10, 300 + i));
    ASSERT_TRUE(info.ok()) << info.status();
    ids.push_back(info->session_id);
  }
  for (const std::string& id : ids) {
    GenerationRequest turn = Request({1, 2, 3}, 3);
    turn.session_id = id;
    Outcome r = Generate(*engine, turn);
    EXPECT_EQ(r.tokens.size(), 3u);
  }
  EXPECT_EQ(Generate(*engine, Request(Random(12, 400), 3)).tokens.size(), 3u);
}

TEST_P(PrefixCacheEngineTest, SessionsAndDisabledCacheDoNotUseIt) {
  const Tokens prompt = Random(40, 11);
  Both(Request(prompt));
  EXPECT_EQ(without_->Stats().prefix_cache_lookups, 0);
  EXPECT_EQ(without_->Stats().prefix_cache_insertions, 0);
  // A session's turn resumes from the session, never from the cache.
  absl::StatusOr<SessionInfo> info = CreateSession(*with_, {});
  ASSERT_TRUE(info.ok()) << info.status();
  GenerationRequest turn = Request(prompt);
  turn.session_id = info->session_id;
  EXPECT_EQ(Generate(*with_, turn).result.usage.cached_tokens, 0);
}

TEST(PrefixCacheEngineBoundaryTest, MarkedOffsetsAreChecked) {
  std::unique_ptr<Engine> engine = *Engine::Create(Options({"cpu", "tiny"}, true));
  GenerationRequest r = Request({1, 2, 3});
  r.cache_checkpoints = {4};
  absl::StatusOr<std::shared_ptr<GenerationStream>> s = engine->Submit(r, [] {});
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(s.status().message()).find("cache_checkpoints[0] = 4"), std::string::npos)
      << s.status();
  r.cache_checkpoints.assign(300, 1);
  EXPECT_EQ(engine->Submit(r, [] {}).status().code(), absl::StatusCode::kInvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(Families, PrefixCacheEngineTest,
                         ::testing::Values(Target{"cpu", "tiny"}, Target{"cpu", "mamba2-tiny"},
                                           Target{"cpu", "falcon-mamba-tiny"},
                                           Target{"cuda", "tiny"}, Target{"cuda", "mamba2-tiny"},
                                           Target{"cuda", "falcon-mamba-tiny"}),
                         [](const ::testing::TestParamInfo<Target>& param) {
                           std::string name = param.param.backend + "_" + param.param.model;
                           for (char& c : name) {
                             if (c == '-') c = '_';
                           }
                           return name;
                         });

}  // namespace
}  // namespace mamba
