// Fuzzes the OpenAI-compatible API's request parser (openai::ParseRequest) and what the service
// does next with its result (OpenAiCall::Prepare): each prompt, or the conversation rendered by
// a chat template, becomes a GenerateRequest that the gRPC API's validation (ToGenerationRequest)
// and the engine's sampling rules check. Every refusal must be INVALID_ARGUMENT, map to HTTP 400
// and give a well-formed JSON error body; an accepted request must have the shape ParseRequest
// promises (choices, prompt counts, roles).
//
// Input: byte 0 picks the endpoint (bit 0: chat) and, for chat, the template (bit 1: llama2,
// which refuses roles that do not alternate, else chatml); the rest is the request body.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "engine/sampling/sampling_params.h"
#include "engine/tokenizer/chat_template.h"
#include "engine/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"
#include "server/openai/openai_api.h"
#include "server/request_validation.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

namespace v1 = ::mambaserve::v1;
namespace openai = ::mamba::server::openai;
using mamba::server::ModelLimits;
using mamba::server::RequestLimits;

// What the error payload of a refusal is keyed by (openai_api.cc); read to check `param`.
constexpr char kParamPayload[] = "type.mambaserve/openai.param";
// A refusal's message may quote what the client sent, but not grow without bound beyond it.
constexpr size_t kMessageOverhead = 1024;
constexpr uint64_t kDefaultSeed = 0x5eed;

struct Setup {
  std::unique_ptr<mamba::tokenizer::Tokenizer> tokenizer;
  RequestLimits limits;
  ModelLimits model;
  std::unique_ptr<mamba::tokenizer::ChatTemplate> chatml;
  std::unique_ptr<mamba::tokenizer::ChatTemplate> llama2;
};

