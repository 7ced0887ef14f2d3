// Faults against a live server on synthetic:tiny (CPU, one thread): clients that vanish while
// queued, prefilling or decoding; deadline storms; a client that never reads; a burst far past
// capacity; an exhausted state pool; and, on the real binary, SIGTERM under load and a model file
// that is truncated, overwritten or removed while the server runs.
//
// After each fault the server must keep serving, every call must have ended with a status the
// API defines for that situation, the engine's running and waiting requests, used slots and live
// sessions must return to their baseline, and sessions that were not explicitly evicted must
// still continue exactly where they were.
#include <httplib.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "engine/backend_factory.h"
#include "engine/model/model_loader.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "gtest/gtest.h"
#include "server/metrics/request_log.h"
#include "tests/integration/server/server_test_util.h"
#include "tests/unit/model/temp_checkpoint.h"

namespace mamba::server::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// What must come back to its baseline after a fault.
struct Counts {
  int64_t running = 0;
  int64_t waiting = 0;
  int64_t slots_used = 0;
  int64_t sessions = 0;

  bool operator==(const Counts& o) const {
    return running == o.running && waiting == o.waiting && slots_used == o.slots_used &&
           sessions == o.sessions;
  }
  std::string ToString() const {
    return absl::StrCat("running=", running, " waiting=", waiting, " slots_used=", slots_used,
                        " sessions=", sessions);
  }
};

Counts CountsOf(const EngineStats& s) {
  return {s.requests_running, s.requests_waiting, s.slots_used,
          s.sessions_device + s.sessions_host};
}

// The engine notices cancellations at its next step and finishes them asynchronously, so the
// counts settle shortly after the calls end.
::testing::AssertionResult SettlesAt(const Engine& engine, const Counts& want) {
  Counts now;
  for (int i = 0; i < 1000; ++i) {
    now = CountsOf(engine.Stats());
    if (now == want) return ::testing::AssertionSuccess();
    absl::SleepFor(absl::Milliseconds(10));
  }
  return ::testing::AssertionFailure()
         << "after 10 s: " << now.ToString() << "; baseline: " << want.ToString();
}

// Polls `done` for up to 10 s.
bool WaitFor(const std::function<bool()>& done) {
  for (int i = 0; i < 1000; ++i) {
    if (done()) return true;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return done();
}

std::vector<int32_t> Ids(int n, int first = 1) {
  std::vector<int32_t> ids;
  for (int i = 0; i < n; ++i) ids.push_back((first + i) % 200 + 1);
  return ids;
}

std::vector<int32_t> Concat(std::initializer_list<std::vector<int32_t>> parts) {
  std::vector<int32_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

std::string CodeName(const grpc::Status& status) {
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code()));
}

// Counts of status codes from many calls, filled from many threads.
class CodeTally {
 public:
  void Add(const grpc::Status& status) {
    std::lock_guard<std::mutex> lock(mu_);
    const std::string code = CodeName(status);
    if (++counts_[code] == 1) examples_[code] = status.error_message();
  }
  std::map<std::string, int> counts() const {
    std::lock_guard<std::mutex> lock(mu_);
    return counts_;
  }
  int count(const std::string& code) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = counts_.find(code);
    return it == counts_.end() ? 0 : it->second;
  }
  // Every code seen is one of `allowed`.
  ::testing::AssertionResult OnlyOf(std::initializer_list<std::string> allowed) const {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [code, n] : counts_) {
      if (std::find(allowed.begin(), allowed.end(), code) == allowed.end()) {
        return ::testing::AssertionFailure()
               << n << " calls ended with " << code << " (e.g. '" << examples_.at(code) << "')";
      }
    }
    return ::testing::AssertionSuccess();
  }

 private:
  mutable std::mutex mu_;
  std::map<std::string, int> counts_;
  std::map<std::string, std::string> examples_;  // a message for each code
};

class FaultTest : public ::testing::Test {
 protected:
  void StartServer(ServerOptions options) {
    // One line per request would bury the failures.
    metrics::DefaultLogger().set_level(metrics::LogLevel::kWarning);
    absl::StatusOr<std::unique_ptr<MambaServer>> server = MambaServer::Start(std::move(options));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    absl::Status loaded = server_->LoadModel();
    ASSERT_TRUE(loaded.ok()) << loaded;
    channel_ = Connect(server_->address());
    generation_ = v1::Generation::NewStub(channel_);
    sessions_ = v1::Sessions::NewStub(channel_);
  }

  Engine& engine() { return *server_->engine(); }
  Counts Now() { return CountsOf(engine().Stats()); }

  std::string CreateSession(const std::vector<int32_t>& prompt) {
    v1::CreateSessionRequest request;
    request.mutable_token_ids()->mutable_ids()->Add(prompt.begin(), prompt.end());
    v1::Session session;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    grpc::Status status = sessions_->CreateSession(&context, request, &session);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return session.session_id();
  }

