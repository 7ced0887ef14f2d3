// The invalid-input table: hostile and malformed requests, each sent as raw bytes to a live
// in-process server with authentication on, each with the status code it must end with and a
// part of the message that tells the client what was wrong. After the table the server must
// still serve a valid request.
#include <chrono>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/security/security_fixtures.h"
#include "tests/integration/server/server_test_util.h"

namespace mamba::server::testing {
namespace {

using ::testing::HasSubstr;
using Metadata = std::multimap<std::string, std::string>;

constexpr char kGenerate[] = "/mambaserve.v1.Generation/Generate";
const std::string kSessions = "/mambaserve.v1.Sessions/";
const std::string kModels = "/mambaserve.v1.Models/";
constexpr int32_t kMaxReceiveBytes = 64 << 10;

// Protobuf wire format by hand, so that rows can send what a well-behaved library would not.
std::string Varint(uint64_t v) {
  std::string out;
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
  return out;
}
std::string LengthDelimited(int field, const std::string& payload) {
  return Varint(static_cast<uint64_t>(field) << 3 | 2) + Varint(payload.size()) + payload;
}
std::string VarintField(int field, uint64_t value) {
  return Varint(static_cast<uint64_t>(field) << 3) + Varint(value);
}

v1::GenerateRequest Greedy(std::vector<int32_t> ids, int max_tokens) {
  return GreedyRequest(ids, max_tokens);
}

std::string Bytes(const google::protobuf::Message& m) { return m.SerializeAsString(); }

struct Row {
  std::string name;
  std::string method;
  std::string request;  // serialized request bytes, sent as they are
  Metadata metadata;
  grpc::StatusCode code;
  std::string message;  // a part of the status message
};

class InvalidInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = scratch_.path();
    ASSERT_FALSE(dir_.empty());
    ASSERT_TRUE(WriteFile(dir_ + "/tokens", AlphaBravoTokensFile()));
    ServerOptions options = TinyServerOptions();
    options.auth_tokens_file = dir_ + "/tokens";
    options.max_receive_message_bytes = kMaxReceiveBytes;
    auto server = MambaServer::Start(std::move(options));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    ASSERT_TRUE(server_->LoadModel().ok());
    channel_ = Connect(server_->address());
    vocab_size_ = server_->engine()->model_info().config.vocab_size;
    max_prompt_tokens_ = server_->options().limits.max_prompt_tokens;

    // alpha's session, for the wrong-tenant rows.
    auto sessions = v1::Sessions::NewStub(channel_);
    grpc::ClientContext context;
    context.AddMetadata("authorization", absl::StrCat("Bearer ", kAlphaToken));
    v1::CreateSessionRequest create;
    create.mutable_token_ids()->add_ids(3);
    v1::Session session;
    grpc::Status status = sessions->CreateSession(&context, create, &session);
    ASSERT_TRUE(status.ok()) << status.error_message();
    alpha_session_ = session.session_id();
  }

  ScratchDir scratch_;
  std::string dir_;
  std::unique_ptr<MambaServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  int32_t vocab_size_ = 0;
  int32_t max_prompt_tokens_ = 0;
  std::string alpha_session_;
};

