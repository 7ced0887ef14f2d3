// The OpenAI-compatible API's wire format: request bodies of /v1/completions and
// /v1/chat/completions parsed into our GenerateRequest (so that the one validation of the gRPC
// API applies: ToGenerationRequest), and responses, stream chunks and errors written as OpenAI
// writes them. No I/O here; openai_service.h serves it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/api/generation.h"
#include "mambaserve/v1/generation.pb.h"
#include "nlohmann/json.hpp"

namespace mamba::server::openai {

enum class Endpoint { kCompletions, kChat };

// The most choices one request may ask for (n), and prompts one completion request may carry.
inline constexpr int kMaxChoices = 16;
inline constexpr int kMaxPrompts = 64;

// An error as OpenAI returns it: the HTTP status and {"error": {message, type, param, code}}.
struct ApiError {
  int http_status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  // "" = null
  std::string code;   // "" = null
  int retry_after_seconds = 0;  // > 0: a Retry-After header (429, 503)
};

// The error body, {"error": {...}}.
std::string ErrorBody(const ApiError& error);
// The error for a status from parsing, validation or the engine: INVALID_ARGUMENT 400,
// UNAUTHENTICATED 401, PERMISSION_DENIED 403, NOT_FOUND 404, FAILED_PRECONDITION 409,
// RESOURCE_EXHAUSTED 429 (Retry-After), UNAVAILABLE 503 (Retry-After), DEADLINE_EXCEEDED 504,
// anything else 500. `param` is the request field the message names, in OpenAI's spelling
// (from the status's payload, else from the gRPC field path the message starts with).
ApiError ErrorFromStatus(const absl::Status& status);
// An INVALID_ARGUMENT whose payload names `param` (ErrorFromStatus reads it back).
absl::Status InvalidParam(absl::string_view param, absl::string_view message);
// `status` with `param` in its payload.
absl::Status WithParam(absl::Status status, absl::string_view param);
// A model this server does not serve: NOT_FOUND, which ErrorFromStatus answers as OpenAI does
// (404, type invalid_request_error, code model_not_found).
absl::Status ModelNotFound(absl::string_view message);

// A chat message as the template sees it: role and text content (text parts joined).
struct ChatMessage {
  std::string role;
  std::string content;
};

// One request, parsed and checked for shape (types, enums, counts); value ranges are left to
// ToGenerationRequest and the engine, so both APIs share them.
struct ParsedRequest {
  Endpoint endpoint = Endpoint::kCompletions;
  std::string model;
  // Completions: each prompt is text or token ids.
  struct Prompt {
    bool is_text = true;
    std::string text;
    std::vector<int32_t> ids;
  };
  std::vector<Prompt> prompts;
  // Chat: the messages, and the same as JSON for the template (roles, contents as strings,
  // other fields as sent).
  std::vector<ChatMessage> messages;
  nlohmann::ordered_json template_messages;  // key order as sent (what a template's tojson shows)
  bool add_generation_prompt = true;
  int n = 1;
  bool stream = false;
  bool include_usage = false;
  // Log-probabilities: completions' logprobs = k (0..20) gives the chosen token and k
  // alternatives; chat's logprobs = true with top_logprobs = k (0..20).
  bool logprobs = false;
  int top_logprobs = 0;
  bool echo = false;
  std::string user;
  std::string session_id;
  // Sampling and stopping as our API spells them (sampling, stopping, logprobs, session_id);
  // the input is left unset.
  mambaserve::v1::GenerateRequest base;
};

// Parses a request body. INVALID_ARGUMENT (with the param in its payload) for JSON that does not
// parse, a field of the wrong type, unknown roles or content parts, n or prompt counts out of
// range, and fields we do not support when set to something other than their default
// (suffix, best_of > n, tools, response_format other than text, ...).
absl::StatusOr<ParsedRequest> ParseRequest(Endpoint endpoint, absl::string_view body);

// OpenAI's finish_reason for ours: "length", "stop" (stop strings, stop ids and the end of
// text), "abort" (cancelled; vLLM's spelling), "error".
const char* FinishReasonString(FinishReason reason);

// "cmpl-…" / "chatcmpl-…" with 24 random hex digits.
std::string NewResponseId(Endpoint endpoint);
// "text_completion" / "chat.completion", and the streamed objects' "….chunk" for chat.
const char* ObjectName(Endpoint endpoint, bool chunk);

// The usage object: prompt_tokens (the whole prompt, cached part included, as OpenAI counts),
// completion_tokens, total_tokens, prompt_tokens_details.cached_tokens.
nlohmann::json UsageJson(int64_t prompt_tokens, int64_t completion_tokens, int64_t cached_tokens);

// One server-sent event carrying `json` ("data: ...\n\n").
std::string SseEvent(const nlohmann::json& json);
inline constexpr char kSseDone[] = "data: [DONE]\n\n";

// The streamed chunks of one response: everything but the choice is the same in each, so it is
// rendered once, and the event of a text delta (nearly every event of a stream) is spliced
// together without building a JSON tree (building and dumping one per token held a stream thread
// for microseconds per token, with 256 streams on one thread). The bytes are those
// SseEvent(chunk) gives for the whole chunk object: the same sorted key order, strings escaped by
// the same serializer (invalid UTF-8 replaced).
class ChunkEnvelope {
 public:
  // `session_id` empty: no session_id key; `include_usage`: "usage": null in every chunk.
  ChunkEnvelope(Endpoint endpoint, absl::string_view id, int64_t created, absl::string_view model,
                absl::string_view session_id, bool include_usage);
  // The event of the chunk holding `choice`.
  std::string Event(const nlohmann::json& choice) const;
  // The event of choice `index`'s text delta, without logprobs or a finish reason (chat:
  // {"delta": {"content": text}, ...}; completions: {"text": text, ...}).
  std::string TextEvent(int64_t index, absl::string_view text) const;

 private:
  Endpoint endpoint_;
  std::string tail_;  // after the choices array: "],\"created\":...}\n\n"
};

}  // namespace mamba::server::openai
