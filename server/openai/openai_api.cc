#include "server/openai/openai_api.h"

#include <cmath>
#include <limits>
#include <random>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "common/json_nesting.h"

namespace mamba::server::openai {
namespace {

using nlohmann::json;
namespace v1 = ::mambaserve::v1;

constexpr char kParamPayload[] = "type.mambaserve/openai.param";
// An error type and code that override what the status code maps to (ModelNotFound).
constexpr char kTypePayload[] = "type.mambaserve/openai.type";
constexpr char kCodePayload[] = "type.mambaserve/openai.code";

const char* TypeName(const json& v) {
  switch (v.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::string:
      return "a string";
    case json::value_t::array:
      return "an array";
    case json::value_t::object:
      return "an object";
    case json::value_t::number_float:
      return "a number";
    default:
      return "an integer";
  }
}

absl::Status WrongType(absl::string_view param, absl::string_view expected, const json& v) {
  return InvalidParam(param, absl::StrCat(param, " must be ", expected, ", not ", TypeName(v)));
}

// Field readers: absent and null leave *out alone.
absl::Status ReadBool(const json& body, const char* key, bool* out) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_boolean()) return WrongType(key, "true or false", *it);
  *out = it->get<bool>();
  return absl::OkStatus();
}

absl::Status ReadNumber(const json& body, const char* key, std::optional<double>* out) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_number()) return WrongType(key, "a number", *it);
  *out = it->get<double>();
  return absl::OkStatus();
}

absl::Status ReadInt(const json& body, const char* key, std::optional<int64_t>* out) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return absl::OkStatus();
  if (it->is_number_integer()) {
    *out = it->is_number_unsigned() ? static_cast<int64_t>(std::min<uint64_t>(
                                          it->get<uint64_t>(), std::numeric_limits<int64_t>::max()))
                                    : it->get<int64_t>();
    return absl::OkStatus();
  }
  // 3.0 is an integer too (JavaScript clients send numbers).
  if (it->is_number_float()) {
    const double d = it->get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e15) {
      *out = static_cast<int64_t>(d);
      return absl::OkStatus();
    }
  }
  return WrongType(key, "an integer", *it);
}

absl::Status ReadString(const json& body, const char* key, std::string* out) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_string()) return WrongType(key, "a string", *it);
  *out = it->get<std::string>();
  return absl::OkStatus();
}

// A float field for the engine: finite doubles outside float's range become ±inf, which the
// shared validation then refuses with the value.
float ToFloat(double d) {
  if (d > std::numeric_limits<float>::max()) return std::numeric_limits<float>::infinity();
  if (d < -std::numeric_limits<float>::max()) return -std::numeric_limits<float>::infinity();
  return static_cast<float>(d);
}

int32_t ClampToInt32(int64_t v) {
  return static_cast<int32_t>(std::clamp<int64_t>(v, std::numeric_limits<int32_t>::min(),
                                                  std::numeric_limits<int32_t>::max()));
}

absl::Status ReadTokenIds(const json& array, absl::string_view param, std::vector<int32_t>* out) {
  out->reserve(array.size());
  for (size_t i = 0; i < array.size(); ++i) {
    const json& id = array[i];
    if (!id.is_number_integer()) {
      return InvalidParam(param, absl::StrCat(param, "[", i, "] must be a token id (an integer), not ",
                                              TypeName(id)));
    }
    const int64_t v = id.is_number_unsigned()
                          ? static_cast<int64_t>(std::min<uint64_t>(id.get<uint64_t>(), 1ull << 40))
                          : id.get<int64_t>();
    out->push_back(ClampToInt32(v));
  }
  return absl::OkStatus();
}

