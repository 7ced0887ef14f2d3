#include "server/openai/openai_api.h"

#include <cstdint>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mamba::server::openai {
namespace {

using ::testing::HasSubstr;

TEST(OpenAiParseTest, CompletionFieldsMapToOurRequest) {
  absl::StatusOr<ParsedRequest> r = ParseRequest(Endpoint::kCompletions, R"({
    "model": "m", "prompt": "hi", "max_tokens": 7, "temperature": 0.5, "top_p": 0.9,
    "top_k": -1, "min_p": 0.1, "seed": 42, "stop": ["a", "b"], "n": 2, "logprobs": 3,
    "presence_penalty": 0.5, "frequency_penalty": -1, "repetition_penalty": 1.1,
    "ignore_eos": true, "stream": true, "stream_options": {"include_usage": true},
    "stop_token_ids": [5], "user": "u"})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->model, "m");
  ASSERT_EQ(r->prompts.size(), 1u);
  EXPECT_EQ(r->prompts[0].text, "hi");
  const auto& g = r->base;
  EXPECT_EQ(g.stopping().max_tokens(), 7);
  EXPECT_FLOAT_EQ(g.sampling().temperature(), 0.5f);
  EXPECT_FLOAT_EQ(g.sampling().top_p(), 0.9f);
  EXPECT_EQ(g.sampling().top_k(), 0);  // -1 = off
  EXPECT_FLOAT_EQ(g.sampling().min_p(), 0.1f);
  EXPECT_EQ(g.sampling().seed(), 42u);
  EXPECT_FLOAT_EQ(g.sampling().presence_penalty(), 0.5f);
  EXPECT_FLOAT_EQ(g.sampling().frequency_penalty(), -1.0f);
  EXPECT_FLOAT_EQ(g.sampling().repetition_penalty(), 1.1f);
  EXPECT_EQ(g.stopping().stop_size(), 2);
  EXPECT_EQ(g.stopping().stop_token_ids_size(), 1);
  EXPECT_TRUE(g.stopping().ignore_eos());
  EXPECT_EQ(g.logprobs(), 3);
  EXPECT_EQ(r->n, 2);
  EXPECT_TRUE(r->stream);
  EXPECT_TRUE(r->include_usage);
}

TEST(OpenAiParseTest, DefaultsFollowOpenAi) {
  absl::StatusOr<ParsedRequest> r = ParseRequest(Endpoint::kCompletions, R"({"prompt": "x"})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FLOAT_EQ(r->base.sampling().temperature(), 1.0f);
  EXPECT_FALSE(r->base.stopping().has_max_tokens());
  EXPECT_FALSE(r->base.has_logprobs());
  EXPECT_EQ(r->n, 1);
}

TEST(OpenAiParseTest, PromptShapes) {
  absl::StatusOr<ParsedRequest> ids = ParseRequest(Endpoint::kCompletions, R"({"prompt": [1, 2]})");
  ASSERT_TRUE(ids.ok());
  ASSERT_EQ(ids->prompts.size(), 1u);
  EXPECT_FALSE(ids->prompts[0].is_text);
  EXPECT_EQ(ids->prompts[0].ids, (std::vector<int32_t>{1, 2}));
  absl::StatusOr<ParsedRequest> many =
      ParseRequest(Endpoint::kCompletions, R"({"prompt": ["a", [3], "b"]})");
  ASSERT_TRUE(many.ok());
  ASSERT_EQ(many->prompts.size(), 3u);
  EXPECT_TRUE(many->prompts[0].is_text);
  EXPECT_FALSE(many->prompts[1].is_text);
}

TEST(OpenAiParseTest, ChatMessagesKeepTheirOrderAndJoinTextParts) {
  absl::StatusOr<ParsedRequest> r = ParseRequest(Endpoint::kChat, R"({
    "messages": [{"role": "system", "content": "s", "name": "x"},
                 {"role": "user", "content": [{"type": "text", "text": "a"},
                                              {"type": "text", "text": "b"}]}],
    "max_completion_tokens": 9, "max_tokens": 3, "logprobs": true, "top_logprobs": 2})");
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->messages.size(), 2u);
  EXPECT_EQ(r->messages[1].content, "ab");
  EXPECT_EQ(r->template_messages[1]["content"], "ab");
  // Key order as sent (what a template's tojson prints).
  EXPECT_EQ(r->template_messages[0].dump(), R"({"role":"system","content":"s","name":"x"})");
  EXPECT_EQ(r->base.stopping().max_tokens(), 9);
  EXPECT_EQ(r->base.logprobs(), 2);
}