std::string ReadTemplate(const std::string& name) {
  const std::string path = mamba::fuzz::TestDataDir() + "/chat_templates/" + name;
  std::ifstream in(path, std::ios::binary);
  FUZZ_CHECK(in.good(), "cannot read %s", path.c_str());
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::unique_ptr<mamba::tokenizer::ChatTemplate> LoadTemplate(
    const std::string& name, mamba::tokenizer::ChatSpecialTokens specials) {
  absl::StatusOr<mamba::tokenizer::ChatTemplate> t =
      mamba::tokenizer::ChatTemplate::FromSource(ReadTemplate(name), std::move(specials), name);
  FUZZ_CHECK(t.ok(), "%s does not load: %s", name.c_str(), t.status().ToString().c_str());
  // Tight bounds: a fuzzed conversation is small, and the service's own bounds are tested apart.
  mamba::tokenizer::jinja::RenderOptions options;
  options.max_output_bytes = 16 << 10;
  options.max_steps = 100'000;
  t->set_render_options(options);
  return std::make_unique<mamba::tokenizer::ChatTemplate>(*std::move(t));
}

const Setup& GetSetup() {
  static const Setup* setup = [] {
    auto* s = new Setup();
    // Byte tokens, with the specials the templates write (matched in the rendered text).
    s->tokenizer = mamba::tokenizer::MakeByteTokenizer(
        {"<|endoftext|>", "<|im_start|>", "<|im_end|>", "<s>", "</s>"}, /*vocab_size=*/300);
    s->limits.max_prompt_tokens = 256;
    s->limits.max_new_tokens = 128;
    s->limits.default_max_tokens = 16;
    s->limits.max_stop_strings = 4;
    s->limits.max_stop_string_bytes = 32;
    s->limits.max_stop_token_ids = 8;
    s->model.vocab_size = s->tokenizer->vocab_size();
    s->model.tokenizer = s->tokenizer.get();
    s->model.max_token_bytes = 13;  // "<|endoftext|>"
    mamba::tokenizer::ChatSpecialTokens chatml;
    chatml.eos_token = "<|im_end|>";
    s->chatml = LoadTemplate("chatml.jinja", chatml);
    mamba::tokenizer::ChatSpecialTokens llama2;
    llama2.bos_token = "<s>";
    llama2.eos_token = "</s>";
    s->llama2 = LoadTemplate("llama2.jinja", llama2);
    return s;
  }();
  return *setup;
}

// A refusal as the client sees it: a 400 with {"error": {message, type, param, code}}.
void CheckRefusal(const absl::Status& s, size_t body_size) {
  FUZZ_CHECK(s.code() == absl::StatusCode::kInvalidArgument, "unexpected status %s",
             s.ToString().c_str());
  FUZZ_CHECK(!s.message().empty(), "a refusal without a message");
  FUZZ_CHECK(s.message().size() <= body_size + kMessageOverhead,
             "a %zu-byte error message for a %zu-byte body", s.message().size(), body_size);
  const openai::ApiError e = openai::ErrorFromStatus(s);
  FUZZ_CHECK(e.http_status == 400, "INVALID_ARGUMENT gave HTTP %d", e.http_status);
  FUZZ_CHECK(e.type == "invalid_request_error", "type '%s'", e.type.c_str());
  FUZZ_CHECK(e.retry_after_seconds == 0, "Retry-After on a 400");
  FUZZ_CHECK(e.message == s.message(), "the error message changed");
  if (absl::optional<absl::Cord> param = s.GetPayload(kParamPayload)) {
    FUZZ_CHECK(e.param == std::string(*param), "param '%s' is not the payload's",
               e.param.c_str());
  }
  const std::string body = openai::ErrorBody(e);
  const nlohmann::json parsed = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  FUZZ_CHECK(!parsed.is_discarded(), "ErrorBody is not JSON: %s", body.c_str());
  FUZZ_CHECK(parsed.is_object() && parsed.size() == 1 && parsed.contains("error") &&
                 parsed["error"].is_object(),
             "ErrorBody is not {\"error\": {...}}: %s", body.c_str());
  const nlohmann::json& error = parsed["error"];
  FUZZ_CHECK(error.contains("message") && error["message"].is_string(), "no error.message");
  FUZZ_CHECK(error.contains("type") && error["type"] == "invalid_request_error", "error.type");
  FUZZ_CHECK(error.contains("param") &&
                 (error["param"].is_null() ? e.param.empty() : error["param"].is_string()),
             "error.param");
  FUZZ_CHECK(error.contains("code") && error["code"].is_null(), "error.code");
  if (mamba::tokenizer::IsValidUtf8(e.message)) {
    FUZZ_CHECK(error["message"].get<std::string>() == e.message,
               "ErrorBody changed a valid UTF-8 message");
  }
}

bool IdsInVocabulary(const std::vector<int32_t>& ids, int32_t vocab) {
  return std::all_of(ids.begin(), ids.end(), [&](int32_t id) { return id >= 0 && id < vocab; });
}

// One choice's request as Prepare converts it; a refusal must still be a 400.
void Convert(const v1::GenerateRequest& p, const Setup& s, size_t body_size) {
  absl::StatusOr<mamba::GenerationRequest> g =
      mamba::server::ToGenerationRequest(p, s.limits, s.model, kDefaultSeed);
  if (!g.ok()) return CheckRefusal(g.status(), body_size);
  const absl::Status engine_rules =
      mamba::sampling::ValidateSamplingParams(g->sampling, std::max(0, g->logprobs));
  if (!engine_rules.ok()) return CheckRefusal(engine_rules, body_size);
  FUZZ_CHECK(!g->prompt.empty(), "empty prompt accepted");
  FUZZ_CHECK(static_cast<int64_t>(g->prompt.size()) <= s.limits.max_prompt_tokens,
             "prompt of %zu tokens", g->prompt.size());
  FUZZ_CHECK(IdsInVocabulary(g->prompt, s.model.vocab_size), "prompt id outside the vocabulary");
  FUZZ_CHECK(g->stopping.max_tokens >= 1 && g->stopping.max_tokens <= s.limits.max_new_tokens,
             "max_tokens %d", g->stopping.max_tokens);
  FUZZ_CHECK(IdsInVocabulary(g->stopping.stop_token_ids, s.model.vocab_size),
             "stop id outside the vocabulary");
  FUZZ_CHECK(static_cast<int32_t>(g->stopping.stop_strings.size()) <= s.limits.max_stop_strings,
             "stop count");
  FUZZ_CHECK(g->sampling.seed == (p.sampling().has_seed() ? p.sampling().seed() : kDefaultSeed),
             "seed");
  FUZZ_CHECK(std::isfinite(g->sampling.temperature) && g->sampling.temperature >= 0,
             "temperature %g", g->sampling.temperature);
  FUZZ_CHECK(g->logprobs >= -1 && g->logprobs <= mamba::sampling::kMaxTopLogprobs, "logprobs %d",
             g->logprobs);
}

bool AllowedRole(const std::string& role) {
  return role == "system" || role == "developer" || role == "user" || role == "assistant" ||
         role == "tool";
}

void CheckShape(const openai::ParsedRequest& r, openai::Endpoint endpoint) {
  FUZZ_CHECK(r.endpoint == endpoint, "endpoint changed");
  FUZZ_CHECK(r.n >= 1 && r.n <= openai::kMaxChoices, "n = %d", r.n);
  FUZZ_CHECK(r.base.input_case() == v1::GenerateRequest::INPUT_NOT_SET, "base has an input");
  FUZZ_CHECK(r.base.session_id() == r.session_id, "session_id not carried");
  FUZZ_CHECK(r.session_id.empty() || (r.n == 1 && r.prompts.size() <= 1),
             "a session request with n = %d and %zu prompts", r.n, r.prompts.size());
  FUZZ_CHECK(!r.echo, "echo accepted");
  FUZZ_CHECK(r.include_usage ? r.stream : true, "include_usage without stream");
  FUZZ_CHECK(r.logprobs == r.base.has_logprobs(), "logprobs not carried");
  if (r.logprobs) FUZZ_CHECK(r.base.logprobs() == r.top_logprobs, "top_logprobs not carried");
  if (r.base.stopping().has_max_tokens()) {
    FUZZ_CHECK(r.base.stopping().max_tokens() >= 1, "max_tokens %d",
               r.base.stopping().max_tokens());
  }
  if (endpoint == openai::Endpoint::kCompletions) {
    FUZZ_CHECK(r.prompts.size() >= 1 && r.prompts.size() <= static_cast<size_t>(openai::kMaxPrompts),
               "%zu prompts", r.prompts.size());
    FUZZ_CHECK(r.messages.empty(), "messages on a completion");
    for (const auto& p : r.prompts) {
      FUZZ_CHECK(p.is_text ? p.ids.empty() : (p.text.empty() && !p.ids.empty()),
                 "a prompt that is both text and ids, or empty ids");
    }
    return;
  }
  FUZZ_CHECK(r.prompts.empty(), "prompts on a chat request");
  FUZZ_CHECK(!r.messages.empty(), "a chat request without messages");
  FUZZ_CHECK(r.template_messages.is_array() && r.template_messages.size() == r.messages.size(),
             "template_messages do not match messages");
  for (size_t i = 0; i < r.messages.size(); ++i) {
    const openai::ChatMessage& m = r.messages[i];
    FUZZ_CHECK(AllowedRole(m.role), "role '%s' accepted", m.role.c_str());
    const nlohmann::ordered_json& t = r.template_messages[i];
    FUZZ_CHECK(t.is_object() && t.contains("role") && t["role"] == m.role,
               "template message %zu has another role", i);
    FUZZ_CHECK(t.contains("content") && t["content"] == m.content,
               "template message %zu has another content", i);
  }
}

void FuzzRequest(openai::Endpoint endpoint, bool llama2, absl::string_view body, const Setup& s) {
  absl::StatusOr<openai::ParsedRequest> parsed = openai::ParseRequest(endpoint, body);
  if (!parsed.ok()) return CheckRefusal(parsed.status(), body.size());
  const openai::ParsedRequest& r = *parsed;
  CheckShape(r, endpoint);

  // As OpenAiCall::Prepare builds the choices' requests (one per prompt: the choices of a prompt
  // differ only in their seed).
  std::vector<v1::GenerateRequest> protos;
  if (endpoint == openai::Endpoint::kChat) {
    const mamba::tokenizer::ChatTemplate& t = llama2 ? *s.llama2 : *s.chatml;
    absl::StatusOr<std::string> text = t.Apply(r.template_messages, r.add_generation_prompt);
    if (!text.ok()) {
      FUZZ_CHECK(text.status().code() == absl::StatusCode::kInvalidArgument ||
                     text.status().code() == absl::StatusCode::kResourceExhausted,
                 "the template failed with %s", text.status().ToString().c_str());
      return CheckRefusal(openai::InvalidParam("messages", absl::StrCat("the chat template failed: ",
                                                                        text.status().message())),
                          body.size());
    }
    FUZZ_CHECK(text->size() <= t.render_options().max_output_bytes, "%zu bytes rendered",
               text->size());
    if (static_cast<int64_t>(text->size()) >
        mamba::server::MaxPromptTextBytes(s.limits.max_prompt_tokens, s.model)) {
      return;  // refused by size before tokenizing (InvalidParam)
    }
    absl::StatusOr<std::vector<int32_t>> ids = s.tokenizer->Encode(*text, false);
    FUZZ_CHECK(ids.ok(), "the byte tokenizer refused text: %s", ids.status().ToString().c_str());
    v1::GenerateRequest p = r.base;
    p.mutable_token_ids()->mutable_ids()->Assign(ids->begin(), ids->end());
    if (!p.stopping().has_max_tokens()) p.mutable_stopping()->set_max_tokens(s.limits.max_new_tokens);
    protos.push_back(std::move(p));
  } else {
    for (const openai::ParsedRequest::Prompt& prompt : r.prompts) {
      v1::GenerateRequest p = r.base;
      if (prompt.is_text) {
        p.set_text(prompt.text);
      } else {
        p.mutable_token_ids()->mutable_ids()->Assign(prompt.ids.begin(), prompt.ids.end());
      }
      protos.push_back(std::move(p));
    }
  }
  for (const v1::GenerateRequest& p : protos) Convert(p, s, body.size());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const Setup& s = GetSetup();
  if (size < 1) return 0;
  const openai::Endpoint endpoint =
      (data[0] & 1) != 0 ? openai::Endpoint::kChat : openai::Endpoint::kCompletions;
  const bool llama2 = (data[0] & 2) != 0;
  FuzzRequest(endpoint, llama2,
              absl::string_view(reinterpret_cast<const char*>(data + 1), size - 1), s);
  return 0;
}
