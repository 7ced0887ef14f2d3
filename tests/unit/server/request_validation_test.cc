#include "server/request_validation.h"

#include <functional>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mamba::server {
namespace {

namespace v1 = ::mambaserve::v1;
using ::testing::HasSubstr;

class RequestValidationTest : public ::testing::Test {
 protected:
  RequestValidationTest() : tokenizer_(tokenizer::MakeByteTokenizer({"<|endoftext|>"})) {
    model_.vocab_size = 257;
    model_.tokenizer = tokenizer_.get();
    limits_.max_prompt_tokens = 64;
    limits_.max_new_tokens = 100;
  }

  static v1::GenerateRequest Valid() {
    v1::GenerateRequest r;
    r.set_text("hello");
    return r;
  }

  std::unique_ptr<tokenizer::Tokenizer> tokenizer_;
  ModelLimits model_;
  RequestLimits limits_;
};

TEST_F(RequestValidationTest, ValidRequestConverts) {
  v1::GenerateRequest r = Valid();
  r.set_session_id("0123456789abcdef0123456789abcdef");
  r.set_request_id("req-1");
  r.mutable_sampling()->set_temperature(0.7f);
  r.mutable_sampling()->set_top_k(5);
  r.mutable_sampling()->set_top_p(0.9f);
  r.mutable_sampling()->set_min_p(0.05f);
  r.mutable_sampling()->set_repetition_penalty(1.1f);
  r.mutable_sampling()->set_seed(42);
  r.mutable_stopping()->set_max_tokens(100);
  r.mutable_stopping()->add_stop("\n");
  r.mutable_stopping()->add_stop_token_ids(256);
  r.mutable_stopping()->set_ignore_eos(true);
  r.set_logprobs(20);
  absl::StatusOr<GenerationRequest> g = ToGenerationRequest(r, limits_, model_, 7);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->prompt, (std::vector<int32_t>{'h', 'e', 'l', 'l', 'o'}));
  EXPECT_EQ(g->session_id, "0123456789abcdef0123456789abcdef");
  EXPECT_EQ(g->request_id, "req-1");
  EXPECT_FLOAT_EQ(g->sampling.temperature, 0.7f);
  EXPECT_EQ(g->sampling.top_k, 5);
  EXPECT_FLOAT_EQ(g->sampling.top_p, 0.9f);
  EXPECT_FLOAT_EQ(g->sampling.min_p, 0.05f);
  EXPECT_FLOAT_EQ(g->sampling.repetition_penalty, 1.1f);
  EXPECT_EQ(g->sampling.seed, 42u);
  EXPECT_EQ(g->stopping.max_tokens, 100);
  EXPECT_EQ(g->stopping.stop_strings, std::vector<std::string>{"\n"});
  EXPECT_EQ(g->stopping.stop_token_ids, std::vector<int32_t>{256});
  EXPECT_TRUE(g->stopping.ignore_eos);
  EXPECT_EQ(g->logprobs, 20);
}

TEST_F(RequestValidationTest, DefaultsApply) {
  absl::StatusOr<GenerationRequest> g = ToGenerationRequest(Valid(), limits_, model_, 99);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->stopping.max_tokens, 16);
  EXPECT_FLOAT_EQ(g->sampling.top_p, 1.0f);
  EXPECT_FLOAT_EQ(g->sampling.repetition_penalty, 1.0f);
  EXPECT_EQ(g->sampling.seed, 99u);  // unset seed: the server's default
  EXPECT_EQ(g->logprobs, -1);
  EXPECT_TRUE(g->session_id.empty());

  // The default max_tokens never exceeds the server's limit.
  limits_.max_new_tokens = 8;
  g = ToGenerationRequest(Valid(), limits_, model_, 0);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->stopping.max_tokens, 8);
}

TEST_F(RequestValidationTest, TokenIdInput) {
  v1::GenerateRequest r;
  r.mutable_token_ids()->add_ids(0);
  r.mutable_token_ids()->add_ids(256);
  absl::StatusOr<GenerationRequest> g = ToGenerationRequest(r, limits_, model_, 0);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->prompt, (std::vector<int32_t>{0, 256}));
}