  grpc::Status GetSession(const std::string& id, v1::Session* out) {
    v1::GetSessionRequest request;
    request.set_session_id(id);
    grpc::ClientContext context;
    return sessions_->GetSession(&context, request, out);
  }

  grpc::Status CloseSession(const std::string& id) {
    v1::CloseSessionRequest request;
    request.set_session_id(id);
    v1::CloseSessionResponse response;
    grpc::ClientContext context;
    return sessions_->CloseSession(&context, request, &response);
  }

  // A greedy continuation of `id` with `next` equals one request over the session's whole
  // history followed by `next`: the session's state survived the fault intact.
  void ExpectSessionContinues(const std::string& id, const std::vector<int32_t>& history,
                              const std::vector<int32_t>& next) {
    v1::Session before;
    ASSERT_TRUE(GetSession(id, &before).ok()) << id;
    EXPECT_FALSE(before.busy());
    EXPECT_EQ(before.tokens(), static_cast<int64_t>(history.size()));
    StreamResult turn = Generate(*generation_, GreedyRequest(next, 6, id));
    ASSERT_TRUE(turn.status.ok()) << turn.status.error_message();
    StreamResult whole = Generate(*generation_, GreedyRequest(Concat({history, next}), 6));
    ASSERT_TRUE(whole.status.ok()) << whole.status.error_message();
    EXPECT_EQ(turn.token_ids, whole.token_ids);
    EXPECT_EQ(turn.usage.cached_tokens(), static_cast<int64_t>(history.size()));
  }

  // The server still serves a fresh request.
  void ExpectServing() {
    StreamResult r = Generate(*generation_, GreedyRequest({1, 2, 3}, 8));
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.token_ids.size(), 8u);
  }

  std::unique_ptr<MambaServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Generation::Stub> generation_;
  std::unique_ptr<v1::Sessions::Stub> sessions_;
};

// A Generate call driven by hand: started at once, read and ended when the test says.
class OpenStream {
 public:
  OpenStream(v1::Generation::Stub& stub, const v1::GenerateRequest& request,
             absl::Duration timeout = absl::Seconds(60)) {
    context_.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    reader_ = stub.Generate(&context_, request);
  }
  // Reads one message; false at the end of the stream.
  bool ReadOne(v1::GenerateResponse* response) {
    if (!reader_->Read(response)) return false;
    Record(*response);
    return true;
  }
  void Cancel() { context_.TryCancel(); }
  // Reads what is left and returns the call's status.
  grpc::Status Finish() {
    v1::GenerateResponse response;
    while (reader_->Read(&response)) Record(response);
    return reader_->Finish();
  }
  const v1::GenerateResponse& last() const { return last_; }
  // Every token id read so far.
  const std::vector<int32_t>& token_ids() const { return token_ids_; }

 private:
  void Record(const v1::GenerateResponse& response) {
    last_ = response;
    token_ids_.insert(token_ids_.end(), response.token_ids().begin(), response.token_ids().end());
  }
  std::vector<int32_t> token_ids_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader_;
  v1::GenerateResponse last_;
};