absl::Status ReadPrompts(const json& body, ParsedRequest* out) {
  auto it = body.find("prompt");
  if (it == body.end() || it->is_null()) {
    return InvalidParam("prompt", "prompt is required: a string, an array of token ids, or an "
                                  "array of either");
  }
  const json& p = *it;
  auto add_text = [&](std::string text) {
    ParsedRequest::Prompt prompt;
    prompt.text = std::move(text);
    out->prompts.push_back(std::move(prompt));
  };
  if (p.is_string()) {
    add_text(p.get<std::string>());
    return absl::OkStatus();
  }
  if (!p.is_array()) return WrongType("prompt", "a string or an array", p);
  if (p.empty()) return InvalidParam("prompt", "prompt is an empty array");
  if (p[0].is_number_integer()) {
    ParsedRequest::Prompt prompt;
    prompt.is_text = false;
    if (absl::Status s = ReadTokenIds(p, "prompt", &prompt.ids); !s.ok()) return s;
    out->prompts.push_back(std::move(prompt));
    return absl::OkStatus();
  }
  if (p.size() > static_cast<size_t>(kMaxPrompts)) {
    return InvalidParam("prompt", absl::StrCat("prompt holds ", p.size(),
                                               " prompts; at most ", kMaxPrompts, " are allowed"));
  }
  for (size_t i = 0; i < p.size(); ++i) {
    const json& one = p[i];
    if (one.is_string()) {
      add_text(one.get<std::string>());
    } else if (one.is_array()) {
      if (one.empty()) {
        return InvalidParam("prompt", absl::StrCat("prompt[", i, "] is an empty array; a prompt "
                                                   "of token ids needs at least one"));
      }
      ParsedRequest::Prompt prompt;
      prompt.is_text = false;
      if (absl::Status s = ReadTokenIds(one, absl::StrCat("prompt[", i, "]"), &prompt.ids);
          !s.ok()) {
        return s;
      }
      out->prompts.push_back(std::move(prompt));
    } else {
      return InvalidParam("prompt", absl::StrCat("prompt[", i, "] must be a string or an array of "
                                                 "token ids, not ", TypeName(one)));
    }
  }
  return absl::OkStatus();
}

absl::Status ReadMessages(const json& body, const nlohmann::ordered_json& ordered,
                          ParsedRequest* out) {
  auto it = body.find("messages");
  if (it == body.end() || it->is_null()) {
    return InvalidParam("messages", "messages is required: an array of {role, content} objects");
  }
  if (!it->is_array()) return WrongType("messages", "an array", *it);
  if (it->empty()) return InvalidParam("messages", "messages is empty; send at least one message");
  out->template_messages = nlohmann::ordered_json::array();
  for (size_t i = 0; i < it->size(); ++i) {
    const json& m = (*it)[i];
    const std::string where = absl::StrCat("messages[", i, "]");
    if (!m.is_object()) return WrongType(where, "an object", m);
    auto role = m.find("role");
    if (role == m.end() || !role->is_string()) {
      return InvalidParam("messages", absl::StrCat(where, ".role is required (a string)"));
    }
    const std::string r = role->get<std::string>();
    if (r != "system" && r != "developer" && r != "user" && r != "assistant" && r != "tool") {
      return InvalidParam("messages",
                          absl::StrCat(where, ".role is '", r,
                                       "'; allowed: system, developer, user, assistant, tool"));
    }
    std::string content;
    auto c = m.find("content");
    if (c != m.end() && !c->is_null()) {
      if (c->is_string()) {
        content = c->get<std::string>();
      } else if (c->is_array()) {
        for (size_t k = 0; k < c->size(); ++k) {
          const json& part = (*c)[k];
          const std::string pw = absl::StrCat(where, ".content[", k, "]");
          if (!part.is_object()) return WrongType(pw, "an object", part);
          auto type = part.find("type");
          if (type == part.end() || !type->is_string() || type->get<std::string>() != "text") {
            return InvalidParam(
                "messages",
                absl::StrCat(pw, ".type is ",
                             type != part.end() && type->is_string()
                                 ? absl::StrCat("'", type->get<std::string>(), "'")
                                 : std::string("missing"),
                             "; only text parts ({\"type\": \"text\", \"text\": ...}) are "
                             "supported"));
          }
          auto text = part.find("text");
          if (text == part.end() || !text->is_string()) {
            return InvalidParam("messages", absl::StrCat(pw, ".text is required (a string)"));
          }
          content += text->get<std::string>();
        }
      } else {
        return WrongType(where + ".content", "a string or an array of text parts", *c);
      }
    } else if (r != "assistant") {
      return InvalidParam("messages", absl::StrCat(where, ".content is required for role '", r,
                                                   "'"));
    }
    // The template sees the message as sent, with the content as one string.
    nlohmann::ordered_json copy = ordered["messages"][i];
    copy["content"] = content;
    out->template_messages.push_back(std::move(copy));
    out->messages.push_back({r, std::move(content)});
  }
  return absl::OkStatus();
}

