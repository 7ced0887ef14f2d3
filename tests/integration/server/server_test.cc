// The service end to end over loopback gRPC, with an in-process server on synthetic:tiny.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <set>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/dynamic_message.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "gtest/gtest.h"
#include "server/request_validation.h"
#include "tests/integration/server/server_test_util.h"
#include "tests/unit/model/temp_checkpoint.h"

namespace mamba::server::testing {
namespace {

using ::testing::HasSubstr;

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override { StartServer(TinyServerOptions()); }

  void StartServer(ServerOptions options) {
    absl::StatusOr<std::unique_ptr<MambaServer>> server = MambaServer::Start(std::move(options));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    absl::Status loaded = server_->LoadModel();
    ASSERT_TRUE(loaded.ok()) << loaded;
    channel_ = Connect(server_->address());
    generation_ = v1::Generation::NewStub(channel_);
    sessions_ = v1::Sessions::NewStub(channel_);
    models_ = v1::Models::NewStub(channel_);
  }

  // Creates a session holding `prompt`.
  std::string CreateSession(const std::vector<int32_t>& prompt, uint32_t ttl_seconds = 0) {
    v1::CreateSessionRequest request;
    request.mutable_token_ids()->mutable_ids()->Add(prompt.begin(), prompt.end());
    request.set_ttl_seconds(ttl_seconds);
    v1::Session session;
    grpc::ClientContext context;
    grpc::Status status = sessions_->CreateSession(&context, request, &session);
    EXPECT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(session.tokens(), static_cast<int64_t>(prompt.size()));
    return session.session_id();
  }

  grpc::Status GetSession(const std::string& id, v1::Session* out) {
    v1::GetSessionRequest request;
    request.set_session_id(id);
    grpc::ClientContext context;
    return sessions_->GetSession(&context, request, out);
  }

  // Waits until the session is idle (a cancelled turn ends asynchronously).
  v1::Session WaitIdle(const std::string& id) {
    v1::Session s;
    for (int i = 0; i < 500; ++i) {
      grpc::Status status = GetSession(id, &s);
      EXPECT_TRUE(status.ok()) << status.error_message();
      if (!status.ok() || !s.busy()) break;
      absl::SleepFor(absl::Milliseconds(10));
    }
    EXPECT_FALSE(s.busy());
    return s;
  }

  std::vector<int32_t> Concat(std::initializer_list<std::vector<int32_t>> parts) {
    std::vector<int32_t> out;
    for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
    return out;
  }

