// The engine's boundary and fault isolation, on the CPU backend (synthetic:tiny):
// - requests that break a rule stop at Submit with INVALID_ARGUMENT (the sampling rules are the
//   engine's, written once), while valid streams run on;
// - a sequence that fails inside a step (here: it feeds a token whose embedding is +inf, so its
//   logits are NaN) fails alone: the streams beside it finish normally with exactly the tokens
//   they would have produced anyway, and their sessions stay intact; its own session is marked
//   broken;
// - an import whose contents are out of range is refused before it reaches a slot.
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <future>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "engine/model/model_loader.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/model/temp_checkpoint.h"

namespace mamba {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

EngineOptions TinyOptions() {
  EngineOptions o;
  o.model = "synthetic:tiny";
  o.seed = 7;
  o.backend.kind = "cpu";
  o.backend.num_slots = 32;
  o.backend.cpu_threads = 2;
  o.scheduler.max_running = 32;
  return o;
}

// Blocks the test thread on a stream (the engine never blocks).
struct Reader {
  std::shared_ptr<GenerationStream> stream;
  std::shared_ptr<std::pair<std::mutex, std::condition_variable>> wake =
      std::make_shared<std::pair<std::mutex, std::condition_variable>>();
  std::vector<int32_t> tokens;
  GenerationResult result;
  bool finished = false;

  std::function<void()> Callback() {
    return [w = wake] {
      std::lock_guard<std::mutex> l(w->first);
      w->second.notify_all();
    };
  }
  // Reads what is there; true once finished.
  bool Poll() {
    GenerationChunk chunk;
    while (stream->Read(&chunk)) {
      tokens.insert(tokens.end(), chunk.token_ids.begin(), chunk.token_ids.end());
      if (chunk.finished) {
        result = chunk.result;
        finished = true;
      }
    }
    return finished;
  }
  void WaitFor(size_t n_tokens) {
    while (!Poll() && tokens.size() < n_tokens) {
      std::unique_lock<std::mutex> l(wake->first);
      wake->second.wait_for(l, std::chrono::milliseconds(5));
    }
  }
  void Drain() { WaitFor(std::numeric_limits<size_t>::max()); }
};

// Sequences fed this token fail: its embedding row is +inf (WritePoisonedCheckpoint). Healthy
// requests stop if they ever sample it, so that they never feed it.
constexpr int32_t kPoisonToken = 200;

GenerationRequest Greedy(std::vector<int32_t> prompt, int max_tokens,
                         const std::string& session = "") {
  GenerationRequest r;
  r.prompt = std::move(prompt);
  r.session_id = session;
  r.stopping.max_tokens = max_tokens;
  r.stopping.ignore_eos = true;
  r.stopping.stop_token_ids = {kPoisonToken};
  return r;
}

SessionInfo Create(Engine& engine, std::vector<int32_t> prompt) {
  std::promise<absl::StatusOr<SessionInfo>> p;
  engine.CreateSession("", std::move(prompt), absl::ZeroDuration(),
                       [&](absl::StatusOr<SessionInfo> s) { p.set_value(std::move(s)); });
  absl::StatusOr<SessionInfo> s = p.get_future().get();
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? *s : SessionInfo{};
}

SessionInfo Fork(Engine& engine, const std::string& id) {
  std::promise<absl::StatusOr<SessionInfo>> p;
  engine.ForkSession("", id, absl::ZeroDuration(),
                     [&](absl::StatusOr<SessionInfo> s) { p.set_value(std::move(s)); });
  absl::StatusOr<SessionInfo> s = p.get_future().get();
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? *s : SessionInfo{};
}

TEST(EngineIsolationTest, InvalidRequestsStopAtTheBoundaryWhileOthersRun) {
  absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Create(TinyOptions());
  ASSERT_TRUE(engine.ok()) << engine.status();
  Reader running;
  absl::StatusOr<std::shared_ptr<GenerationStream>> s =
      (*engine)->Submit(Greedy({1, 2, 3}, 200), running.Callback());
  ASSERT_TRUE(s.ok());
  running.stream = *s;
  running.WaitFor(1);

  struct Row {
    const char* name;
    std::function<void(GenerationRequest*)> mutate;
    const char* message;
  };
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<Row> rows = {
      {"nan temperature", [](auto* r) { r->sampling.temperature = NAN; }, "sampling.temperature"},
      {"inf temperature", [&](auto* r) { r->sampling.temperature = inf; }, "sampling.temperature"},
      {"inf repetition penalty", [&](auto* r) { r->sampling.repetition_penalty = inf; },
       "sampling.repetition_penalty"},
      {"nan frequency penalty", [](auto* r) { r->sampling.frequency_penalty = NAN; },
       "sampling.frequency_penalty"},
      {"presence penalty 3", [](auto* r) { r->sampling.presence_penalty = 3.0f; },
       "sampling.presence_penalty"},
      {"top_p 0", [](auto* r) { r->sampling.top_p = 0.0f; }, "sampling.top_p"},
      {"negative top_k", [](auto* r) { r->sampling.top_k = -3; }, "sampling.top_k"},
      {"21 logprobs", [](auto* r) { r->logprobs = 21; }, "logprobs = 21"},
      {"token outside the vocabulary", [](auto* r) { r->prompt.push_back(4000); }, "prompt[3]"},
      {"stop token outside the vocabulary", [](auto* r) { r->stopping.stop_token_ids = {-2}; },
       "stop_token_ids"},
      {"zero max_tokens", [](auto* r) { r->stopping.max_tokens = 0; }, "max_tokens"},
      {"empty prompt", [](auto* r) { r->prompt.clear(); }, "empty"},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.name);
    GenerationRequest r = Greedy({1, 2, 3}, 4);
    row.mutate(&r);
    absl::StatusOr<std::shared_ptr<GenerationStream>> bad = (*engine)->Submit(std::move(r), [] {});
    ASSERT_FALSE(bad.ok());
    EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(bad.status().message()), HasSubstr(row.message));
  }
  running.Drain();
  EXPECT_TRUE(running.result.status.ok()) << running.result.status;
  EXPECT_EQ(running.result.finish_reason, FinishReason::kLength);
  EXPECT_EQ(running.tokens.size(), 200u);
}