TEST_F(FaultTest, ClientGoneWhileQueued) {
  ServerOptions options = TinyServerOptions();
  options.engine.scheduler.max_running = 1;  // one stream runs, the rest queue
  StartServer(options);
  const std::vector<int32_t> history = {5, 6, 7};
  const std::string session = CreateSession(history);
  const Counts baseline = Now();
  EXPECT_EQ(baseline, (Counts{0, 0, 1, 1}));

  OpenStream running(*generation_, GreedyRequest({1, 2}, kLongGeneration));
  v1::GenerateResponse response;
  ASSERT_TRUE(running.ReadOne(&response));
  // Queued behind it: a turn of the session the client cancels, and a call whose deadline passes.
  OpenStream cancelled(*generation_, GreedyRequest({8, 9}, 4, session));
  ASSERT_TRUE(WaitFor([&] { return engine().Stats().requests_waiting == 1; })) << Now().ToString();
  OpenStream expired(*generation_, GreedyRequest({3}, 4), absl::Milliseconds(500));
  cancelled.Cancel();
  EXPECT_EQ(cancelled.Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_EQ(expired.Finish().error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_TRUE(WaitFor([&] { return engine().Stats().requests_waiting == 0; })) << Now().ToString();
  EXPECT_EQ(engine().Stats().requests_running, 1);

  running.Cancel();
  EXPECT_EQ(running.Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(SettlesAt(engine(), baseline));
  // The cancelled turn never ran; its prompt joined the session's history (as a cancelled
  // running turn's tokens do), and the session continues from there.
  ExpectSessionContinues(session, Concat({history, {8, 9}}), {10, 11});
  ExpectServing();
}

TEST_F(FaultTest, ClientGoneWhilePrefilling) {
  ServerOptions options = TinyServerOptions();
  // One prompt token per step: a long prompt takes long enough to be caught half-way.
  options.engine.scheduler.max_prefill_tokens_per_step = 1;
  options.limits.max_prompt_tokens = 8192;
  StartServer(options);
  const std::vector<int32_t> history = {1, 2, 3};
  const std::string session = CreateSession(history);
  const Counts baseline = Now();

  const std::vector<int32_t> long_prompt = Ids(6000, 7);
  const EngineStats before = engine().Stats();
  OpenStream stream(*generation_, GreedyRequest(long_prompt, 4, session));
  ASSERT_TRUE(WaitFor([&] { return engine().Stats().prompt_tokens - before.prompt_tokens >= 50; }));
  stream.Cancel();
  EXPECT_EQ(stream.Finish().error_code(), grpc::StatusCode::CANCELLED);
  ASSERT_TRUE(SettlesAt(engine(), baseline));
  const EngineStats after = engine().Stats();
  // It was cut off during the prefill: part of the prompt went in, nothing was generated.
  EXPECT_LT(after.prompt_tokens - before.prompt_tokens, static_cast<int64_t>(long_prompt.size()));
  EXPECT_EQ(after.generated_tokens, before.generated_tokens);
  // The rest of the prompt is kept for the next turn, which continues exactly.
  ExpectSessionContinues(session, Concat({history, long_prompt}), {40, 41});
  ExpectServing();
}

TEST_F(FaultTest, ClientsGoneWhileDecoding) {
  StartServer(TinyServerOptions());
  constexpr int kSessions = 6;
  std::vector<std::string> ids;
  for (int i = 0; i < kSessions; ++i) ids.push_back(CreateSession(Ids(3, 10 * i)));
  const Counts baseline = Now();

  std::vector<std::unique_ptr<OpenStream>> streams;
  for (int i = 0; i < kSessions; ++i) {
    streams.push_back(
        std::make_unique<OpenStream>(*generation_, GreedyRequest({42}, kLongGeneration, ids[i])));
  }
  // Each client reads a different number of messages, then goes away.
  std::vector<int64_t> received(kSessions, 0);
  for (int i = 0; i < kSessions; ++i) {
    v1::GenerateResponse response;
    for (int m = 0; m <= i; ++m) {
      ASSERT_TRUE(streams[i]->ReadOne(&response));
      received[i] += response.token_ids_size();
    }
    streams[i]->Cancel();
  }
  for (auto& s : streams) EXPECT_EQ(s->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(SettlesAt(engine(), baseline));
  for (int i = 0; i < kSessions; ++i) {
    v1::Session s;
    ASSERT_TRUE(GetSession(ids[i], &s).ok());
    EXPECT_FALSE(s.busy());
    // The prompt, then at least what the client saw (the engine may have run a few more steps).
    EXPECT_GE(s.tokens(), 3 + 1 + received[i]);
    StreamResult turn = Generate(*generation_, GreedyRequest({7}, 4, ids[i]));
    EXPECT_TRUE(turn.status.ok()) << turn.status.error_message();
    EXPECT_EQ(turn.usage.cached_tokens(), s.tokens());
  }
  ExpectServing();
}

TEST_F(FaultTest, DeadlineStorm) {
  StartServer(TinyServerOptions());
  constexpr int kThreads = 6;
  constexpr int kCallsPerThread = 40;
  std::vector<std::string> ids;
  for (int i = 0; i < kThreads; ++i) ids.push_back(CreateSession(Ids(4, i)));
  const Counts baseline = Now();

  CodeTally plain;
  CodeTally on_sessions;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      auto stub = v1::Generation::NewStub(Connect(server_->address()));
      for (int c = 0; c < kCallsPerThread; ++c) {
        // Deadlines from 1 ms (gone before the server sees the call) to 30 ms (some finish).
        const int deadline_ms = 1 + static_cast<int>(rng() % 30);
        const bool session_turn = c % 2 == 1;
        v1::GenerateRequest request =
            GreedyRequest(Ids(1 + static_cast<int>(rng() % 64), c), 40, session_turn ? ids[t] : "");
        grpc::ClientContext context;
        context.set_deadline(std::chrono::system_clock::now() +
                             std::chrono::milliseconds(deadline_ms));
        StreamResult r = Generate(*stub, request, &context);
        (session_turn ? on_sessions : plain).Add(r.status);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  // Plain calls end on time or in time; a session turn may also find its session still busy
  // with the previous turn, whose cancellation the engine has not processed yet.
  EXPECT_TRUE(plain.OnlyOf({"OK", "DEADLINE_EXCEEDED"}));
  EXPECT_TRUE(on_sessions.OnlyOf({"OK", "DEADLINE_EXCEEDED", "FAILED_PRECONDITION"}));
  EXPECT_GT(plain.count("DEADLINE_EXCEEDED") + on_sessions.count("DEADLINE_EXCEEDED"), 0);
  EXPECT_TRUE(SettlesAt(engine(), baseline));
  for (const std::string& id : ids) {
    v1::Session s;
    ASSERT_TRUE(GetSession(id, &s).ok());
    EXPECT_FALSE(s.busy());
    StreamResult turn = Generate(*generation_, GreedyRequest({9}, 4, id));
    EXPECT_TRUE(turn.status.ok()) << turn.status.error_message();
  }
  ExpectServing();
}

TEST_F(FaultTest, ClientThatNeverReadsIsPausedWhileOthersAreServed) {
  ServerOptions options = TinyServerOptions();
  options.engine.scheduler.max_unread_tokens = 64;
  StartServer(options);
  const Counts baseline = Now();

  // A small flow-control window: the server's writes stall as soon as the client stops reading.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 1024);
  auto stalled_stub = v1::Generation::NewStub(
      grpc::CreateCustomChannel(server_->address(), grpc::InsecureChannelCredentials(), args));
  OpenStream stalled(*stalled_stub, GreedyRequest({1, 2, 3}, kLongGeneration));
  // Once its backlog passes max_unread_tokens the engine stops advancing it.
  int64_t generated = -1;
  ASSERT_TRUE(WaitFor([&] {
    const int64_t now = engine().Stats().generated_tokens;
    if (now != generated || now == 0) {
      generated = now;
      absl::SleepFor(absl::Milliseconds(200));
      return false;
    }
    return true;
  })) << "the engine kept generating for a client that does not read";
  EXPECT_EQ(engine().Stats().requests_running, 1);
  EXPECT_LT(generated, 5000);

  // Everyone else is served meanwhile.
  std::vector<std::thread> others;
  CodeTally codes;
  std::atomic<int> complete{0};
  for (int i = 0; i < 8; ++i) {
    others.emplace_back([&, i] {
      auto stub = v1::Generation::NewStub(Connect(server_->address()));
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
      StreamResult r = Generate(*stub, GreedyRequest(Ids(8, i), 32), &context);
      codes.Add(r.status);
      if (r.token_ids.size() == 32) complete.fetch_add(1);
    });
  }
  for (std::thread& t : others) t.join();
  EXPECT_TRUE(codes.OnlyOf({"OK"}));
  EXPECT_EQ(complete.load(), 8);

  // The client goes away without ever reading: the call ends and frees its slot.
  stalled.Cancel();
  EXPECT_EQ(stalled.Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(SettlesAt(engine(), baseline));
  ExpectServing();
}

TEST_F(FaultTest, BurstFarPastCapacityIsRefusedCleanly) {
  ServerOptions options = TinyServerOptions();
  options.engine.backend.num_slots = 2;
  options.engine.scheduler.max_running = 2;
  options.engine.scheduler.max_queue = 4;
  StartServer(options);
  const Counts baseline = Now();

  constexpr int kCalls = 40;
  constexpr int kTokens = 2000;
  CodeTally codes;
  std::atomic<int> full_length{0};
  std::atomic<int> ready{0};
  std::string refusal;
  std::mutex refusal_mu;
  std::vector<std::thread> threads;
  for (int i = 0; i < kCalls; ++i) {
    threads.emplace_back([&, i] {
      auto channel = Connect(server_->address());
      channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10));
      auto stub = v1::Generation::NewStub(channel);
      ready.fetch_add(1);
      while (ready.load() < kCalls) std::this_thread::yield();
      StreamResult r = Generate(*stub, GreedyRequest(Ids(4, i), kTokens));
      codes.Add(r.status);
      if (r.status.ok() && r.token_ids.size() == static_cast<size_t>(kTokens)) {
        full_length.fetch_add(1);
      }
      if (r.status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
        std::lock_guard<std::mutex> lock(refusal_mu);
        refusal = r.status.error_message();
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_TRUE(codes.OnlyOf({"OK", "RESOURCE_EXHAUSTED"}));
  // Two run and four wait at any time, and a burst of forty arriving together cannot all fit.
  // At least the four the queue holds are served in full; six only when the scheduler moved the
  // first two from the queue to running before the rest of the burst arrived (on a loaded
  // machine it may not have: seen with ctest -j2).
  EXPECT_GE(codes.count("OK"), 4);
  EXPECT_GT(codes.count("RESOURCE_EXHAUSTED"), 0);
  EXPECT_EQ(full_length.load(), codes.count("OK"));
  EXPECT_THAT(refusal, HasSubstr("queue"));
  EXPECT_TRUE(SettlesAt(engine(), baseline));
  ExpectServing();
}

TEST_F(FaultTest, StatePoolExhaustedMovesSessionsToHostAndBack) {
  ServerOptions options = TinyServerOptions();
  options.engine.backend.num_slots = 2;
  StartServer(options);
  // Twelve sessions on two slots: ten idle ones live in host memory, none is lost.
  constexpr int kSessions = 12;
  std::vector<std::string> ids;
  for (int i = 0; i < kSessions; ++i) ids.push_back(CreateSession(Ids(3, 7 * i)));
  EngineStats stats = engine().Stats();
  EXPECT_EQ(stats.sessions_device, 2);
  EXPECT_EQ(stats.sessions_host, kSessions - 2);
  EXPECT_EQ(stats.evictions_dropped, 0);
  EXPECT_EQ(Now(), (Counts{0, 0, 2, kSessions}));

  // Two long generations hold both slots; a session turn must wait for one, not fail.
  OpenStream a(*generation_, GreedyRequest({1}, kLongGeneration));
  OpenStream b(*generation_, GreedyRequest({2}, kLongGeneration));
  v1::GenerateResponse response;
  ASSERT_TRUE(a.ReadOne(&response));
  ASSERT_TRUE(b.ReadOne(&response));
  OpenStream waiting(*generation_, GreedyRequest({3}, 4, ids[0]));
  ASSERT_TRUE(WaitFor([&] { return engine().Stats().requests_waiting == 1; })) << Now().ToString();
  a.Cancel();
  EXPECT_EQ(a.Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(waiting.Finish().ok());
  EXPECT_EQ(waiting.last().finish_reason(), v1::FINISH_REASON_LENGTH);
  b.Cancel();
  EXPECT_EQ(b.Finish().error_code(), grpc::StatusCode::CANCELLED);
  // The long generations pushed the resident sessions out; what holds a slot now is exactly the
  // sessions on the device.
  EXPECT_TRUE(SettlesAt(engine(), {0, 0, engine().Stats().sessions_device, kSessions}));

  // Every other session comes back from host memory and continues exactly.
  for (int i = 1; i < kSessions; ++i) {
    SCOPED_TRACE(i);
    ExpectSessionContinues(ids[i], Ids(3, 7 * i), {50, 51});
  }
  EXPECT_GT(engine().Stats().restores_from_host, 0);
  EXPECT_EQ(engine().Stats().evictions_dropped, 0);
  for (const std::string& id : ids) EXPECT_TRUE(CloseSession(id).ok());
  EXPECT_TRUE(SettlesAt(engine(), (Counts{0, 0, 0, 0})));
}

TEST_F(FaultTest, StatePoolAndHostBudgetExhaustedDropsTheOldestIdleSessions) {
  absl::StatusOr<model::ModelConfig> config = model::SyntheticConfig("tiny");
  ASSERT_TRUE(config.ok());
  const double state_bytes =
      static_cast<double>(model::StateLayoutOf(*config).elements()) * sizeof(float);
  ServerOptions options = TinyServerOptions();
  options.engine.backend.num_slots = 2;
  // Room for two states in host memory, and a little less than a third.
  options.engine.sessions.host_state_memory_gb = 2.5 * state_bytes / (1024.0 * 1024.0 * 1024.0);
  StartServer(options);
  constexpr int kSessions = 6;
  std::vector<std::string> ids;
  for (int i = 0; i < kSessions; ++i) ids.push_back(CreateSession(Ids(3, 5 * i)));

  // Two on the device, two in host memory; the two least recently used were dropped.
  const EngineStats stats = engine().Stats();
  EXPECT_EQ(stats.sessions_device, 2);
  EXPECT_EQ(stats.sessions_host, 2);
  EXPECT_EQ(stats.evictions_dropped, 2);
  for (int i = 0; i < 2; ++i) {
    v1::Session s;
    const grpc::Status gone = GetSession(ids[i], &s);
    EXPECT_EQ(gone.error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_THAT(gone.error_message(), HasSubstr("evicted"));
    StreamResult turn = Generate(*generation_, GreedyRequest({4}, 2, ids[i]));
    EXPECT_EQ(turn.status.error_code(), grpc::StatusCode::NOT_FOUND);
  }
  // The most recent ones, on the device, continue exactly.
  for (int i = kSessions - 2; i < kSessions; ++i) {
    SCOPED_TRACE(i);
    ExpectSessionContinues(ids[i], Ids(3, 5 * i), {60});
  }
  for (int i = 2; i < kSessions; ++i) CloseSession(ids[i]);
  EXPECT_TRUE(SettlesAt(engine(), (Counts{0, 0, 0, 0})));
  ExpectServing();
}

// Streams whose output ends in held-back text (an incomplete UTF-8 character, a possible stop
// string) must end: the server once lost the end-of-stream signal when it read the engine's
// final text separately from the end, and such calls hung until their deadline.
TEST_F(FaultTest, EveryStreamEndsWhenItsTextIsHeldBack) {
  StartServer(TinyServerOptions());
  const Counts baseline = Now();
  constexpr int kThreads = 6;
  constexpr int kCalls = 150;
  CodeTally codes;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto stub = v1::Generation::NewStub(Connect(server_->address()));
      for (int c = 0; c < kCalls; ++c) {
        v1::GenerateRequest r = GreedyRequest(Ids(2, t * 1000 + c), 1 + c % 5);
        // Sampled bytes: endings in the middle of a UTF-8 character are common.
        r.mutable_sampling()->set_temperature(1.0f);
        r.mutable_sampling()->set_seed(static_cast<uint64_t>(t * 1000 + c));
        r.mutable_stopping()->add_stop("zz");
        grpc::ClientContext context;
        context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
        StreamResult result = Generate(*stub, r, &context);
        codes.Add(result.status);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_TRUE(codes.OnlyOf({"OK"}));
  EXPECT_TRUE(SettlesAt(engine(), baseline));
}

// The real binary ------------------------------------------------------------------------------

const std::vector<std::string> kTinyArgs = {"--model=synthetic:tiny",
                                            "--backend=cpu",
                                            "--cpu_threads=1",
                                            "--host=127.0.0.1",
                                            "--port=0",
                                            "--metrics_port=0",
                                            "--http_port=0",
                                            "--log_level=error",
                                            absl::StrCat("--max_new_tokens=", kLongGeneration)};

// Reads the named gauges from the process's /metrics (sums over labels).
std::map<std::string, double> Scrape(const std::string& metrics_address) {
  std::map<std::string, double> values;
  const size_t colon = metrics_address.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(metrics_address.substr(colon + 1), &port)) {
    return values;
  }
  httplib::Client client(metrics_address.substr(0, colon), port);
  auto res = client.Get("/metrics");
  if (!res || res->status != 200) return values;
  for (absl::string_view line : absl::StrSplit(res->body, '\n', absl::SkipEmpty())) {
    if (absl::StartsWith(line, "#")) continue;
    const size_t space = line.rfind(' ');
    if (space == absl::string_view::npos) continue;
    absl::string_view series = line.substr(0, space);
    const std::string name(series.substr(0, series.find('{')));
    double v = 0;
    if (absl::SimpleAtod(line.substr(space + 1), &v)) values[name] += v;
  }
  return values;
}

// The process's counts return to `want` (sessions = every tier).
::testing::AssertionResult ProcessSettlesAt(const std::string& metrics_address,
                                            const Counts& want) {
  Counts now;
  for (int i = 0; i < 500; ++i) {
    std::map<std::string, double> m = Scrape(metrics_address);
    now = {static_cast<int64_t>(m["mamba_requests_running"]),
           static_cast<int64_t>(m["mamba_requests_waiting"]),
           static_cast<int64_t>(m["mamba_state_slots_used"]),
           static_cast<int64_t>(m["mamba_sessions"])};
    if (!m.empty() && now == want) return ::testing::AssertionSuccess();
    absl::SleepFor(absl::Milliseconds(20));
  }
  return ::testing::AssertionFailure()
         << "after 10 s: " << now.ToString() << "; expected: " << want.ToString();
}

// One sequence's fault never hurts another: a turn whose model output is not finite (its token's
// embedding is +inf, so its activations, state and logits are NaN) runs beside eight live streams
// and ends alone with INTERNAL (its request log line is at error level); its session is marked
// broken; every other
// stream ends normally with the tokens it would have produced anyway, and keeps its session. On
// the CPU backend here, and on the CUDA backend where a GPU is visible.
class PoisonedSequenceTest : public FaultTest, public ::testing::WithParamInterface<std::string> {
 protected:
  static constexpr int32_t kPoisonToken = 200;
};

TEST_P(PoisonedSequenceTest, FailsAloneAmongEightLiveStreams) {
  const std::string backend = GetParam();
  if (backend == "cuda" && !CudaAvailable()) GTEST_SKIP() << "no CUDA device visible";
  mamba::testing::TempDir dir;
  ASSERT_TRUE(
      mamba::testing::WritePoisonedCheckpoint(
          dir.path(), kPoisonToken, backend == "cuda" ? model::DType::kF16 : model::DType::kF32)
          .ok());
  ServerOptions options = TinyServerOptions();
  options.engine.model = dir.path();
  options.engine.backend.kind = backend;
  StartServer(options);
  metrics::DefaultLogger().set_level(metrics::LogLevel::kWarning);
  const Counts baseline = Now();

  std::vector<std::string> healthy, twins;
  for (int i = 0; i < 8; ++i) healthy.push_back(CreateSession(Ids(4, 10 * i)));
  for (const std::string& id : healthy) {
    v1::ForkSessionRequest fork;
    fork.set_session_id(id);
    v1::Session child;
    grpc::ClientContext context;
    ASSERT_TRUE(sessions_->ForkSession(&context, fork, &child).ok());
    twins.push_back(child.session_id());
  }
  const std::string victim = CreateSession(Ids(3, 90));

  // Healthy turns stop at the poisoned token if they ever sample it (so that they never feed it).
  constexpr int kTokens = 40;
  auto healthy_turn = [&](const std::string& id) {
    v1::GenerateRequest r = GreedyRequest({7, 8}, kTokens, id);
    r.mutable_stopping()->add_stop_token_ids(kPoisonToken);
    return r;
  };
  std::vector<std::unique_ptr<OpenStream>> streams;
  for (const std::string& id : healthy) {
    streams.push_back(std::make_unique<OpenStream>(*generation_, healthy_turn(id)));
  }
  v1::GenerateResponse first;
  for (auto& s : streams) ASSERT_TRUE(s->ReadOne(&first));  // every stream is running
  StreamResult bad = Generate(*generation_, GreedyRequest({7, kPoisonToken}, kTokens, victim));
  EXPECT_EQ(bad.status.error_code(), grpc::StatusCode::INTERNAL) << bad.status.error_message();
  EXPECT_THAT(bad.status.error_message(), HasSubstr("not finite"));
  EXPECT_THAT(bad.status.error_message(), ::testing::Not(HasSubstr("slot")));
  for (auto& s : streams) {
    grpc::Status st = s->Finish();
    EXPECT_TRUE(st.ok()) << st.error_message();
  }

  // The victim's session is broken: visible, refusing turns with the reason, closable.
  v1::Session broken;
  ASSERT_TRUE(GetSession(victim, &broken).ok());
  EXPECT_THAT(broken.broken_reason(), HasSubstr("not finite"));
  StreamResult again = Generate(*generation_, GreedyRequest({1}, 2, victim));
  EXPECT_EQ(again.status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  ASSERT_TRUE(CloseSession(victim).ok());

  // The others produced exactly what their twins produce, and kept their sessions.
  for (size_t i = 0; i < healthy.size(); ++i) {
    StreamResult twin = Generate(*generation_, healthy_turn(twins[i]));
    ASSERT_TRUE(twin.status.ok());
    EXPECT_EQ(streams[i]->token_ids(), twin.token_ids);
    const int64_t generated = static_cast<int64_t>(streams[i]->token_ids().size());
    EXPECT_GT(generated, 0);
    v1::Session s;
    ASSERT_TRUE(GetSession(healthy[i], &s).ok());
    EXPECT_TRUE(s.broken_reason().empty());
    EXPECT_EQ(s.tokens(), 4 + 2 + generated);
    ASSERT_TRUE(CloseSession(healthy[i]).ok());
    ASSERT_TRUE(CloseSession(twins[i]).ok());
  }
  ExpectServing();
  EXPECT_TRUE(SettlesAt(engine(), baseline));
}

INSTANTIATE_TEST_SUITE_P(Backends, PoisonedSequenceTest, ::testing::Values("cpu", "cuda"));

TEST(FaultProcessTest, SigtermUnderLoadEndsEveryStreamAndExitsZero) {
  std::vector<std::string> args = kTinyArgs;
  args.push_back("--drain_seconds=1");
  auto process = ServerProcess::Start(args);
  ASSERT_TRUE(process.ok()) << process.status();
  ServerProcess& p = **process;
  const std::string address = p.grpc_address();

  // Long streams that the drain must cut off, and clients sending short requests in a loop
  // until the server stops taking them.
  constexpr int kLong = 4;
  constexpr int kLoopers = 6;
  CodeTally long_codes;
  CodeTally short_codes;
  std::atomic<int> long_cancelled{0};
  std::atomic<int> long_started{0};
  std::atomic<bool> stop{false};
  std::atomic<int> cut_off{0};  // short calls that failed after output began
  std::vector<std::thread> threads;
  for (int i = 0; i < kLong; ++i) {
    threads.emplace_back([&, i] {
      auto stub = v1::Generation::NewStub(Connect(address));
      OpenStream s(*stub, GreedyRequest(Ids(4, i), kLongGeneration));
      v1::GenerateResponse response;
      if (s.ReadOne(&response)) long_started.fetch_add(1);
      const grpc::Status status = s.Finish();
      long_codes.Add(status);
      if (status.ok() && s.last().finish_reason() == v1::FINISH_REASON_CANCELLED) {
        long_cancelled.fetch_add(1);
      }
    });
  }
  for (int i = 0; i < kLoopers; ++i) {
    threads.emplace_back([&, i] {
      auto stub = v1::Generation::NewStub(Connect(address));
      for (int c = 0; !stop.load(); ++c) {
        StreamResult r = Generate(*stub, GreedyRequest(Ids(3, i * 100 + c), 16));
        short_codes.Add(r.status);
        if (!r.status.ok() && !r.responses.empty()) cut_off.fetch_add(1);
        if (!r.status.ok()) absl::SleepFor(absl::Milliseconds(20));
      }
    });
  }
  ASSERT_TRUE(WaitFor([&] { return long_started.load() == kLong; }));
  absl::SleepFor(absl::Milliseconds(300));
  p.Signal(SIGTERM);
  absl::StatusOr<int> exit_code = p.Wait(absl::Seconds(30));
  stop.store(true);
  for (std::thread& t : threads) t.join();
  ASSERT_TRUE(exit_code.ok()) << exit_code.status();
  EXPECT_EQ(*exit_code, 0);
  // Running streams end normally, marked cancelled by the drain; new calls are refused with
  // UNAVAILABLE (the server is shutting down, then gone).
  EXPECT_TRUE(long_codes.OnlyOf({"OK"}));
  EXPECT_EQ(long_cancelled.load(), kLong);
  // A call that reaches the server in the last milliseconds, while gRPC itself shuts down, is
  // cancelled by gRPC before any output (CANCELLED); no stream is cut off once it has begun.
  EXPECT_TRUE(short_codes.OnlyOf({"OK", "UNAVAILABLE", "CANCELLED"}));
  EXPECT_EQ(cut_off.load(), 0);
  EXPECT_GT(short_codes.count("OK"), 0);
  EXPECT_GT(short_codes.count("UNAVAILABLE"), 0);
}

TEST(FaultProcessTest, ModelFileTruncatedOverwrittenOrRemovedKeepsServing) {
  const fs::path source =
      fs::path(MAMBA_TEST_DATA_DIR).parent_path().parent_path() / "models" / "default";
  ASSERT_TRUE(fs::exists(source / "model.safetensors")) << source;
  const fs::path dir =
      fs::path(::testing::TempDir()) / absl::StrCat("mamba-faults-model-", getpid());
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (const auto& entry : fs::directory_iterator(source)) {
    fs::copy_file(entry.path(), dir / entry.path().filename());
  }
  std::vector<std::string> args = kTinyArgs;
  args[0] = "--model=" + dir.string();
  auto process = ServerProcess::Start(args);
  ASSERT_TRUE(process.ok()) << process.status();
  ServerProcess& p = **process;
  auto channel = Connect(p.grpc_address());
  auto generation = v1::Generation::NewStub(channel);
  auto sessions = v1::Sessions::NewStub(channel);

  const std::vector<int32_t> prompt = Ids(12, 20);
  const v1::GenerateRequest request = GreedyRequest(prompt, 24);
  const StreamResult reference = Generate(*generation, request);
  ASSERT_TRUE(reference.status.ok()) << reference.status.error_message();
  ASSERT_EQ(reference.token_ids.size(), 24u);

  // A session and a stream that must live through all of it.
  const std::vector<int32_t> head(prompt.begin(), prompt.begin() + 5);
  const std::vector<int32_t> tail(prompt.begin() + 5, prompt.end());
  v1::CreateSessionRequest create;
  create.mutable_token_ids()->mutable_ids()->Add(head.begin(), head.end());
  v1::Session session;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(sessions->CreateSession(&context, create, &session).ok());
  }
  OpenStream running(*generation, GreedyRequest({1, 2}, kLongGeneration));

  const fs::path weights = dir / "model.safetensors";
  const std::vector<std::pair<std::string, std::function<void()>>> faults = {
      {"truncated to zero bytes", [&] { fs::resize_file(weights, 0); }},
      {"overwritten in place",
       [&] {
         std::ofstream out(weights, std::ios::binary | std::ios::trunc);
         out << std::string(1 << 20, '\xff');
       }},
      {"removed with its folder", [&] { fs::remove_all(dir); }},
  };
  for (const auto& [what, fault] : faults) {
    SCOPED_TRACE(what);
    fault();
    // The stream that was running goes on, and new requests produce what they did before.
    v1::GenerateResponse response;
    ASSERT_TRUE(running.ReadOne(&response));
    StreamResult again = Generate(*generation, request);
    ASSERT_TRUE(again.status.ok()) << again.status.error_message();
    EXPECT_EQ(again.token_ids, reference.token_ids);
  }
  running.Cancel();
  EXPECT_EQ(running.Finish().error_code(), grpc::StatusCode::CANCELLED);
  StreamResult continued = Generate(*generation, GreedyRequest(tail, 24, session.session_id()));
  ASSERT_TRUE(continued.status.ok()) << continued.status.error_message();
  EXPECT_EQ(continued.token_ids, reference.token_ids);
  EXPECT_TRUE(ProcessSettlesAt(p.metrics_address(), (Counts{0, 0, 1, 1})));
  EXPECT_EQ(HealthStatus(channel, "readiness"), "SERVING");

  p.Signal(SIGTERM);
  absl::StatusOr<int> exit_code = p.Wait(absl::Seconds(30));
  ASSERT_TRUE(exit_code.ok()) << exit_code.status();
  EXPECT_EQ(*exit_code, 0);
}

}  // namespace
}  // namespace mamba::server::testing