// Every protocol rule of the README's validation table: the request, and a part of the message
// that says what was wrong and what is allowed. The sampling ranges and the logprobs count are the
// engine's rules (tests/unit/sampling/sampling_params_test.cc; over gRPC in
// tests/integration/security/invalid_input_test.cc).
struct Row {
  const char* name;
  std::function<void(v1::GenerateRequest*)> mutate;
  std::vector<const char*> message_parts;
};

TEST_F(RequestValidationTest, EveryRuleRejectsWithAClearMessage) {
  const std::vector<Row> rows = {
      {"no input", [](auto* r) { r->clear_input(); }, {"input is empty", "text", "token_ids"}},
      {"empty text", [](auto* r) { r->set_text(""); }, {"input text is empty"}},
      {"empty ids", [](auto* r) { r->mutable_token_ids(); }, {"token_ids is empty"}},
      {"id >= vocab",
       [](auto* r) {
         r->mutable_token_ids()->add_ids(1);
         r->mutable_token_ids()->add_ids(257);
       },
       {"token_ids[1] = 257", "[0, 257)"}},
      {"negative id",
       [](auto* r) { r->mutable_token_ids()->add_ids(-1); },
       {"token_ids[0] = -1", "[0, 257)"}},
      {"prompt too long",
       [](auto* r) { r->set_text(std::string(65, 'a')); },
       {"65 tokens", "at most 64", "--max_prompt_tokens"}},
      // Refused by its length before it is tokenized: 64 tokens of at most 1 byte each, with room
      // for normalizers that shrink text 4x, are at most 256 bytes.
      {"prompt text too long to tokenize",
       [](auto* r) { r->set_text(std::string(300, 'a')); },
       {"input text is 300 bytes", "at most 64 tokens", "at most 256 bytes"}},
      {"max_tokens 0",
       [](auto* r) { r->mutable_stopping()->set_max_tokens(0); },
       {"max_tokens = 0", "[1, 100]", "--max_new_tokens"}},
      {"max_tokens too big",
       [](auto* r) { r->mutable_stopping()->set_max_tokens(101); },
       {"max_tokens = 101", "[1, 100]"}},
      {"negative logprobs", [](auto* r) { r->set_logprobs(-1); }, {"logprobs = -1", "[0, 20]"}},
      {"17 stop strings",
       [](auto* r) {
         for (int i = 0; i < 17; ++i) r->mutable_stopping()->add_stop("x");
       },
       {"17 strings", "at most 16"}},
      {"long stop string",
       [](auto* r) { r->mutable_stopping()->add_stop(std::string(257, 'x')); },
       {"stop[0] is 257 bytes", "1 to 256 bytes"}},
      {"empty stop string",
       [](auto* r) {
         r->mutable_stopping()->add_stop("ok");
         r->mutable_stopping()->add_stop("");
       },
       {"stop[1] is empty", "1 to 256 bytes"}},
      {"stop token id >= vocab",
       [](auto* r) { r->mutable_stopping()->add_stop_token_ids(300); },
       {"stop_token_ids[0] = 300", "[0, 257)"}},
      {"too many stop token ids",
       [](auto* r) {
         for (int i = 0; i < 65; ++i) r->mutable_stopping()->add_stop_token_ids(1);
       },
       {"65 ids", "at most 64"}},
      {"malformed session id",
       [](auto* r) { r->set_session_id("not-a-session"); },
       {"session_id 'not-a-session' is malformed", "32 lowercase hexadecimal digits"}},
      {"uppercase session id",
       [](auto* r) { r->set_session_id("0123456789ABCDEF0123456789ABCDEF"); },
       {"malformed", "32 lowercase hexadecimal digits"}},
      {"short session id", [](auto* r) { r->set_session_id("abc"); }, {"malformed"}},
      {"long request id",
       [](auto* r) { r->set_request_id(std::string(129, 'r')); },
       {"request_id is 129 bytes", "at most 128"}},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.name);
    v1::GenerateRequest r = Valid();
    row.mutate(&r);
    absl::StatusOr<GenerationRequest> g = ToGenerationRequest(r, limits_, model_, 0);
    ASSERT_FALSE(g.ok());
    EXPECT_EQ(g.status().code(), absl::StatusCode::kInvalidArgument);
    for (const char* part : row.message_parts) {
      EXPECT_THAT(std::string(g.status().message()), HasSubstr(part));
    }
  }
}