TEST(EngineIsolationTest, APoisonedSequenceFailsAloneAmongEightLiveStreams) {
  testing::TempDir dir;
  ASSERT_TRUE(testing::WritePoisonedCheckpoint(dir.path(), kPoisonToken).ok());
  EngineOptions options = TinyOptions();
  options.model = dir.path();
  absl::StatusOr<std::unique_ptr<Engine>> created = Engine::Create(options);
  ASSERT_TRUE(created.ok()) << created.status();
  Engine& engine = **created;

  // Eight healthy sessions, and a twin of each (a fork) to know what each should produce.
  std::vector<SessionInfo> healthy, twins;
  for (int i = 0; i < 8; ++i) {
    healthy.push_back(Create(engine, {static_cast<int32_t>(10 + i), 20, 30}));
    twins.push_back(Fork(engine, healthy.back().session_id));
  }
  const SessionInfo victim = Create(engine, {5, 6, 7});

  // The eight streams run; once each has produced a token, a turn that feeds the poisoned token
  // joins their steps.
  constexpr int kTokens = 48;
  std::vector<Reader> readers(8);
  for (int i = 0; i < 8; ++i) {
    absl::StatusOr<std::shared_ptr<GenerationStream>> s =
        engine.Submit(Greedy({40, 41}, kTokens, healthy[i].session_id), readers[i].Callback());
    ASSERT_TRUE(s.ok()) << s.status();
    readers[i].stream = *s;
  }
  for (Reader& r : readers) r.WaitFor(1);
  Reader bad;
  absl::StatusOr<std::shared_ptr<GenerationStream>> s =
      engine.Submit(Greedy({40, kPoisonToken}, kTokens, victim.session_id), bad.Callback());
  ASSERT_TRUE(s.ok()) << s.status();
  bad.stream = *s;
  bad.Drain();
  for (Reader& r : readers) r.Drain();

  // The poisoned sequence failed alone, with a message about itself only.
  EXPECT_EQ(bad.result.finish_reason, FinishReason::kError);
  EXPECT_EQ(bad.result.status.code(), absl::StatusCode::kInternal) << bad.result.status;
  EXPECT_THAT(std::string(bad.result.status.message()), HasSubstr("not finite"));
  EXPECT_THAT(std::string(bad.result.status.message()), Not(HasSubstr("slot")));
  EXPECT_THAT(std::string(bad.result.status.message()), Not(HasSubstr("work item")));
  EXPECT_TRUE(bad.tokens.empty());
  // Its session is marked broken: still visible, refusing new work with the reason, closable.
  absl::StatusOr<SessionInfo> broken = engine.GetSession("", victim.session_id);
  ASSERT_TRUE(broken.ok()) << broken.status();
  EXPECT_THAT(broken->broken_reason, HasSubstr("not finite"));
  absl::StatusOr<std::shared_ptr<GenerationStream>> again =
      engine.Submit(Greedy({1}, 4, victim.session_id), [] {});
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(again.status().message()), HasSubstr("can no longer be used"));
  std::promise<absl::Status> closed;
  engine.CloseSession("", victim.session_id, [&](absl::Status st) { closed.set_value(st); });
  EXPECT_TRUE(closed.get_future().get().ok());

  // Every other stream finished normally with exactly its twin's tokens, and kept its session.
  for (int i = 0; i < 8; ++i) {
    SCOPED_TRACE(i);
    EXPECT_TRUE(readers[i].result.status.ok()) << readers[i].result.status;
    Reader twin;
    absl::StatusOr<std::shared_ptr<GenerationStream>> t =
        engine.Submit(Greedy({40, 41}, kTokens, twins[i].session_id), twin.Callback());
    ASSERT_TRUE(t.ok());
    twin.stream = *t;
    twin.Drain();
    EXPECT_EQ(readers[i].tokens, twin.tokens);
    absl::StatusOr<SessionInfo> after = engine.GetSession("", healthy[i].session_id);
    ASSERT_TRUE(after.ok()) << after.status();
    EXPECT_EQ(after->tokens,
              healthy[i].tokens + 2 + static_cast<int64_t>(readers[i].tokens.size()));
    EXPECT_TRUE(after->broken_reason.empty());
  }
  // A stateless request that feeds the poisoned token fails alone too.
  Reader stateless;
  absl::StatusOr<std::shared_ptr<GenerationStream>> st =
      engine.Submit(Greedy({kPoisonToken}, 4), stateless.Callback());
  ASSERT_TRUE(st.ok());
  stateless.stream = *st;
  stateless.Drain();
  EXPECT_EQ(stateless.result.status.code(), absl::StatusCode::kInternal);
}