TEST(OpenAiParseTest, RefusalsNameTheParam) {
  const struct {
    Endpoint endpoint;
    const char* body;
    const char* param;
    const char* message;
  } kCases[] = {
      {Endpoint::kCompletions, "{", "", "not valid JSON"},
      {Endpoint::kCompletions, "[1]", "", "JSON object"},
      {Endpoint::kCompletions, "{}", "prompt", "prompt is required"},
      {Endpoint::kCompletions, R"({"prompt": 3})", "prompt", "must be a string or an array"},
      {Endpoint::kCompletions, R"({"prompt": [1, "a"]})", "prompt", "prompt[1] must be a token id"},
      // Found by the fuzzer: an empty list of token ids among the prompts.
      {Endpoint::kCompletions, R"({"prompt": [[5, 6], []]})", "prompt",
       "prompt[1] is an empty array"},
      {Endpoint::kCompletions, R"({"prompt": "x", "temperature": "hot"})", "temperature",
       "must be a number"},
      {Endpoint::kCompletions, R"({"prompt": "x", "max_tokens": 0})", "max_tokens", "at least 1"},
      {Endpoint::kCompletions, R"({"prompt": "x", "max_tokens": 1.5})", "max_tokens",
       "an integer"},
      {Endpoint::kCompletions, R"({"prompt": "x", "n": 17})", "n", "allowed: 1 to 16"},
      {Endpoint::kCompletions, R"({"prompt": "x", "best_of": 3})", "best_of", "best_of"},
      {Endpoint::kCompletions, R"({"prompt": "x", "echo": true})", "echo", "not supported"},
      {Endpoint::kCompletions, R"({"prompt": "x", "logit_bias": {"1": 5}})", "logit_bias",
       "not supported"},
      {Endpoint::kCompletions, R"({"prompt": "x", "stop": [1]})", "stop", "must be"},
      {Endpoint::kCompletions, R"({"prompt": "x", "stream_options": {}})", "stream_options",
       "only allowed with stream"},
      {Endpoint::kCompletions, R"({"prompt": ["a", "b"], "session_id": "s"})", "prompt",
       "one prompt"},
      {Endpoint::kCompletions, R"({"prompt": "x", "n": 2, "session_id": "s"})", "n",
       "session_id"},
      {Endpoint::kChat, R"({"messages": []})", "messages", "empty"},
      {Endpoint::kChat, R"({"messages": [{"role": "robot", "content": "x"}]})", "messages",
       "allowed: system, developer, user, assistant, tool"},
      {Endpoint::kChat, R"({"messages": [{"role": "user"}]})", "messages", "content is required"},
      {Endpoint::kChat,
       R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})", "messages",
       "only text parts"},
      {Endpoint::kChat, R"({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2})",
       "top_logprobs", "needs logprobs"},
      {Endpoint::kChat, R"({"messages": [{"role": "user", "content": "x"}], "tools": [{}]})",
       "tools", "not supported"},
  };
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.body);
    absl::StatusOr<ParsedRequest> r = ParseRequest(c.endpoint, c.body);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(c.message));
    const ApiError e = ErrorFromStatus(r.status());
    EXPECT_EQ(e.http_status, 400);
    EXPECT_EQ(e.type, "invalid_request_error");
    EXPECT_EQ(e.param, c.param);
  }
}

TEST(OpenAiParseTest, DeeplyNestedBodiesAreRefusedBeforeParsing) {
  const std::string body = R"({"prompt": )" + std::string(100000, '[');
  absl::StatusOr<ParsedRequest> r = ParseRequest(Endpoint::kCompletions, body);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("nests deeper"));
}

TEST(OpenAiErrorTest, StatusesMapToOpenAiErrors) {
  const struct {
    absl::Status status;
    int http;
    const char* type;
    const char* param;
    int retry_after;
  } kCases[] = {
      {absl::InvalidArgumentError("sampling.temperature = -1 is invalid"), 400,
       "invalid_request_error", "temperature", 0},
      {absl::InvalidArgumentError("stopping.max_tokens = 9999 is out of range"), 400,
       "invalid_request_error", "max_tokens", 0},
      {absl::InvalidArgumentError("top_logprobs = 21 is out of range; allowed: [0, 20]"), 400,
       "invalid_request_error", "top_logprobs", 0},
      {absl::InvalidArgumentError("input text is empty; send at least one character"), 400,
       "invalid_request_error", "prompt", 0},
      {absl::UnauthenticatedError("no token"), 401, "authentication_error", "", 0},
      {absl::NotFoundError("no session"), 404, "not_found_error", "", 0},
      {absl::FailedPreconditionError("busy"), 409, "conflict_error", "", 0},
      {absl::ResourceExhaustedError("queue full"), 429, "rate_limit_error", "", 1},
      {absl::UnavailableError("draining"), 503, "service_unavailable", "", 5},
      {absl::InternalError("boom"), 500, "server_error", "", 0},
  };
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.status.ToString());
    const ApiError e = ErrorFromStatus(c.status);
    EXPECT_EQ(e.http_status, c.http);
    EXPECT_EQ(e.type, c.type);
    EXPECT_EQ(e.param, c.param);
    EXPECT_EQ(e.retry_after_seconds, c.retry_after);
    EXPECT_EQ(e.message, std::string(c.status.message()));
  }
  EXPECT_EQ(ErrorBody(ErrorFromStatus(absl::InvalidArgumentError("sampling.top_p = 2 bad"))),
            R"({"error":{"code":null,"message":"sampling.top_p = 2 bad","param":"top_p",)"
            R"("type":"invalid_request_error"}})");
}