// Fields we do not implement: refused when set to anything but their default, so that a client
// never silently gets something other than what it asked for.
absl::Status RefuseUnsupported(const json& body, Endpoint endpoint) {
  auto set = [&](const char* key) {
    auto it = body.find(key);
    return it != body.end() && !it->is_null() &&
           !(it->is_array() && it->empty()) && !(it->is_object() && it->empty());
  };
  if (set("logit_bias")) return InvalidParam("logit_bias", "logit_bias is not supported");
  if (set("tools") || set("functions")) {
    return InvalidParam(set("tools") ? "tools" : "functions",
                        "tool and function calling are not supported");
  }
  if (set("suffix")) return InvalidParam("suffix", "suffix is not supported");
  if (auto it = body.find("response_format"); it != body.end() && !it->is_null()) {
    const bool text = it->is_object() && it->contains("type") && (*it)["type"].is_string() &&
                      (*it)["type"].get<std::string>() == "text";
    if (!text) {
      return InvalidParam("response_format",
                          "response_format: only {\"type\": \"text\"} is supported");
    }
  }
  if (endpoint == Endpoint::kChat && set("audio")) {
    return InvalidParam("audio", "audio output is not supported");
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status WithParam(absl::Status status, absl::string_view param) {
  status.SetPayload(kParamPayload, absl::Cord(param));
  return status;
}

absl::Status ModelNotFound(absl::string_view message) {
  absl::Status status = absl::NotFoundError(message);
  status.SetPayload(kTypePayload, absl::Cord("invalid_request_error"));
  status.SetPayload(kCodePayload, absl::Cord("model_not_found"));
  return status;
}

absl::Status InvalidParam(absl::string_view param, absl::string_view message) {
  return WithParam(absl::InvalidArgumentError(message), param);
}

absl::StatusOr<ParsedRequest> ParseRequest(Endpoint endpoint, absl::string_view body_text) {
  if (!common::JsonNestingWithin(std::string_view(body_text.data(), body_text.size()))) {
    return InvalidParam("", absl::StrCat("the request body nests deeper than ",
                                         common::kMaxJsonNesting, " levels"));
  }
  json body = json::parse(body_text.begin(), body_text.end(), nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) {
    return InvalidParam("", "the request body is not valid JSON (send a JSON object with "
                            "Content-Type: application/json)");
  }
  if (!body.is_object()) return InvalidParam("", "the request body must be a JSON object");
  if (absl::Status s = RefuseUnsupported(body, endpoint); !s.ok()) return s;

  ParsedRequest out;
  out.endpoint = endpoint;
  v1::GenerateRequest& g = out.base;
  if (absl::Status s = ReadString(body, "model", &out.model); !s.ok()) return s;
  if (endpoint == Endpoint::kChat) {
    const nlohmann::ordered_json ordered =
        nlohmann::ordered_json::parse(body_text.begin(), body_text.end(), nullptr, /*allow_exceptions=*/false);
    if (absl::Status s = ReadMessages(body, ordered, &out); !s.ok()) return s;
    if (absl::Status s = ReadBool(body, "add_generation_prompt", &out.add_generation_prompt);
        !s.ok()) {
      return s;
    }
  } else {
    if (absl::Status s = ReadPrompts(body, &out); !s.ok()) return s;
  }

  // Sampling. OpenAI's temperature defaults to 1 (ours, to greedy).
  std::optional<double> number;
  g.mutable_sampling()->set_temperature(1.0f);
  if (absl::Status s = ReadNumber(body, "temperature", &number); !s.ok()) return s;
  if (number) g.mutable_sampling()->set_temperature(ToFloat(*number));
  number.reset();
  if (absl::Status s = ReadNumber(body, "top_p", &number); !s.ok()) return s;
  if (number) g.mutable_sampling()->set_top_p(ToFloat(*number));
  number.reset();
  if (absl::Status s = ReadNumber(body, "min_p", &number); !s.ok()) return s;
  if (number) g.mutable_sampling()->set_min_p(ToFloat(*number));
  number.reset();
  if (absl::Status s = ReadNumber(body, "repetition_penalty", &number); !s.ok()) return s;
  if (number) g.mutable_sampling()->set_repetition_penalty(ToFloat(*number));
  number.reset();
  if (absl::Status s = ReadNumber(body, "presence_penalty", &number); !s.ok()) return s;
  if (number) g.mutable_sampling()->set_presence_penalty(ToFloat(*number));
  number.reset();
  if (absl::Status s = ReadNumber(body, "frequency_penalty", &number); !s.ok()) return s;
  if (number) g.mutable_sampling()->set_frequency_penalty(ToFloat(*number));
  std::optional<int64_t> integer;
  if (absl::Status s = ReadInt(body, "top_k", &integer); !s.ok()) return s;
  // -1 is vLLM's "off"; ours is 0.
  if (integer) g.mutable_sampling()->set_top_k(*integer == -1 ? 0 : ClampToInt32(*integer));
  integer.reset();
  if (absl::Status s = ReadInt(body, "seed", &integer); !s.ok()) return s;
  if (integer) g.mutable_sampling()->set_seed(static_cast<uint64_t>(*integer));

  // Stopping.
  integer.reset();
  if (absl::Status s = ReadInt(body, "max_tokens", &integer); !s.ok()) return s;
  if (endpoint == Endpoint::kChat) {
    std::optional<int64_t> completion;
    if (absl::Status s = ReadInt(body, "max_completion_tokens", &completion); !s.ok()) return s;
    if (completion) integer = completion;
  }
  if (integer) {
    if (*integer < 1) {
      return InvalidParam(endpoint == Endpoint::kChat && body.contains("max_completion_tokens")
                              ? "max_completion_tokens"
                              : "max_tokens",
                          absl::StrCat("max_tokens = ", *integer, " is out of range; allowed: "
                                                                  "at least 1"));
    }
    g.mutable_stopping()->set_max_tokens(ClampToInt32(*integer));
  }
  if (auto it = body.find("stop"); it != body.end() && !it->is_null()) {
    if (it->is_string()) {
      g.mutable_stopping()->add_stop(it->get<std::string>());
    } else if (it->is_array()) {
      for (const json& s : *it) {
        if (!s.is_string()) return WrongType("stop", "a string or an array of strings", s);
        g.mutable_stopping()->add_stop(s.get<std::string>());
      }
    } else {
      return WrongType("stop", "a string or an array of strings", *it);
    }
  }
  if (auto it = body.find("stop_token_ids"); it != body.end() && !it->is_null()) {
    if (!it->is_array()) return WrongType("stop_token_ids", "an array of token ids", *it);
    std::vector<int32_t> ids;
    if (absl::Status s = ReadTokenIds(*it, "stop_token_ids", &ids); !s.ok()) return s;
    for (int32_t id : ids) g.mutable_stopping()->add_stop_token_ids(id);
  }
  bool ignore_eos = false;
  if (absl::Status s = ReadBool(body, "ignore_eos", &ignore_eos); !s.ok()) return s;
  g.mutable_stopping()->set_ignore_eos(ignore_eos);

  // Choices.
  integer.reset();
  if (absl::Status s = ReadInt(body, "n", &integer); !s.ok()) return s;
  if (integer) {
    if (*integer < 1 || *integer > kMaxChoices) {
      return InvalidParam("n", absl::StrCat("n = ", *integer, " is out of range; allowed: 1 to ",
                                            kMaxChoices));
    }
    out.n = static_cast<int>(*integer);
  }
  integer.reset();
  if (absl::Status s = ReadInt(body, "best_of", &integer); !s.ok()) return s;
  if (integer && *integer != out.n) {
    return InvalidParam("best_of", "best_of is not supported (only best_of = n)");
  }

  // Log-probabilities.
  if (endpoint == Endpoint::kChat) {
    if (absl::Status s = ReadBool(body, "logprobs", &out.logprobs); !s.ok()) return s;
    integer.reset();
    if (absl::Status s = ReadInt(body, "top_logprobs", &integer); !s.ok()) return s;
    if (integer) {
      if (!out.logprobs) {
        return InvalidParam("top_logprobs", "top_logprobs needs logprobs = true");
      }
      out.top_logprobs = ClampToInt32(*integer);
    }
    if (out.logprobs) g.set_logprobs(out.top_logprobs);
  } else {
    integer.reset();
    if (absl::Status s = ReadInt(body, "logprobs", &integer); !s.ok()) return s;
    if (integer) {
      out.logprobs = true;
      out.top_logprobs = ClampToInt32(*integer);
      g.set_logprobs(out.top_logprobs);
    }
    if (absl::Status s = ReadBool(body, "echo", &out.echo); !s.ok()) return s;
    if (out.echo) return InvalidParam("echo", "echo is not supported");
  }

  // Streaming.
  if (absl::Status s = ReadBool(body, "stream", &out.stream); !s.ok()) return s;
  if (auto it = body.find("stream_options"); it != body.end() && !it->is_null()) {
    if (!it->is_object()) return WrongType("stream_options", "an object", *it);
    if (!out.stream) {
      return InvalidParam("stream_options", "stream_options is only allowed with stream = true");
    }
    if (absl::Status s = ReadBool(*it, "include_usage", &out.include_usage); !s.ok()) return s;
  }

  if (absl::Status s = ReadString(body, "user", &out.user); !s.ok()) return s;
  if (absl::Status s = ReadString(body, "session_id", &out.session_id); !s.ok()) return s;
  g.set_session_id(out.session_id);
  if (!out.session_id.empty() && out.n > 1) {
    return InvalidParam("n", "n > 1 is not supported with session_id (fork the session instead)");
  }
  if (!out.session_id.empty() && out.prompts.size() > 1) {
    return InvalidParam("prompt", "a request with session_id takes one prompt");
  }
  return out;
}

std::string ErrorBody(const ApiError& error) {
  json e = {{"message", error.message},
            {"type", error.type},
            {"param", error.param.empty() ? json(nullptr) : json(error.param)},
            {"code", error.code.empty() ? json(nullptr) : json(error.code)}};
  return json{{"error", std::move(e)}}.dump(-1, ' ', false, json::error_handler_t::replace);
}

namespace {

// The OpenAI name of the field a validation message starts with ("sampling.temperature = -1 ...").
std::string ParamFromMessage(absl::string_view message) {
  size_t end = 0;
  while (end < message.size() &&
         (absl::ascii_isalnum(static_cast<unsigned char>(message[end])) || message[end] == '_' ||
          message[end] == '.')) {
    ++end;
  }
  const absl::string_view field = message.substr(0, end);
  static const std::pair<absl::string_view, absl::string_view> kNames[] = {
      {"sampling.temperature", "temperature"},
      {"sampling.top_p", "top_p"},
      {"sampling.top_k", "top_k"},
      {"sampling.min_p", "min_p"},
      {"sampling.repetition_penalty", "repetition_penalty"},
      {"sampling.presence_penalty", "presence_penalty"},
      {"sampling.frequency_penalty", "frequency_penalty"},
      {"sampling.seed", "seed"},
      {"stopping.max_tokens", "max_tokens"},
      {"stopping.stop", "stop"},
      {"stopping.stop_token_ids", "stop_token_ids"},
      {"logprobs", "logprobs"},
      {"top_logprobs", "top_logprobs"},  // the sampler's bound on alternatives
      {"input", "prompt"},               // "input text is empty"
      {"text", "prompt"},
      {"token_ids", "prompt"},
      {"session_id", "session_id"},
  };
  for (const auto& [ours, theirs] : kNames) {
    if (field == ours) return std::string(theirs);
  }
  return "";
}

}  // namespace

ApiError ErrorFromStatus(const absl::Status& status) {
  ApiError e;
  e.message = std::string(status.message());
  if (absl::optional<absl::Cord> param = status.GetPayload(kParamPayload)) {
    e.param = std::string(*param);
  } else if (status.code() == absl::StatusCode::kInvalidArgument) {
    e.param = ParamFromMessage(status.message());
  }
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      e.http_status = 400;
      break;
    case absl::StatusCode::kUnauthenticated:
      e.http_status = 401;
      e.type = "authentication_error";
      e.code = "invalid_api_key";
      break;
    case absl::StatusCode::kPermissionDenied:
      e.http_status = 403;
      e.type = "permission_error";
      break;
    case absl::StatusCode::kNotFound:
      e.http_status = 404;
      e.type = "not_found_error";
      break;
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kAborted:
      e.http_status = 409;
      e.type = "conflict_error";
      break;
    case absl::StatusCode::kResourceExhausted:
      e.http_status = 429;
      e.type = "rate_limit_error";
      e.code = "rate_limit_exceeded";
      e.retry_after_seconds = 1;
      break;
    case absl::StatusCode::kUnavailable:
      e.http_status = 503;
      e.type = "service_unavailable";
      e.retry_after_seconds = 5;
      break;
    case absl::StatusCode::kDeadlineExceeded:
      e.http_status = 504;
      e.type = "timeout_error";
      break;
    case absl::StatusCode::kCancelled:
      e.http_status = 499;
      e.type = "cancelled";
      break;
    default:
      e.http_status = 500;
      e.type = "server_error";
      break;
  }
  if (absl::optional<absl::Cord> type = status.GetPayload(kTypePayload)) {
    e.type = std::string(*type);
  }
  if (absl::optional<absl::Cord> code = status.GetPayload(kCodePayload)) {
    e.code = std::string(*code);
  }
  return e;
}

const char* FinishReasonString(FinishReason reason) {
  switch (reason) {
    case FinishReason::kLength:
      return "length";
    case FinishReason::kStop:
    case FinishReason::kEos:
      return "stop";
    case FinishReason::kCancelled:
      return "abort";
    case FinishReason::kError:
      return "error";
  }
  return "stop";
}

std::string NewResponseId(Endpoint endpoint) {
  thread_local std::mt19937_64 rng(std::random_device{}());
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id = endpoint == Endpoint::kChat ? "chatcmpl-" : "cmpl-";
  for (int i = 0; i < 24; ++i) id.push_back(kHex[rng() & 15]);
  return id;
}

const char* ObjectName(Endpoint endpoint, bool chunk) {
  if (endpoint == Endpoint::kChat) return chunk ? "chat.completion.chunk" : "chat.completion";
  return "text_completion";
}

nlohmann::json UsageJson(int64_t prompt_tokens, int64_t completion_tokens, int64_t cached_tokens) {
  return json{{"prompt_tokens", prompt_tokens},
              {"completion_tokens", completion_tokens},
              {"total_tokens", prompt_tokens + completion_tokens},
              {"prompt_tokens_details", {{"cached_tokens", cached_tokens}}}};
}

namespace {

// Compact, UTF-8 kept, invalid UTF-8 replaced: every event's serialization.
std::string Dump(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

constexpr char kChunkHead[] = "data: {\"choices\":[";

}  // namespace

std::string SseEvent(const nlohmann::json& value) {
  return absl::StrCat("data: ", Dump(value), "\n\n");
}

ChunkEnvelope::ChunkEnvelope(Endpoint endpoint, absl::string_view id, int64_t created,
                             absl::string_view model, absl::string_view session_id,
                             bool include_usage)
    : endpoint_(endpoint) {
  // The chunk's other keys all sort after "choices": render them as one object and continue
  // the choices array's object with its members.
  json rest = {{"id", std::string(id)},
               {"object", ObjectName(endpoint, /*chunk=*/true)},
               {"created", created},
               {"model", std::string(model)}};
  if (!session_id.empty()) rest["session_id"] = std::string(session_id);
  if (include_usage) rest["usage"] = nullptr;
  const std::string members = Dump(rest);  // "{...}"
  tail_ = absl::StrCat("],", absl::string_view(members).substr(1), "\n\n");
}

std::string ChunkEnvelope::Event(const json& choice) const {
  return absl::StrCat(kChunkHead, Dump(choice), tail_);
}

std::string ChunkEnvelope::TextEvent(int64_t index, absl::string_view text) const {
  const std::string escaped = Dump(json(std::string(text)));
  if (endpoint_ == Endpoint::kChat) {
    return absl::StrCat(kChunkHead, "{\"delta\":{\"content\":", escaped,
                        "},\"finish_reason\":null,\"index\":", index, ",\"logprobs\":null}",
                        tail_);
  }
  return absl::StrCat(kChunkHead, "{\"finish_reason\":null,\"index\":", index,
                      ",\"logprobs\":null,\"text\":", escaped, "}", tail_);
}

}  // namespace mamba::server::openai