TEST_F(RequestValidationTest, BoundaryValuesPass) {
  const std::vector<std::function<void(v1::GenerateRequest*)>> accepted = {
      [](auto* r) { r->mutable_stopping()->set_max_tokens(1); },
      [](auto* r) { r->mutable_stopping()->set_max_tokens(100); },
      [](auto* r) { r->set_text(std::string(64, 'a')); },
      [](auto* r) { r->mutable_sampling()->set_top_p(1.0f); },
      [](auto* r) { r->mutable_sampling()->set_min_p(1.0f); },
      [](auto* r) { r->set_logprobs(0); },
      [](auto* r) {
        for (int i = 0; i < 16; ++i) r->mutable_stopping()->add_stop(std::string(256, 'x'));
      },
      [](auto* r) { r->mutable_token_ids()->add_ids(256); },
  };
  for (size_t i = 0; i < accepted.size(); ++i) {
    SCOPED_TRACE(i);
    v1::GenerateRequest r = Valid();
    accepted[i](&r);
    EXPECT_TRUE(ToGenerationRequest(r, limits_, model_, 0).ok());
  }
}

TEST_F(RequestValidationTest, SessionPrompt) {
  v1::CreateSessionRequest r;
  absl::StatusOr<std::vector<int32_t>> p = SessionPrompt(r, limits_, model_);
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(p->empty());  // a session may start empty
  r.set_text("ab");
  p = SessionPrompt(r, limits_, model_);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(*p, (std::vector<int32_t>{'a', 'b'}));
  r.mutable_token_ids()->add_ids(1000);
  p = SessionPrompt(r, limits_, model_);
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  r.set_text(std::string(65, 'a'));
  p = SessionPrompt(r, limits_, model_);
  EXPECT_THAT(std::string(p.status().message()), HasSubstr("--max_prompt_tokens"));
}

TEST_F(RequestValidationTest, SessionIdsAndPages) {
  EXPECT_TRUE(ValidateSessionId("0123456789abcdef0123456789abcdef").ok());
  EXPECT_THAT(std::string(ValidateSessionId("").message()), HasSubstr("session_id is empty"));
  EXPECT_THAT(std::string(ValidateSessionId("0123456789abcdef0123456789abcdeg").message()),
              HasSubstr("malformed"));
  // Hostile values are escaped and shortened in the message.
  const std::string hostile = std::string("\n\x01", 2) + std::string(1000, 'z');
  const std::string message(ValidateSessionId(hostile).message());
  EXPECT_LT(message.size(), 200u);
  EXPECT_EQ(message.find('\n'), std::string::npos);

  EXPECT_EQ(*ValidatePageSize(0, limits_), 100);
  EXPECT_EQ(*ValidatePageSize(1000, limits_), 1000);
  EXPECT_EQ(ValidatePageSize(1001, limits_).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidatePageSize(-1, limits_).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(RequestValidationTest, RequestedSessionIds) {
  const std::string a = "0123456789abcdef0123456789abcdef";
  const std::string b = "fedcba9876543210fedcba9876543210";
  EXPECT_EQ(*RequestedSessionId("", ""), "");  // the engine draws one
  EXPECT_EQ(*RequestedSessionId(a, ""), a);
  EXPECT_EQ(*RequestedSessionId("", a), a);  // adopted from the metadata proxies route by
  EXPECT_EQ(*RequestedSessionId(a, a), a);
  absl::StatusOr<std::string> differ = RequestedSessionId(a, b);
  EXPECT_EQ(differ.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(differ.status().message()), HasSubstr("differ"));
  absl::StatusOr<std::string> bad_field = RequestedSessionId("xyz", "");
  EXPECT_THAT(std::string(bad_field.status().message()), HasSubstr("session_id 'xyz'"));
  absl::StatusOr<std::string> bad_metadata = RequestedSessionId("", "xyz");
  EXPECT_THAT(std::string(bad_metadata.status().message()),
              HasSubstr("x-session-id metadata 'xyz' is malformed"));
}

TEST_F(RequestValidationTest, Detokenize) {
  v1::DetokenizeRequest r;
  r.add_token_ids(104);
  EXPECT_TRUE(ValidateDetokenizeRequest(r, *tokenizer_).ok());
  r.add_token_ids(257);
  absl::Status s = ValidateDetokenizeRequest(r, *tokenizer_);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("token_ids[1] = 257"));
}

}  // namespace
}  // namespace mamba::server