TEST_F(InvalidInputTest, EveryRowEndsWithItsStatus) {
  const Metadata alpha = Bearer(kAlphaToken);
  const Metadata bravo = Bearer(kBravoToken);
  const std::string valid_generate = Bytes(Greedy({1, 2}, 2));
  const std::string unknown_id = "00000000000000000000000000000001";
  using C = grpc::StatusCode;
  std::vector<Row> rows;
  auto add = [&](std::string name, std::string method, std::string request, Metadata metadata,
                 C code, std::string message) {
    rows.push_back({std::move(name), std::move(method), std::move(request), std::move(metadata),
                    code, std::move(message)});
  };

  // Authentication.
  add("no token", kGenerate, valid_generate, {}, C::UNAUTHENTICATED, "requires a bearer token");
  add("unknown token", kGenerate, valid_generate, Bearer("alpha-secret-token-0003"),
      C::UNAUTHENTICATED, "not valid");
  add("token without Bearer", kGenerate, valid_generate, {{"authorization", kAlphaToken}},
      C::UNAUTHENTICATED, "not of the form `Bearer TOKEN`");
  add("Basic scheme", kGenerate, valid_generate, {{"authorization", "Basic YWxwaGE6cGFzcw=="}},
      C::UNAUTHENTICATED, "not of the form");
  add("empty bearer", kGenerate, valid_generate, {{"authorization", "Bearer "}}, C::UNAUTHENTICATED,
      "not of the form");
  add("token of the wrong case", kGenerate, valid_generate, Bearer("ALPHA-SECRET-TOKEN-0001"),
      C::UNAUTHENTICATED, "not valid");
  add("model info without token", kModels + "GetModelInfo", "", {}, C::UNAUTHENTICATED,
      "bearer token");
  add("list sessions without token", kSessions + "ListSessions", "", {}, C::UNAUTHENTICATED,
      "bearer token");
  add("garbage bytes without token", kGenerate, "\xff\xff\xff", {}, C::UNAUTHENTICATED,
      "bearer token");

  // Malformed messages and wrong wire types.
  add("garbage bytes", kGenerate, "\xff\xff\xff\xff", alpha, C::INVALID_ARGUMENT,
      "not a well-formed mambaserve.v1.GenerateRequest");
  add("truncated field", kGenerate, std::string("\x0a\x10hi", 4), alpha, C::INVALID_ARGUMENT,
      "mambaserve.v1.GenerateRequest");
  add("text sent as a number", kGenerate, VarintField(1, 42), alpha, C::INVALID_ARGUMENT,
      "input is empty");
  add("session id sent as a number is ignored (unknown field)", kGenerate,
      valid_generate + VarintField(3, 12345), alpha, C::OK, "");
  add("unknown method", "/mambaserve.v1.Generation/Nope", valid_generate, alpha, C::UNIMPLEMENTED,
      "");

  // Broken UTF-8.
  add("broken UTF-8 text", kGenerate, LengthDelimited(1, "ok \xc3\x28 no"), alpha,
      C::INVALID_ARGUMENT, "field 'text' is not valid UTF-8");
  add("overlong UTF-8 text", kGenerate, LengthDelimited(1, "\xc0\xaf"), alpha, C::INVALID_ARGUMENT,
      "not valid UTF-8");
  add("broken UTF-8 stop string", kGenerate,
      valid_generate + LengthDelimited(5, LengthDelimited(2, "\xff")), alpha, C::INVALID_ARGUMENT,
      "field 'stopping.stop' is not valid UTF-8");
  add("broken UTF-8 to Tokenize", kModels + "Tokenize", LengthDelimited(1, "\xed\xa0\x80"), alpha,
      C::INVALID_ARGUMENT, "field 'text' is not valid UTF-8");
  add("broken UTF-8 session text", kSessions + "CreateSession", LengthDelimited(1, "\xfe"), alpha,
      C::INVALID_ARGUMENT, "not valid UTF-8");

  // Inputs.
  add("no input", kGenerate, "", alpha, C::INVALID_ARGUMENT, "input is empty");
  add("empty text", kGenerate, LengthDelimited(1, ""), alpha, C::INVALID_ARGUMENT,
      "input text is empty");
  add("empty token ids", kGenerate, LengthDelimited(2, ""), alpha, C::INVALID_ARGUMENT,
      "input token_ids is empty");
  add("negative token id", kGenerate, Bytes(Greedy({1, -1}, 2)), alpha, C::INVALID_ARGUMENT,
      "token_ids[1] = -1");
  add("token id = vocab size", kGenerate, Bytes(Greedy({vocab_size_}, 2)), alpha,
      C::INVALID_ARGUMENT, absl::StrCat("token_ids[0] = ", vocab_size_));
  add("token id = INT32_MAX", kGenerate, Bytes(Greedy({std::numeric_limits<int32_t>::max()}, 2)),
      alpha, C::INVALID_ARGUMENT, "token_ids[0] = 2147483647");
  add("prompt one token too long", kGenerate,
      Bytes(Greedy(std::vector<int32_t>(max_prompt_tokens_ + 1, 1), 2)), alpha, C::INVALID_ARGUMENT,
      absl::StrCat("at most ", max_prompt_tokens_));

  // Sampling and stopping.
  auto with = [&](auto edit) {
    v1::GenerateRequest r = Greedy({1, 2}, 2);
    edit(r);
    return Bytes(r);
  };
  add("negative temperature", kGenerate,
      with([](v1::GenerateRequest& r) { r.mutable_sampling()->set_temperature(-1); }), alpha,
      C::INVALID_ARGUMENT, "sampling.temperature");
  add("NaN temperature", kGenerate, with([](v1::GenerateRequest& r) {
        r.mutable_sampling()->set_temperature(std::numeric_limits<float>::quiet_NaN());
      }),
      alpha, C::INVALID_ARGUMENT, "sampling.temperature");
  add("infinite temperature", kGenerate, with([](v1::GenerateRequest& r) {
        r.mutable_sampling()->set_temperature(std::numeric_limits<float>::infinity());
      }),
      alpha, C::INVALID_ARGUMENT, "sampling.temperature");
  add("negative top_k", kGenerate,
      with([](v1::GenerateRequest& r) { r.mutable_sampling()->set_top_k(-5); }), alpha,
      C::INVALID_ARGUMENT, "sampling.top_k");
  add("top_p = 0", kGenerate,
      with([](v1::GenerateRequest& r) { r.mutable_sampling()->set_top_p(0); }), alpha,
      C::INVALID_ARGUMENT, "sampling.top_p");
  add("top_p > 1", kGenerate,
      with([](v1::GenerateRequest& r) { r.mutable_sampling()->set_top_p(1.5f); }), alpha,
      C::INVALID_ARGUMENT, "sampling.top_p");
  add("min_p > 1", kGenerate,
      with([](v1::GenerateRequest& r) { r.mutable_sampling()->set_min_p(2); }), alpha,
      C::INVALID_ARGUMENT, "sampling.min_p");
  add("repetition_penalty = 0", kGenerate,
      with([](v1::GenerateRequest& r) { r.mutable_sampling()->set_repetition_penalty(0); }), alpha,
      C::INVALID_ARGUMENT, "sampling.repetition_penalty");
  add("huge max_tokens", kGenerate, with([](v1::GenerateRequest& r) {
        r.mutable_stopping()->set_max_tokens(std::numeric_limits<int32_t>::max());
      }),
      alpha, C::INVALID_ARGUMENT, "stopping.max_tokens");
  add("negative max_tokens", kGenerate,
      with([](v1::GenerateRequest& r) { r.mutable_stopping()->set_max_tokens(-1); }), alpha,
      C::INVALID_ARGUMENT, "stopping.max_tokens");
  add("too many stop strings", kGenerate, with([](v1::GenerateRequest& r) {
        for (int i = 0; i < 17; ++i) r.mutable_stopping()->add_stop(absl::StrCat("s", i));
      }),
      alpha, C::INVALID_ARGUMENT, "stopping.stop has 17 strings");
  add("stop string too long", kGenerate,
      with([](v1::GenerateRequest& r) { r.mutable_stopping()->add_stop(std::string(257, 'x')); }),
      alpha, C::INVALID_ARGUMENT, "stopping.stop[0] is 257");
  add("empty stop string", kGenerate,
      with([](v1::GenerateRequest& r) { r.mutable_stopping()->add_stop(""); }), alpha,
      C::INVALID_ARGUMENT, "stopping.stop[0] is empty");
  add("too many stop token ids", kGenerate, with([](v1::GenerateRequest& r) {
        for (int i = 0; i < 65; ++i) r.mutable_stopping()->add_stop_token_ids(1);
      }),
      alpha, C::INVALID_ARGUMENT, "stopping.stop_token_ids has 65");
  add("stop token id out of range", kGenerate,
      with([](v1::GenerateRequest& r) { r.mutable_stopping()->add_stop_token_ids(-7); }), alpha,
      C::INVALID_ARGUMENT, "-7");
  add("too many logprobs", kGenerate, with([](v1::GenerateRequest& r) { r.set_logprobs(21); }),
      alpha, C::INVALID_ARGUMENT, "logprobs = 21");
  add("negative logprobs", kGenerate, with([](v1::GenerateRequest& r) { r.set_logprobs(-1); }),
      alpha, C::INVALID_ARGUMENT, "logprobs = -1");
  add("request_id too long", kGenerate,
      with([](v1::GenerateRequest& r) { r.set_request_id(std::string(129, 'r')); }), alpha,
      C::INVALID_ARGUMENT, "request_id is 129");

  // Session ids and ownership.
  add("malformed session id", kGenerate,
      with([](v1::GenerateRequest& r) { r.set_session_id("../../etc/passwd"); }), alpha,
      C::INVALID_ARGUMENT, "is malformed; a session id is 32 lowercase hexadecimal digits");
  add("uppercase session id", kSessions + "GetSession",
      LengthDelimited(1, "0123456789ABCDEF0123456789ABCDEF"), alpha, C::INVALID_ARGUMENT,
      "is malformed");
  add("empty session id", kSessions + "CloseSession", "", alpha, C::INVALID_ARGUMENT,
      "session_id is empty");
  add("unknown session (generate)", kGenerate,
      with([&](v1::GenerateRequest& r) { r.set_session_id(unknown_id); }), alpha, C::NOT_FOUND,
      "not found (unknown or expired)");
  add("unknown session (get)", kSessions + "GetSession", LengthDelimited(1, unknown_id), alpha,
      C::NOT_FOUND, "not found");
  add("other tenant resumes", kGenerate,
      with([&](v1::GenerateRequest& r) { r.set_session_id(alpha_session_); }), bravo, C::NOT_FOUND,
      "not found (unknown or expired)");
  add("other tenant gets", kSessions + "GetSession", LengthDelimited(1, alpha_session_), bravo,
      C::NOT_FOUND, "not found (unknown or expired)");
  add("other tenant forks", kSessions + "ForkSession", LengthDelimited(1, alpha_session_), bravo,
      C::NOT_FOUND, "not found (unknown or expired)");
  add("other tenant exports", kSessions + "ExportSession", LengthDelimited(1, alpha_session_),
      bravo, C::NOT_FOUND, "not found (unknown or expired)");
  add("other tenant closes", kSessions + "CloseSession", LengthDelimited(1, alpha_session_), bravo,
      C::NOT_FOUND, "not found (unknown or expired)");
  add("session id field and metadata disagree", kSessions + "CreateSession",
      LengthDelimited(4, unknown_id),
      {{"authorization", absl::StrCat("Bearer ", kAlphaToken)},
       {"x-session-id", "00000000000000000000000000000002"}},
      C::INVALID_ARGUMENT, "x-session-id");
  add("empty import", kSessions + "ImportSession", "", alpha, C::INVALID_ARGUMENT,
      "state is empty");
  add("garbage import", kSessions + "ImportSession", LengthDelimited(1, "not a session state"),
      alpha, C::INVALID_ARGUMENT, "session state is corrupt or not from ExportSession");
  add("negative page size", kSessions + "ListSessions", VarintField(1, static_cast<uint64_t>(-1)),
      alpha, C::INVALID_ARGUMENT, "page_size");
  add("huge page size", kSessions + "ListSessions", VarintField(1, 1000000), alpha,
      C::INVALID_ARGUMENT, "page_size");
  add("forged page token", kSessions + "ListSessions", LengthDelimited(2, "' OR 1=1 --"), alpha,
      C::INVALID_ARGUMENT, "page_token");
  add("detokenize id out of range", kModels + "Detokenize",
      LengthDelimited(1, Varint(static_cast<uint64_t>(vocab_size_))), alpha, C::INVALID_ARGUMENT,
      "token_ids[0]");

  // Size.
  add("message over the receive limit", kModels + "Tokenize",
      LengthDelimited(1, std::string(kMaxReceiveBytes + 1, 'a')), alpha, C::RESOURCE_EXHAUSTED,
      "larger than max");

  ASSERT_GE(rows.size(), 30u);
  for (const Row& row : rows) {
    SCOPED_TRACE(row.name);
    MetadataCallResult result =
        CallWithMetadata(channel_, row.method, row.request, row.metadata, absl::Seconds(30));
    EXPECT_EQ(result.status.error_code(), row.code)
        << row.name << ": " << result.status.error_message();
    EXPECT_THAT(result.status.error_message(), HasSubstr(row.message)) << row.name;
    // No row may leak a token into the message it gets back.
    EXPECT_THAT(result.status.error_message(), ::testing::Not(HasSubstr("secret-token")));
  }

  // The server is still serving, and alpha's session is intact.
  MetadataCallResult after = CallWithMetadata(channel_, kGenerate, valid_generate, alpha);
  EXPECT_TRUE(after.status.ok()) << after.status.error_message();
  EXPECT_GE(after.responses, 1);
  MetadataCallResult get = CallWithMetadata(channel_, kSessions + "GetSession",
                                            LengthDelimited(1, alpha_session_), alpha);
  EXPECT_TRUE(get.status.ok()) << get.status.error_message();
  EXPECT_EQ(HealthStatus(channel_, "readiness"), "SERVING");
}

}  // namespace
}  // namespace mamba::server::testing
