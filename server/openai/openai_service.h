// The OpenAI-compatible HTTP API, served from the same engine as the gRPC API:
//   GET  /v1/models, /v1/models/{id}
//   POST /v1/completions        (prompt: text, token ids, or a list of either)
//   POST /v1/chat/completions   (messages rendered by the model's chat template)
//   GET  /health                (200 while serving, 503 while loading or draining)
// Responses and server-sent event streams are shaped as OpenAI's; errors are
// {"error": {message, type, param, code}} with the matching HTTP status. Requests go through the
// gRPC API's validation (ToGenerationRequest: one set of rules), authenticate with the same bearer
// tokens and tenants, are logged and counted like gRPC calls (protocol "http"), and are
// registered with the drain.
//
// n > 1 computes the prompt once: it is processed into a session, which is forked into n
// sessions, each generating one choice from the prompt's last token. The chat endpoint marks
// every message boundary for the prefix state cache, so a client resending the conversation
// prefills only the new message, and a shared system prompt is computed once.
//
// Thread-safety: Handle is called on the HTTP server's I/O threads; everything slow (parsing a
// large body, rendering the template, tokenizing) runs on the serving state's prompt threads,
// and output moves on its stream dispatcher threads.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "server/http/http_server.h"
#include "server/serving_state.h"

namespace mamba::server::openai {

// Renders chat messages (a JSON array of {role, content, ...}) into the model's prompt text.
using ChatRenderer =
    std::function<absl::StatusOr<std::string>(const nlohmann::ordered_json& messages,
                                              bool add_generation_prompt)>;

struct OpenAiOptions {
  // The model id /v1/models lists and requests must name (an empty or absent "model" is taken
  // to mean it too).
  std::string served_model_name;
  // Null when the model has no chat template: chat requests then get a 400 saying how to supply
  // one (`no_template_message`).
  ChatRenderer render_chat;
  std::string no_template_message =
      "this model has no chat template: start the server with --chat_template FILE, or use a "
      "model whose tokenizer_config.json has a chat_template";
  int64_t created_unix_seconds = 0;  // /v1/models' "created"
  // Sessions made for n > 1 live at most this long if a request's cleanup never ran.
  int64_t fork_session_ttl_seconds = 600;
};

class OpenAiService {
 public:
  // `state` must outlive the service and every request it started. Requests get 503 until the
  // state has an engine.
  OpenAiService(ServingState* state, OpenAiOptions options);
  OpenAiService(const OpenAiService&) = delete;
  OpenAiService& operator=(const OpenAiService&) = delete;

  // The HTTP server's handler.
  void Handle(std::shared_ptr<http::HttpExchange> exchange);

  const OpenAiOptions& options() const { return options_; }
  // Sets the model's name, chat template and load time. Call before the state gets its engine
  // (ServingState::SetEngine publishes them to the handler threads).
  void SetModel(std::string served_model_name, ChatRenderer render_chat,
                int64_t created_unix_seconds);

  // The request body bound an HTTP server for this API should use: the largest prompt the limits
  // allow, as text, times the prompts a request may carry, plus room for the JSON around it.
  static int64_t MaxRequestBytes(const RequestLimits& limits, const ModelLimits& model);
  // The 413 for a body over that bound, as an OpenAI error.
  static http::HttpResponse TooLarge(int64_t max_request_bytes);

 private:
  ServingState* const state_;
  OpenAiOptions options_;  // the model's fields are set once, before requests can read them
};

}  // namespace mamba::server::openai