  std::unique_ptr<MambaServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Generation::Stub> generation_;
  std::unique_ptr<v1::Sessions::Stub> sessions_;
  std::unique_ptr<v1::Models::Stub> models_;
};

TEST_F(ServerTest, StreamEqualsTheEngineOutput) {
  // An engine of its own, built from the same options: the stream must carry exactly what the
  // engine produces for the same request, greedy and sampled, with log-probabilities.
  absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Create(TinyServerOptions().engine);
  ASSERT_TRUE(engine.ok()) << engine.status();

  for (float temperature : {0.0f, 0.9f}) {
    SCOPED_TRACE(temperature);
    v1::GenerateRequest request;
    request.set_text("The quick brown fox");
    request.mutable_sampling()->set_temperature(temperature);
    request.mutable_sampling()->set_top_k(40);
    request.mutable_sampling()->set_seed(1234);
    request.mutable_stopping()->set_max_tokens(40);
    request.mutable_stopping()->set_ignore_eos(true);
    request.set_logprobs(3);
    StreamResult stream = Generate(*generation_, request);
    ASSERT_TRUE(stream.status.ok()) << stream.status.error_message();

    GenerationRequest direct;
    const std::string text = "The quick brown fox";
    direct.prompt = *(*engine)->tokenizer().Encode(text);
    direct.sampling.temperature = temperature;
    direct.sampling.top_k = 40;
    direct.sampling.seed = 1234;
    direct.stopping.max_tokens = 40;
    direct.stopping.ignore_eos = true;
    direct.logprobs = 3;
    absl::StatusOr<EngineRun> expected = RunOnEngine(**engine, direct);
    ASSERT_TRUE(expected.ok()) << expected.status();

    EXPECT_EQ(stream.token_ids, expected->token_ids);
    EXPECT_EQ(stream.text, expected->text);
    EXPECT_EQ(stream.finish_reason, v1::FINISH_REASON_LENGTH);
    // The second request repeats the prompt: the prefix cache holds all of it but the last token.
    EXPECT_EQ(stream.usage.prompt_tokens() + stream.usage.cached_tokens(),
              static_cast<int64_t>(direct.prompt.size()));
    EXPECT_EQ(stream.usage.cached_tokens(),
              temperature == 0.0f ? 0 : static_cast<int64_t>(direct.prompt.size()) - 1);
    EXPECT_EQ(stream.usage.generated_tokens(), 40);
    ASSERT_EQ(stream.logprobs.size(), expected->logprobs.size());
    for (size_t i = 0; i < stream.logprobs.size(); ++i) {
      EXPECT_EQ(stream.logprobs[i].chosen().token_id(), expected->logprobs[i].chosen.token);
      EXPECT_FLOAT_EQ(stream.logprobs[i].chosen().logprob(), expected->logprobs[i].chosen.logprob);
      ASSERT_EQ(stream.logprobs[i].top_size(), 3);
    }
    // Only the last message carries the finish reason; every message names the request.
    for (size_t i = 0; i + 1 < stream.responses.size(); ++i) {
      EXPECT_EQ(stream.responses[i].finish_reason(), v1::FINISH_REASON_UNSPECIFIED);
      EXPECT_FALSE(stream.responses[i].request_id().empty());
    }
  }
}

TEST_F(ServerTest, SessionTurnsEqualOneLongRequest) {
  const std::vector<int32_t> t1 = {72, 101, 108, 108, 111};
  const std::vector<int32_t> t2 = {32, 119, 111, 114};
  const std::string id = CreateSession({});
  StreamResult turn1 = Generate(*generation_, GreedyRequest(t1, 12, id));
  ASSERT_TRUE(turn1.status.ok()) << turn1.status.error_message();
  ASSERT_EQ(turn1.token_ids.size(), 12u);
  EXPECT_EQ(turn1.usage.cached_tokens(), 0);
  StreamResult turn2 = Generate(*generation_, GreedyRequest(t2, 12, id));
  ASSERT_TRUE(turn2.status.ok()) << turn2.status.error_message();
  EXPECT_EQ(turn2.usage.cached_tokens(), static_cast<int64_t>(t1.size() + 12));
  EXPECT_EQ(turn2.usage.prompt_tokens(), static_cast<int32_t>(t2.size()));

  StreamResult whole = Generate(*generation_, GreedyRequest(Concat({t1, turn1.token_ids, t2}), 12));
  ASSERT_TRUE(whole.status.ok());
  EXPECT_EQ(turn2.token_ids, whole.token_ids);

  v1::Session s;
  ASSERT_TRUE(GetSession(id, &s).ok());
  EXPECT_EQ(s.tokens(), static_cast<int64_t>(t1.size() + 12 + t2.size() + 12));
  EXPECT_FALSE(s.busy());
}

TEST_F(ServerTest, ForkDivergesWithoutTouchingItsParent) {
  const std::vector<int32_t> prompt = {10, 20, 30, 40};
  const std::string parent = CreateSession(prompt);
  v1::ForkSessionRequest fork_request;
  fork_request.set_session_id(parent);
  v1::Session child;
  grpc::ClientContext context;
  ASSERT_TRUE(sessions_->ForkSession(&context, fork_request, &child).ok());
  EXPECT_NE(child.session_id(), parent);
  EXPECT_EQ(child.tokens(), static_cast<int64_t>(prompt.size()));

  // The child takes a turn of its own...
  StreamResult child_turn = Generate(*generation_, GreedyRequest({50, 60}, 10, child.session_id()));
  ASSERT_TRUE(child_turn.status.ok());
  v1::Session parent_after;
  ASSERT_TRUE(GetSession(parent, &parent_after).ok());
  EXPECT_EQ(parent_after.tokens(), static_cast<int64_t>(prompt.size()));

  // ...and the parent continues as if the child never existed.
  StreamResult parent_turn = Generate(*generation_, GreedyRequest({70, 80}, 10, parent));
  StreamResult fresh = Generate(*generation_, GreedyRequest(Concat({prompt, {70, 80}}), 10));
  ASSERT_TRUE(parent_turn.status.ok());
  EXPECT_EQ(parent_turn.token_ids, fresh.token_ids);
  StreamResult child_fresh = Generate(*generation_, GreedyRequest(Concat({prompt, {50, 60}}), 10));
  EXPECT_EQ(child_turn.token_ids, child_fresh.token_ids);
}

TEST_F(ServerTest, CancelledTurnLeavesTheSessionConsistent) {
  const std::vector<int32_t> t1 = {1, 2, 3, 4, 5, 6};
  const std::vector<int32_t> t2 = {7, 8, 9};
  const std::string id = CreateSession({});
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader =
      generation_->Generate(&context, GreedyRequest(t1, kLongGeneration, id));
  std::vector<int32_t> received;
  v1::GenerateResponse response;
  while (received.size() < 5 && reader->Read(&response)) {
    received.insert(received.end(), response.token_ids().begin(), response.token_ids().end());
  }
  context.TryCancel();
  while (reader->Read(&response)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);

  // The state holds t1 and every token the engine streamed: at least those received.
  const v1::Session s = WaitIdle(id);
  const int64_t streamed = s.tokens() - static_cast<int64_t>(t1.size());
  ASSERT_GE(streamed, static_cast<int64_t>(received.size()));
  // The session says how many of the turn's tokens it kept, read or not.
  EXPECT_EQ(s.last_generated_tokens(), streamed);
  ASSERT_LT(streamed, kLongGeneration);
  StreamResult reference = Generate(*generation_, GreedyRequest(t1, static_cast<int>(streamed)));
  ASSERT_EQ(reference.token_ids.size(), static_cast<size_t>(streamed));
  EXPECT_TRUE(std::equal(received.begin(), received.end(), reference.token_ids.begin()));

  // The session is usable, and continues from exactly that state.
  StreamResult turn2 = Generate(*generation_, GreedyRequest(t2, 8, id));
  ASSERT_TRUE(turn2.status.ok()) << turn2.status.error_message();
  StreamResult whole =
      Generate(*generation_, GreedyRequest(Concat({t1, reference.token_ids, t2}), 8));
  EXPECT_EQ(turn2.token_ids, whole.token_ids);
}

TEST_F(ServerTest, DeadlineEndsTheGenerationAndFreesTheEngine) {
  const std::string id = CreateSession({1, 2, 3});
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(300));
  const absl::Time start = absl::Now();
  StreamResult stream =
      Generate(*generation_, GreedyRequest({4, 5}, kLongGeneration, id), &context);
  EXPECT_EQ(stream.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  // The engine drops the request at its next step: nothing keeps running.
  bool idle = false;
  for (int i = 0; i < 300 && !idle; ++i) {
    idle = server_->engine()->Stats().requests_running == 0 &&
           server_->engine()->Stats().requests_waiting == 0;
    if (!idle) absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_TRUE(idle);
  const v1::Session s = WaitIdle(id);
  EXPECT_GE(s.tokens(), 5);
}

// Every validation rule, through gRPC: the code and a part of the message.
TEST_F(ServerTest, EveryInvalidRequestGetsAClearError) {
  struct Row {
    const char* name;
    std::function<void(v1::GenerateRequest*)> mutate;
    grpc::StatusCode code;
    const char* message_part;
  };
  const std::vector<Row> rows = {
      {"no input", [](auto* r) { r->clear_input(); }, grpc::StatusCode::INVALID_ARGUMENT,
       "input is empty"},
      {"empty text", [](auto* r) { r->set_text(""); }, grpc::StatusCode::INVALID_ARGUMENT,
       "input text is empty"},
      {"empty ids", [](auto* r) { r->mutable_token_ids(); }, grpc::StatusCode::INVALID_ARGUMENT,
       "token_ids is empty"},
      {"id >= vocab", [](auto* r) { r->mutable_token_ids()->add_ids(257); },
       grpc::StatusCode::INVALID_ARGUMENT, "[0, 257)"},
      {"negative id", [](auto* r) { r->mutable_token_ids()->add_ids(-5); },
       grpc::StatusCode::INVALID_ARGUMENT, "[0, 257)"},
      {"prompt too long", [](auto* r) { r->set_text(std::string(2049, 'a')); },
       grpc::StatusCode::INVALID_ARGUMENT, "--max_prompt_tokens"},
      {"max_tokens 0", [](auto* r) { r->mutable_stopping()->set_max_tokens(0); },
       grpc::StatusCode::INVALID_ARGUMENT, "[1, 1000000]"},
      {"max_tokens too big",
       [](auto* r) { r->mutable_stopping()->set_max_tokens(kLongGeneration + 1); },
       grpc::StatusCode::INVALID_ARGUMENT, "--max_new_tokens"},
      {"negative temperature", [](auto* r) { r->mutable_sampling()->set_temperature(-1); },
       grpc::StatusCode::INVALID_ARGUMENT, "temperature"},
      {"top_p 0", [](auto* r) { r->mutable_sampling()->set_top_p(0); },
       grpc::StatusCode::INVALID_ARGUMENT, "(0, 1]"},
      {"top_p 2", [](auto* r) { r->mutable_sampling()->set_top_p(2); },
       grpc::StatusCode::INVALID_ARGUMENT, "(0, 1]"},
      {"negative top_k", [](auto* r) { r->mutable_sampling()->set_top_k(-3); },
       grpc::StatusCode::INVALID_ARGUMENT, "top_k"},
      {"min_p 2", [](auto* r) { r->mutable_sampling()->set_min_p(2); },
       grpc::StatusCode::INVALID_ARGUMENT, "min_p"},
      {"repetition_penalty 0", [](auto* r) { r->mutable_sampling()->set_repetition_penalty(0); },
       grpc::StatusCode::INVALID_ARGUMENT, "repetition_penalty"},
      {"logprobs 21", [](auto* r) { r->set_logprobs(21); }, grpc::StatusCode::INVALID_ARGUMENT,
       "[0, 20]"},
      {"17 stop strings",
       [](auto* r) {
         for (int i = 0; i < 17; ++i) r->mutable_stopping()->add_stop("s");
       },
       grpc::StatusCode::INVALID_ARGUMENT, "at most 16"},
      {"long stop string", [](auto* r) { r->mutable_stopping()->add_stop(std::string(300, 's')); },
       grpc::StatusCode::INVALID_ARGUMENT, "1 to 256 bytes"},
      {"empty stop string", [](auto* r) { r->mutable_stopping()->add_stop(""); },
       grpc::StatusCode::INVALID_ARGUMENT, "is empty"},
      {"malformed session", [](auto* r) { r->set_session_id("abc"); },
       grpc::StatusCode::INVALID_ARGUMENT, "32 lowercase hexadecimal digits"},
      {"unknown session", [](auto* r) { r->set_session_id("00000000000000000000000000000000"); },
       grpc::StatusCode::NOT_FOUND, "not found"},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.name);
    v1::GenerateRequest request;
    request.set_text("hi");
    row.mutate(&request);
    StreamResult stream = Generate(*generation_, request);
    EXPECT_EQ(stream.status.error_code(), row.code) << stream.status.error_message();
    EXPECT_THAT(stream.status.error_message(), HasSubstr(row.message_part));
    EXPECT_TRUE(stream.responses.empty());
  }
}

// Text that is not UTF-8 cannot be sent through generated C++ stubs (protobuf checks), so these
// requests are raw bytes: field 1 (text) holding an invalid sequence.
TEST_F(ServerTest, InvalidUtf8GetsInvalidArgumentNamingTheField) {
  const std::string bad_text = std::string(
      "\x0a\x03"
      "a\xff\xfe",
      5);
  struct Case {
    const char* method;
    std::string bytes;
    const char* field;
  };
  const Case cases[] = {
      {"/mambaserve.v1.Generation/Generate", bad_text, "field 'text'"},
      {"/mambaserve.v1.Generation/Generate", std::string("\x0a\x01x\x2a\x04\x12\x02\xc3\x28", 9),
       "field 'stopping.stop'"},
      {"/mambaserve.v1.Sessions/CreateSession", bad_text, "field 'text'"},
      {"/mambaserve.v1.Models/Tokenize", bad_text, "field 'text'"},
      {"/mambaserve.v1.Sessions/GetSession", bad_text, "field 'session_id'"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.method);
    RawResult result = RawCall(channel_, c.method, c.bytes);
    EXPECT_EQ(result.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(result.status.error_message(), HasSubstr(c.field));
    EXPECT_THAT(result.status.error_message(), HasSubstr("not valid UTF-8"));
  }
  // Bytes that are not a message at all.
  RawResult garbage =
      RawCall(channel_, "/mambaserve.v1.Generation/Generate", std::string("\x0a\x7f", 2));
  EXPECT_EQ(garbage.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(garbage.status.error_message(), HasSubstr("GenerateRequest"));
}

TEST_F(ServerTest, SessionErrors) {
  // Busy: a second turn while one runs.
  const std::string id = CreateSession({1, 2});
  grpc::ClientContext running;
  auto reader = generation_->Generate(&running, GreedyRequest({3}, kLongGeneration, id));
  v1::GenerateResponse first;
  ASSERT_TRUE(reader->Read(&first));
  StreamResult second = Generate(*generation_, GreedyRequest({4}, 4, id));
  EXPECT_EQ(second.status.error_code(), grpc::StatusCode::FAILED_PRECONDITION)
      << second.status.error_message();
  running.TryCancel();
  while (reader->Read(&first)) {
  }
  reader->Finish();

  // Closing ends the session; then it is unknown everywhere.
  WaitIdle(id);
  v1::CloseSessionRequest close;
  close.set_session_id(id);
  v1::CloseSessionResponse closed;
  grpc::ClientContext c1;
  ASSERT_TRUE(sessions_->CloseSession(&c1, close, &closed).ok());
  v1::Session s;
  EXPECT_EQ(GetSession(id, &s).error_code(), grpc::StatusCode::NOT_FOUND);
  grpc::ClientContext c2;
  EXPECT_EQ(sessions_->CloseSession(&c2, close, &closed).error_code(), grpc::StatusCode::NOT_FOUND);
  v1::ForkSessionRequest fork;
  fork.set_session_id(id);
  grpc::ClientContext c3;
  EXPECT_EQ(sessions_->ForkSession(&c3, fork, &s).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Generate(*generation_, GreedyRequest({1}, 2, id)).status.error_code(),
            grpc::StatusCode::NOT_FOUND);

  // Malformed ids are rejected before the engine sees them.
  EXPECT_EQ(GetSession("XYZ", &s).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  v1::ListSessionsRequest list;
  list.set_page_size(5000);
  v1::ListSessionsResponse page;
  grpc::ClientContext c4;
  grpc::Status listed = sessions_->ListSessions(&c4, list, &page);
  EXPECT_EQ(listed.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(listed.error_message(), HasSubstr("[1, 1000]"));
}

TEST_F(ServerTest, ListSessionsPages) {
  std::set<std::string> created;
  for (int i = 0; i < 5; ++i) created.insert(CreateSession({i}));
  std::set<std::string> seen;
  std::string token;
  int pages = 0;
  do {
    v1::ListSessionsRequest request;
    request.set_page_size(2);
    request.set_page_token(token);
    v1::ListSessionsResponse page;
    grpc::ClientContext context;
    ASSERT_TRUE(sessions_->ListSessions(&context, request, &page).ok());
    EXPECT_LE(page.sessions_size(), 2);
    EXPECT_EQ(page.total_size(), 5);
    for (const v1::Session& s : page.sessions()) seen.insert(s.session_id());
    token = page.next_page_token();
    ASSERT_LT(++pages, 10);
  } while (!token.empty());
  EXPECT_EQ(seen, created);
}

// A CreateSession whose caller gives up (its deadline passes) before the reply leaves no session
// behind: a retrying client would otherwise leak one session per retry, held for its TTL.
TEST_F(ServerTest, SessionsWhoseCallerGaveUpAreNotKept) {
  const std::vector<int32_t> prompt(2000, 7);
  int gave_up = 0;
  for (int i = 0; i < 20; ++i) {
    v1::CreateSessionRequest request;
    request.mutable_token_ids()->mutable_ids()->Add(prompt.begin(), prompt.end());
    v1::Session session;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(2));
    grpc::Status status = sessions_->CreateSession(&context, request, &session);
    if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
      ++gave_up;
    } else if (status.ok()) {
      v1::CloseSessionRequest close;
      close.set_session_id(session.session_id());
      v1::CloseSessionResponse closed;
      grpc::ClientContext close_context;
      ASSERT_TRUE(sessions_->CloseSession(&close_context, close, &closed).ok());
    }
  }
  EXPECT_GT(gave_up, 0);
  int64_t total = -1;
  for (int i = 0; i < 200 && total != 0; ++i) {
    v1::ListSessionsRequest list;
    v1::ListSessionsResponse page;
    grpc::ClientContext context;
    ASSERT_TRUE(sessions_->ListSessions(&context, list, &page).ok());
    total = page.total_size();
    if (total != 0) absl::SleepFor(absl::Milliseconds(25));
  }
  EXPECT_EQ(total, 0) << "sessions outlived the calls that created them";
}

TEST_F(ServerTest, ExportAndImportContinueExactly) {
  const std::vector<int32_t> prompt = {5, 6, 7, 8};
  const std::string id = CreateSession(prompt);
  StreamResult turn1 = Generate(*generation_, GreedyRequest({9}, 6, id));
  ASSERT_TRUE(turn1.status.ok());
  v1::ExportSessionRequest export_request;
  export_request.set_session_id(id);
  v1::ExportSessionResponse exported;
  grpc::ClientContext c1;
  ASSERT_TRUE(sessions_->ExportSession(&c1, export_request, &exported).ok());
  EXPECT_EQ(exported.tokens(), static_cast<int64_t>(prompt.size() + 1 + 6));
  EXPECT_EQ(exported.model_identity(), server_->engine()->model_info().identity);

  v1::ImportSessionRequest import_request;
  import_request.set_state(exported.state());
  v1::Session imported;
  grpc::ClientContext c2;
  ASSERT_TRUE(sessions_->ImportSession(&c2, import_request, &imported).ok());
  EXPECT_NE(imported.session_id(), id);
  EXPECT_EQ(imported.tokens(), exported.tokens());

  StreamResult a = Generate(*generation_, GreedyRequest({10, 11}, 8, id));
  StreamResult b = Generate(*generation_, GreedyRequest({10, 11}, 8, imported.session_id()));
  ASSERT_TRUE(a.status.ok() && b.status.ok());
  EXPECT_EQ(a.token_ids, b.token_ids);

  // Corrupt and empty states are refused with a reason.
  import_request.set_state("garbage");
  grpc::ClientContext c3;
  grpc::Status bad = sessions_->ImportSession(&c3, import_request, &imported);
  EXPECT_NE(bad.error_code(), grpc::StatusCode::OK);
  EXPECT_FALSE(bad.error_message().empty());
  import_request.clear_state();
  grpc::ClientContext c4;
  EXPECT_EQ(sessions_->ImportSession(&c4, import_request, &imported).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(ServerTest, ClientChosenSessionIds) {
  const std::string chosen = "00112233445566778899aabbccddeeff";
  v1::CreateSessionRequest request;
  request.set_session_id(chosen);
  request.set_text("ab");
  v1::Session session;
  {
    grpc::ClientContext context;
    context.AddMetadata("x-session-id", chosen);
    grpc::Status status = sessions_->CreateSession(&context, request, &session);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(session.session_id(), chosen);
  }
  {
    grpc::ClientContext context;
    EXPECT_EQ(sessions_->CreateSession(&context, request, &session).error_code(),
              grpc::StatusCode::ALREADY_EXISTS);
  }
  {
    // Only the metadata: the server adopts the id the proxy routed by.
    const std::string by_metadata = "ffeeddccbbaa99887766554433221100";
    grpc::ClientContext context;
    context.AddMetadata("x-session-id", by_metadata);
    ASSERT_TRUE(sessions_->CreateSession(&context, v1::CreateSessionRequest(), &session).ok());
    EXPECT_EQ(session.session_id(), by_metadata);
  }
  {
    grpc::ClientContext context;
    context.AddMetadata("x-session-id", "0000000000000000000000000000000a");
    grpc::Status status = sessions_->CreateSession(&context, request, &session);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), HasSubstr("differ"));
  }
  {
    grpc::ClientContext context;
    context.AddMetadata("x-session-id", "not-an-id");
    grpc::Status status = sessions_->CreateSession(&context, v1::CreateSessionRequest(), &session);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  // A fork keeps the parent's first 16 hex digits (what proxies hash).
  v1::ForkSessionRequest fork;
  fork.set_session_id(chosen);
  v1::Session child;
  grpc::ClientContext c1;
  ASSERT_TRUE(sessions_->ForkSession(&c1, fork, &child).ok());
  EXPECT_EQ(child.session_id().substr(0, 16), chosen.substr(0, 16));
  EXPECT_NE(child.session_id(), chosen);
  // An import may keep the exported session's id (moving it between replicas).
  v1::ExportSessionRequest export_request;
  export_request.set_session_id(chosen);
  v1::ExportSessionResponse exported;
  grpc::ClientContext c2;
  ASSERT_TRUE(sessions_->ExportSession(&c2, export_request, &exported).ok());
  v1::CloseSessionRequest close;
  close.set_session_id(chosen);
  v1::CloseSessionResponse closed;
  grpc::ClientContext c3;
  ASSERT_TRUE(sessions_->CloseSession(&c3, close, &closed).ok());
  v1::ImportSessionRequest import_request;
  import_request.set_state(exported.state());
  import_request.set_session_id(chosen);
  grpc::ClientContext c4;
  ASSERT_TRUE(sessions_->ImportSession(&c4, import_request, &session).ok());
  EXPECT_EQ(session.session_id(), chosen);
  EXPECT_EQ(session.tokens(), 2);
}

TEST_F(ServerTest, IdleSessionsExpireAfterTheirTtl) {
  const std::string short_lived = CreateSession({1, 2}, /*ttl_seconds=*/1);
  const std::string long_lived = CreateSession({1, 2}, /*ttl_seconds=*/600);
  v1::Session s;
  ASSERT_TRUE(GetSession(short_lived, &s).ok());
  EXPECT_EQ(s.ttl_seconds(), 1u);
  absl::SleepFor(absl::Milliseconds(2500));
  grpc::Status expired = GetSession(short_lived, &s);
  EXPECT_EQ(expired.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Generate(*generation_, GreedyRequest({3}, 2, short_lived)).status.error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_TRUE(GetSession(long_lived, &s).ok());
}

TEST_F(ServerTest, ThirtyTwoConcurrentClientsGetTheirOwnOutput) {
  constexpr int kClients = 32;
  std::vector<v1::GenerateRequest> requests(kClients);
  std::vector<std::vector<int32_t>> expected(kClients);
  for (int i = 0; i < kClients; ++i) {
    v1::GenerateRequest& r = requests[i];
    r.set_text(absl::StrCat("client ", i, " says ", std::string(i % 7 + 1, 'a' + i % 26)));
    r.mutable_sampling()->set_temperature(1.0f);
    r.mutable_sampling()->set_seed(1000 + i);
    r.mutable_stopping()->set_max_tokens(16 + i % 9);
    r.mutable_stopping()->set_ignore_eos(true);
    StreamResult alone = Generate(*generation_, r);
    ASSERT_TRUE(alone.status.ok());
    expected[i] = alone.token_ids;
  }
  // Different prompts and seeds give different outputs, so a mix-up would show.
  std::set<std::vector<int32_t>> distinct(expected.begin(), expected.end());
  EXPECT_GT(distinct.size(), kClients / 2);

  std::vector<StreamResult> results(kClients);
  std::vector<std::thread> threads;
  std::atomic<int> ready{0};
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      // A channel per client: separate connections, like separate users.
      auto stub = v1::Generation::NewStub(Connect(server_->address()));
      ready.fetch_add(1);
      while (ready.load() < kClients) std::this_thread::yield();
      results[i] = Generate(*stub, requests[i]);
    });
  }
  for (std::thread& t : threads) t.join();
  for (int i = 0; i < kClients; ++i) {
    SCOPED_TRACE(i);
    ASSERT_TRUE(results[i].status.ok()) << results[i].status.error_message();
    EXPECT_EQ(results[i].token_ids, expected[i]);
    EXPECT_EQ(results[i].finish_reason, v1::FINISH_REASON_LENGTH);
  }
}

TEST_F(ServerTest, SlowClientReceivesMergedMessages) {
  // A small flow-control window: the server's writes stall while the client does not read, the
  // engine keeps producing, and what accumulated goes out in fewer, larger messages.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 1024);
  auto stub = v1::Generation::NewStub(
      grpc::CreateCustomChannel(server_->address(), grpc::InsecureChannelCredentials(), args));
  const v1::GenerateRequest request = GreedyRequest({1, 2, 3}, 200);
  grpc::ClientContext context;
  auto reader = stub->Generate(&context, request);
  absl::SleepFor(absl::Seconds(2));
  std::vector<int32_t> ids;
  size_t messages = 0;
  v1::GenerateResponse response;
  while (reader->Read(&response)) {
    ++messages;
    ids.insert(ids.end(), response.token_ids().begin(), response.token_ids().end());
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(ids, Generate(*generation_, request).token_ids);
  EXPECT_LT(messages, ids.size());
}

TEST_F(ServerTest, TokenizeDetokenizeAndModelInfo) {
  v1::TokenizeRequest tokenize;
  tokenize.set_text("héllo");
  v1::TokenizeResponse ids;
  grpc::ClientContext c1;
  ASSERT_TRUE(models_->Tokenize(&c1, tokenize, &ids).ok());
  EXPECT_EQ(ids.token_ids_size(), 6);  // byte tokenizer: é is two bytes
  v1::DetokenizeRequest detokenize;
  *detokenize.mutable_token_ids() = ids.token_ids();
  v1::DetokenizeResponse text;
  grpc::ClientContext c2;
  ASSERT_TRUE(models_->Detokenize(&c2, detokenize, &text).ok());
  EXPECT_EQ(text.text(), "héllo");
  detokenize.add_token_ids(100000);
  grpc::ClientContext c3;
  grpc::Status bad = models_->Detokenize(&c3, detokenize, &text);
  EXPECT_EQ(bad.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  v1::ModelInfo info;
  grpc::ClientContext c4;
  ASSERT_TRUE(models_->GetModelInfo(&c4, v1::GetModelInfoRequest(), &info).ok());
  EXPECT_EQ(info.architecture(), "mamba");
  EXPECT_EQ(info.vocab_size(), 257);
  EXPECT_EQ(info.backend(), "cpu");
  EXPECT_EQ(info.max_prompt_tokens(), 2048);
  EXPECT_EQ(info.max_new_tokens(), kLongGeneration);
  EXPECT_GT(info.num_state_slots(), 0);
  EXPECT_GT(info.state_bytes_per_session(), 0);
}

TEST_F(ServerTest, ReflectionListsTheServices) {
  // The reflection protocol's messages are in the generated pool (grpc++_reflection); build
  // them dynamically instead of depending on headers that are not installed.
  const google::protobuf::DescriptorPool* pool = google::protobuf::DescriptorPool::generated_pool();
  const google::protobuf::Descriptor* request_type =
      pool->FindMessageTypeByName("grpc.reflection.v1alpha.ServerReflectionRequest");
  const google::protobuf::Descriptor* response_type =
      pool->FindMessageTypeByName("grpc.reflection.v1alpha.ServerReflectionResponse");
  ASSERT_NE(request_type, nullptr);
  ASSERT_NE(response_type, nullptr);
  google::protobuf::DynamicMessageFactory factory(pool);
  std::unique_ptr<google::protobuf::Message> request(factory.GetPrototype(request_type)->New());
  request->GetReflection()->SetString(request.get(), request_type->FindFieldByName("list_services"),
                                      "");
  RawResult result =
      RawCall(channel_, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
              request->SerializeAsString());
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  ASSERT_EQ(result.responses.size(), 1u);
  std::unique_ptr<google::protobuf::Message> response(factory.GetPrototype(response_type)->New());
  ASSERT_TRUE(response->ParseFromString(result.responses[0]));
  const std::string listed = response->DebugString();
  EXPECT_THAT(listed, HasSubstr("mambaserve.v1.Generation"));
  EXPECT_THAT(listed, HasSubstr("mambaserve.v1.Sessions"));
  EXPECT_THAT(listed, HasSubstr("mambaserve.v1.Models"));
}

class ServerLimitsTest : public ServerTest {
 protected:
  void SetUp() override {
    ServerOptions options = TinyServerOptions();
    options.engine.sessions.max_sessions = 2;
    StartServer(options);
  }
};

TEST_F(ServerLimitsTest, CreatingPastMaxSessionsIsResourceExhausted) {
  CreateSession({1});
  CreateSession({2});
  v1::CreateSessionRequest request;
  v1::Session session;
  grpc::ClientContext context;
  grpc::Status status = sessions_->CreateSession(&context, request, &session);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  EXPECT_FALSE(status.error_message().empty());
}

// A tokenizer whose post-processor puts specials around a text (here GPT-NeoX components with a
// TemplateProcessing "<|endoftext|> $A <|padding|>", as Llama-style tokenizers put a BOS in
// front): a stateless text prompt gets them; a session gets the leading ones once, in front of its
// first content, and later turns none.
class PromptSpecialsTest : public ServerTest {
 protected:
  void SetUp() override {
    model::ModelConfig c = model::SyntheticConfig("tiny").value();
    c.vocab_size = 1024;
    c.bos_token_id = c.eos_token_id = c.pad_token_id = 0;
    absl::StatusOr<model::ModelWeights> w = model::MakeSyntheticWeights(c, 3, model::DType::kF32);
    ASSERT_TRUE(w.ok()) << w.status();
    ASSERT_TRUE(model::SaveCheckpoint(c, *w, dir_.path()).ok());
    std::filesystem::copy_file(
        std::string(MAMBA_TEST_DATA_DIR) + "/tokenizer/small_flags/tokenizer.json",
        dir_.path() + "/tokenizer.json");
    ServerOptions options = TinyServerOptions();
    options.engine.model = dir_.path();
    StartServer(options);
  }

  std::vector<int32_t> Encode(const std::string& text, bool specials) {
    return server_->engine()->tokenizer().Encode(text, specials).value();
  }

  mamba::testing::TempDir dir_;
};

TEST_F(PromptSpecialsTest, TextPromptsGetTheTokenizersSpecialsOnce) {
  const std::vector<int32_t> with = Encode("hello there", true);
  const std::vector<int32_t> without = Encode("hello there", false);
  ASSERT_EQ(with.size(), without.size() + 2);
  EXPECT_EQ(server_->engine()->model_info().text_prefix_tokens, std::vector<int32_t>{0});

  v1::GenerateRequest stateless;
  stateless.set_text("hello there");
  stateless.mutable_stopping()->set_max_tokens(3);
  stateless.mutable_stopping()->set_ignore_eos(true);
  StreamResult r = Generate(*generation_, stateless);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.usage.prompt_tokens(), static_cast<int32_t>(with.size()));
  // The same as the ids with the specials.
  StreamResult ids = Generate(*generation_, GreedyRequest(with, 3));
  EXPECT_EQ(r.token_ids, ids.token_ids);

  // A session created empty: its first text turn starts with the prefix, the next has none.
  const std::string id = CreateSession({});
  v1::GenerateRequest turn = stateless;
  turn.set_session_id(id);
  StreamResult t1 = Generate(*generation_, turn);
  ASSERT_TRUE(t1.status.ok()) << t1.status.error_message();
  EXPECT_EQ(t1.usage.prompt_tokens(), static_cast<int32_t>(without.size() + 1));
  turn.set_text(" again");
  StreamResult t2 = Generate(*generation_, turn);
  ASSERT_TRUE(t2.status.ok());
  EXPECT_EQ(t2.usage.prompt_tokens(), static_cast<int32_t>(Encode(" again", false).size()));
  const std::vector<int32_t> history =
      Concat({{0}, without, t1.token_ids, Encode(" again", false)});
  EXPECT_EQ(t2.token_ids, Generate(*generation_, GreedyRequest(history, 3)).token_ids);

  // A session created with text holds the prefix already.
  v1::CreateSessionRequest create;
  create.set_text("hello there");
  v1::Session session;
  grpc::ClientContext context;
  ASSERT_TRUE(sessions_->CreateSession(&context, create, &session).ok());
  EXPECT_EQ(session.tokens(), static_cast<int64_t>(with.size()));
  turn.set_session_id(session.session_id());
  StreamResult t3 = Generate(*generation_, turn);
  ASSERT_TRUE(t3.status.ok());
  EXPECT_EQ(t3.usage.prompt_tokens(), static_cast<int32_t>(Encode(" again", false).size()));
}

// Text prompts longer than kInlinePromptBytes are tokenized on the prompt threads, not on the gRPC
// thread that received the call; the answers must be the same as for short ones.
class LongPromptTest : public ServerTest {
 protected:
  void SetUp() override {
    ServerOptions options = TinyServerOptions();
    options.limits.max_prompt_tokens = 20000;
    options.prompt_threads = 1;
    StartServer(options);
  }

  // Printable text of `bytes` bytes: the tiny model's byte tokenizer makes one token of each.
  static std::string LongText(size_t bytes) {
    std::string text;
    while (text.size() < bytes) text += "the quick brown fox jumps over the lazy dog. ";
    text.resize(bytes);
    return text;
  }
};

TEST_F(LongPromptTest, LongTextAnswersLikeItsTokenIds) {
  const std::string text = LongText(kInlinePromptBytes + 1000);
  ASSERT_TRUE(TokenizeOffCallThread([&] {
    v1::GenerateRequest r;
    r.set_text(text);
    return r;
  }()));
  v1::GenerateRequest as_text;
  as_text.set_text(text);
  as_text.mutable_stopping()->set_max_tokens(6);
  as_text.mutable_stopping()->set_ignore_eos(true);
  v1::GenerateRequest as_ids = as_text;
  as_ids.mutable_token_ids()->mutable_ids()->Add(text.begin(), text.end());
  StreamResult from_text = Generate(*generation_, as_text);
  StreamResult from_ids = Generate(*generation_, as_ids);
  ASSERT_TRUE(from_text.status.ok()) << from_text.status.error_message();
  ASSERT_TRUE(from_ids.status.ok()) << from_ids.status.error_message();
  EXPECT_EQ(from_text.usage.prompt_tokens(), static_cast<int32_t>(text.size()));
  EXPECT_EQ(from_text.token_ids, from_ids.token_ids);

  v1::CreateSessionRequest create;
  create.set_text(text);
  v1::Session session;
  grpc::ClientContext context;
  grpc::Status status = sessions_->CreateSession(&context, create, &session);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(session.tokens(), static_cast<int64_t>(text.size()));
}

TEST_F(LongPromptTest, LongTextOverTheLimitIsRefusedAfterTokenizing) {
  // Under the byte bound (the longest token is several bytes) but over the token limit: refused
  // from the prompt thread with the same message as inline.
  const std::string text = LongText(20001);
  v1::GenerateRequest request;
  request.set_text(text);
  StreamResult result = Generate(*generation_, request);
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(result.status.error_message(), HasSubstr("input has 20001 tokens; at most 20000"));

  v1::CreateSessionRequest create;
  create.set_text(text);
  v1::Session session;
  grpc::ClientContext context;
  grpc::Status status = sessions_->CreateSession(&context, create, &session);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("input has 20001 tokens"));
}

TEST_F(LongPromptTest, ShutdownWithLongPromptsQueuedEndsEveryCall) {
  // One prompt thread and eight long prompts: most are still queued when the server shuts down.
  // Every call ends (served, or refused because the server is going away), none hangs, and the
  // engine is never reached after it stopped (ASan would see it).
  const std::string text = LongText(19000);
  std::vector<std::thread> clients;
  std::vector<grpc::Status> statuses(8);
  for (int i = 0; i < 8; ++i) {
    clients.emplace_back([&, i] {
      if (i % 2 == 0) {
        v1::GenerateRequest request;
        request.set_text(text);
        request.mutable_stopping()->set_max_tokens(2);
        statuses[i] = Generate(*generation_, request).status;
      } else {
        v1::CreateSessionRequest create;
        create.set_text(text);
        v1::Session session;
        grpc::ClientContext context;
        context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
        statuses[i] = sessions_->CreateSession(&context, create, &session);
      }
    });
  }
  absl::SleepFor(absl::Milliseconds(20));
  server_->Shutdown();
  for (std::thread& t : clients) t.join();
  for (const grpc::Status& status : statuses) {
    EXPECT_THAT(status.error_code(),
                ::testing::AnyOf(grpc::StatusCode::OK, grpc::StatusCode::UNAVAILABLE,
                                 grpc::StatusCode::CANCELLED))
        << status.error_message();
  }
}

// Health and the lifecycle: loading, serving, draining.
TEST(ServerLifecycleTest, HealthFollowsLoadingServingAndDraining) {
  ServerOptions options = TinyServerOptions();
  options.drain_timeout = absl::Seconds(2);
  absl::StatusOr<std::unique_ptr<MambaServer>> started = MambaServer::Start(options);
  ASSERT_TRUE(started.ok()) << started.status();
  MambaServer& server = **started;
  auto channel = Connect(server.address());
  auto generation = v1::Generation::NewStub(channel);

  // Loading: alive, not ready; model calls are refused with a reason.
  EXPECT_EQ(HealthStatus(channel, "liveness"), "SERVING");
  EXPECT_EQ(HealthStatus(channel, "readiness"), "NOT_SERVING");
  EXPECT_EQ(HealthStatus(channel, ""), "NOT_SERVING");
  EXPECT_EQ(HealthStatus(channel, "no-such-service"), "NOT_FOUND");
  StreamResult early = Generate(*generation, GreedyRequest({1}, 2));
  EXPECT_EQ(early.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(early.status.error_message(), HasSubstr("loading"));

  ASSERT_TRUE(server.LoadModel().ok());
  EXPECT_EQ(HealthStatus(channel, "readiness"), "SERVING");
  EXPECT_EQ(HealthStatus(channel, ""), "SERVING");
  EXPECT_EQ(HealthStatus(channel, "liveness"), "SERVING");

  // A long stream is running when the drain starts.
  grpc::ClientContext context;
  auto reader = generation->Generate(&context, GreedyRequest({1, 2, 3}, kLongGeneration));
  v1::GenerateResponse response;
  ASSERT_TRUE(reader->Read(&response));
  std::thread drain([&] { server.Shutdown(); });
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_TRUE(server.draining());
  EXPECT_EQ(HealthStatus(channel, "readiness"), "NOT_SERVING");
  EXPECT_EQ(HealthStatus(channel, ""), "NOT_SERVING");
  EXPECT_EQ(HealthStatus(channel, "liveness"), "SERVING");
  StreamResult refused = Generate(*generation, GreedyRequest({1}, 2));
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(refused.status.error_message(), HasSubstr("shutting down"));

  // After the drain time the running stream is cancelled: its last message says so.
  v1::GenerateResponse last;
  int64_t tokens = response.token_ids_size();
  while (reader->Read(&response)) {
    tokens += response.token_ids_size();
    last = response;
  }
  const grpc::Status final_status = reader->Finish();
  EXPECT_TRUE(final_status.ok()) << final_status.error_message();
  EXPECT_EQ(last.finish_reason(), v1::FINISH_REASON_CANCELLED);
  EXPECT_EQ(last.usage().generated_tokens(), tokens);
  EXPECT_LT(tokens, kLongGeneration);
  drain.join();
}

TEST(ServerLifecycleTest, StreamsThatFinishWithinTheDrainEndNormally) {
  ServerOptions options = TinyServerOptions();
  options.drain_timeout = absl::Seconds(60);
  absl::StatusOr<std::unique_ptr<MambaServer>> started = MambaServer::Start(options);
  ASSERT_TRUE(started.ok()) << started.status();
  MambaServer& server = **started;
  ASSERT_TRUE(server.LoadModel().ok());
  auto generation = v1::Generation::NewStub(Connect(server.address()));

  // A stream that runs for about a second and a half on this machine, whatever its speed.
  const absl::Time t0 = absl::Now();
  ASSERT_TRUE(Generate(*generation, GreedyRequest({1, 2, 3}, 2000)).status.ok());
  const double tokens_per_second = 2000 / absl::ToDoubleSeconds(absl::Now() - t0);
  const int max_tokens =
      static_cast<int>(std::clamp(tokens_per_second * 1.5, 2000.0, double{kLongGeneration}));

  grpc::ClientContext context;
  auto reader = generation->Generate(&context, GreedyRequest({1, 2, 3}, max_tokens));
  v1::GenerateResponse response;
  ASSERT_TRUE(reader->Read(&response));
  int64_t tokens = response.token_ids_size();
  const absl::Time start = absl::Now();
  std::thread drain([&] { server.Shutdown(); });
  v1::GenerateResponse last;
  while (reader->Read(&response)) {
    tokens += response.token_ids_size();
    last = response;
  }
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_EQ(last.finish_reason(), v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(tokens, max_tokens);
  drain.join();
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));  // no waiting for the full drain time
}

}  // namespace
}  // namespace mamba::server::testing