TEST(OpenAiFormatTest, UsageAndEvents) {
  EXPECT_EQ(UsageJson(10, 5, 4).dump(),
            R"({"completion_tokens":5,"prompt_tokens":10,"prompt_tokens_details":)"
            R"({"cached_tokens":4},"total_tokens":15})");
  EXPECT_EQ(SseEvent(nlohmann::json{{"a", 1}}), "data: {\"a\":1}\n\n");
  EXPECT_EQ(std::string(FinishReasonString(FinishReason::kEos)), "stop");
  EXPECT_EQ(std::string(FinishReasonString(FinishReason::kLength)), "length");
  EXPECT_THAT(NewResponseId(Endpoint::kChat), ::testing::StartsWith("chatcmpl-"));
}

// The spliced chunk events are byte for byte the events of the whole chunk object, for both
// endpoints, with and without a session id and the usage key, for text that needs escaping,
// is empty, or is not valid UTF-8 (replaced, as the tree's dump replaces it).
TEST(OpenAiFormatTest, ChunkEnvelopeSplicesTheSameBytesAsTheWholeChunk) {
  using json = nlohmann::json;
  const std::vector<std::string> texts = {
      "hello", "", " with \"quotes\" and \\ backslash", "tab\tnew\nline\x01",
      "caf\xc3\xa9 \xe2\x82\xac", std::string("\xff\xfe broken \xc3", 11), "</script>"};
  for (Endpoint endpoint : {Endpoint::kChat, Endpoint::kCompletions}) {
    for (const std::string& session : {std::string(), std::string("sess-\"1\"")}) {
      for (bool usage : {false, true}) {
        SCOPED_TRACE(::testing::Message() << (endpoint == Endpoint::kChat ? "chat" : "completions")
                                          << " session '" << session << "' usage " << usage);
        const ChunkEnvelope envelope(endpoint, "chatcmpl-abc", 1733600000, "mamba \"130m\"",
                                     session, usage);
        auto whole = [&](const json& choice) {
          json out = {{"id", "chatcmpl-abc"},
                      {"object", ObjectName(endpoint, /*chunk=*/true)},
                      {"created", 1733600000},
                      {"model", "mamba \"130m\""},
                      {"choices", json::array({choice})}};
          if (!session.empty()) out["session_id"] = session;
          if (usage) out["usage"] = nullptr;
          return SseEvent(out);
        };
        for (const std::string& text : texts) {
          for (int64_t index : {0, 3}) {
            const json choice =
                endpoint == Endpoint::kChat
                    ? json{{"index", index},
                           {"delta", {{"content", text}}},
                           {"logprobs", nullptr},
                           {"finish_reason", nullptr}}
                    : json{{"index", index},
                           {"text", text},
                           {"logprobs", nullptr},
                           {"finish_reason", nullptr}};
            EXPECT_EQ(envelope.TextEvent(index, text), whole(choice));
            EXPECT_EQ(envelope.Event(choice), whole(choice));
          }
        }
        const json last = {{"index", 0},
                           {"delta", json::object()},
                           {"logprobs", nullptr},
                           {"finish_reason", "stop"}};
        EXPECT_EQ(envelope.Event(last), whole(last));
        // Every event parses back to the same object.
        const std::string event = envelope.TextEvent(1, texts[2]);
        ASSERT_EQ(event.rfind("data: ", 0), 0u);
        const json parsed = json::parse(event.substr(6));
        EXPECT_EQ(parsed["choices"][0]["index"], 1);
        EXPECT_EQ(parsed["id"], "chatcmpl-abc");
      }
    }
  }
}

}  // namespace
}  // namespace mamba::server::openai