// An export whose state was replaced by NaN (signed with the server's own key, as only a holder
// of the key could) is still refused at import, naming the value.
TEST(EngineIsolationTest, ImportRefusesStatesOutOfRange) {
  absl::StatusOr<std::unique_ptr<Engine>> created = Engine::Create(TinyOptions());
  ASSERT_TRUE(created.ok()) << created.status();
  Engine& engine = **created;
  const SessionInfo source = Create(engine, {5, 6, 7});
  std::promise<absl::StatusOr<sessions::SessionSnapshot>> exported;
  engine.ExportSession("", source.session_id, [&](absl::StatusOr<sessions::SessionSnapshot> s) {
    exported.set_value(std::move(s));
  });
  absl::StatusOr<sessions::SessionSnapshot> snapshot = exported.get_future().get();
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  auto import = [&](const sessions::SessionSnapshot& snap) {
    std::promise<absl::StatusOr<SessionInfo>> imported;
    engine.ImportSession("", engine.EncodeExport(snap), absl::ZeroDuration(),
                         [&](absl::StatusOr<SessionInfo> s) { imported.set_value(std::move(s)); });
    return imported.get_future().get();
  };
  ASSERT_TRUE(import(*snapshot).ok());
  sessions::SessionSnapshot nan = *snapshot;
  const float v = std::numeric_limits<float>::quiet_NaN();
  for (size_t i = 0; i + sizeof(float) <= nan.payload.size(); i += sizeof(float)) {
    std::memcpy(&nan.payload[i], &v, sizeof(float));
  }
  absl::Status refused = import(nan).status();
  EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(refused.message()), HasSubstr("payload value 0"));
  sessions::SessionSnapshot huge = *snapshot;
  huge.tokens = std::numeric_limits<int64_t>::max();
  refused = import(huge).status();
  EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(refused.message()), HasSubstr("tokens = "));
}

}  // namespace
}  // namespace mamba
