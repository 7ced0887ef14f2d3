#include "server/request_validation.h"

#include <algorithm>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace mamba::server {
namespace {

namespace v1 = ::mambaserve::v1;

absl::string_view AsAbsl(std::string_view s) { return absl::string_view(s.data(), s.size()); }

absl::Status Invalid(std::string_view message) {
  return absl::InvalidArgumentError(AsAbsl(message));
}

// A client-supplied value quoted in an error message: escaped and bounded, so a hostile value
// can neither break a log line nor make the message huge.
std::string Quote(std::string_view value) {
  constexpr size_t kMax = 48;
  std::string shown = absl::CHexEscape(AsAbsl(value.substr(0, kMax)));
  return absl::StrCat("'", shown, value.size() > kMax ? "...'" : "'");
}

// The tokens of a request's input: its token ids as given, or its text tokenized (with the
// tokenizer's special tokens, e.g. a BOS, when `add_special_tokens`).
absl::StatusOr<std::vector<int32_t>> InputTokens(bool has_text, const std::string& text,
                                                 bool has_ids, absl::Span<const int32_t> ids,
                                                 bool allow_empty, bool add_special_tokens,
                                                 const RequestLimits& limits,
                                                 const ModelLimits& model) {
  std::vector<int32_t> tokens;
  if (has_text) {
    if (text.empty()) {
      if (allow_empty) return tokens;
      return Invalid("input text is empty; send at least one character, or token_ids");
    }
    if (model.tokenizer == nullptr) return absl::FailedPreconditionError("no tokenizer loaded");
    // A text longer than any prompt of the allowed length could be is refused before the work of
    // tokenizing it (a 60 MB prompt took 2.8 s of CPU to be refused afterwards).
    const int64_t max_bytes = MaxPromptTextBytes(limits.max_prompt_tokens, model);
    if (static_cast<int64_t>(text.size()) > max_bytes) {
      return Invalid(absl::StrCat("input text is ", text.size(), " bytes; a prompt of at most ",
                                  limits.max_prompt_tokens,
                                  " tokens (the server's --max_prompt_tokens) is at most ",
                                  max_bytes, " bytes with this tokenizer"));
    }
    auto encoded = model.tokenizer->Encode(text, add_special_tokens);
    if (!encoded.ok()) {
      return Invalid(
          absl::StrCat("input text could not be tokenized: ", encoded.status().message()));
    }
    tokens = *std::move(encoded);
    if (tokens.empty() && !allow_empty) {
      return Invalid("input text encodes to no tokens; send other text, or token_ids");
    }
  } else if (has_ids) {
    if (ids.empty() && !allow_empty) {
      return Invalid("input token_ids is empty; send at least one token id, or text");
    }
    absl::Status s = ValidateTokenIds(ids, model.vocab_size, "token_ids");
    if (!s.ok()) return s;
    tokens.assign(ids.begin(), ids.end());
  } else if (!allow_empty) {
    return Invalid("input is empty; set text (UTF-8) or token_ids (at least one id)");
  }
  if (static_cast<int64_t>(tokens.size()) > limits.max_prompt_tokens) {
    return Invalid(absl::StrCat("input has ", tokens.size(), " tokens; at most ",
                                limits.max_prompt_tokens,
                                " are allowed (the server's --max_prompt_tokens)"));
  }
  return tokens;
}

// The sampling fields in engine terms. Their ranges are the engine's rules
// (sampling::ValidateSamplingParams, checked once by Engine::Submit); here only the protocol's
// encoding: unset optional fields mean "off".
void ConvertSampling(const v1::SamplingParams& in, sampling::SamplingParams* out) {
  out->temperature = in.temperature();
  out->top_k = in.top_k();
  out->top_p = in.has_top_p() ? in.top_p() : 1.0f;
  out->min_p = in.min_p();
  out->repetition_penalty = in.has_repetition_penalty() ? in.repetition_penalty() : 1.0f;
  out->presence_penalty = in.presence_penalty();
  out->frequency_penalty = in.frequency_penalty();
}

absl::Status ValidateStopping(const v1::StoppingCriteria& in, const RequestLimits& limits,
                              const ModelLimits& model, StoppingCriteria* out) {
  const int32_t max_tokens = in.has_max_tokens()
                                 ? in.max_tokens()
                                 : std::min(limits.default_max_tokens, limits.max_new_tokens);
  if (max_tokens < 1 || max_tokens > limits.max_new_tokens) {
    return Invalid(absl::StrCat("stopping.max_tokens = ", max_tokens,
                                " is out of range; allowed: [1, ", limits.max_new_tokens,
                                "] (the server's --max_new_tokens)"));
  }
  if (in.stop_size() > limits.max_stop_strings) {
    return Invalid(absl::StrCat("stopping.stop has ", in.stop_size(), " strings; at most ",
                                limits.max_stop_strings, " are allowed"));
  }
  for (int i = 0; i < in.stop_size(); ++i) {
    const std::string& stop = in.stop(i);
    if (stop.empty()) {
      return Invalid(absl::StrCat("stopping.stop[", i, "] is empty; stop strings must be 1 to ",
                                  limits.max_stop_string_bytes, " bytes long"));
    }
    if (static_cast<int64_t>(stop.size()) > limits.max_stop_string_bytes) {
      return Invalid(absl::StrCat("stopping.stop[", i, "] is ", stop.size(),
                                  " bytes long; stop strings must be 1 to ",
                                  limits.max_stop_string_bytes, " bytes long"));
    }
  }
  if (in.stop_token_ids_size() > limits.max_stop_token_ids) {
    return Invalid(absl::StrCat("stopping.stop_token_ids has ", in.stop_token_ids_size(),
                                " ids; at most ", limits.max_stop_token_ids, " are allowed"));
  }
  absl::Status ids =
      ValidateTokenIds(in.stop_token_ids(), model.vocab_size, "stopping.stop_token_ids");
  if (!ids.ok()) return ids;

  out->max_tokens = max_tokens;
  out->stop_strings.assign(in.stop().begin(), in.stop().end());
  out->stop_token_ids.assign(in.stop_token_ids().begin(), in.stop_token_ids().end());
  out->ignore_eos = in.ignore_eos();
  return absl::OkStatus();
}

}  // namespace

int64_t MaxPromptTextBytes(int32_t max_tokens, const ModelLimits& model) {
  return int64_t{max_tokens} * std::max(1, model.max_token_bytes) * kNormalizationShrink;
}

absl::Status ValidateTokenIds(absl::Span<const int32_t> ids, int32_t vocab_size,
                              std::string_view field) {
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= vocab_size) {
      return Invalid(absl::StrCat(AsAbsl(field), "[", i, "] = ", ids[i],
                                  " is outside the vocabulary; allowed: [0, ", vocab_size, ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateSessionId(std::string_view id, std::string_view field) {
  bool ok = id.size() == 32;
  for (size_t i = 0; ok && i < id.size(); ++i) {
    const char c = id[i];
    ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
  }
  if (ok) return absl::OkStatus();
  if (id.empty()) {
    return Invalid(
        absl::StrCat(AsAbsl(field), " is empty; a session id is 32 lowercase hexadecimal digits"));
  }
  return Invalid(absl::StrCat(AsAbsl(field), " ", Quote(id),
                              " is malformed; a session id is 32 lowercase hexadecimal digits"));
}

absl::StatusOr<std::string> RequestedSessionId(std::string_view field, std::string_view metadata) {
  if (!field.empty()) {
    absl::Status valid = ValidateSessionId(field);
    if (!valid.ok()) return valid;
    if (!metadata.empty() && metadata != field) {
      return Invalid(absl::StrCat("session_id ", Quote(field), " and the x-session-id metadata ",
                                  Quote(metadata),
                                  " differ; send the same id in both (proxies route by the "
                                  "metadata)"));
    }
    return std::string(field);
  }
  if (!metadata.empty()) {
    absl::Status valid = ValidateSessionId(metadata, "x-session-id metadata");
    if (!valid.ok()) return valid;
  }
  return std::string(metadata);
}

absl::StatusOr<int32_t> ValidatePageSize(int32_t page_size, const RequestLimits& limits) {
  if (page_size == 0) return limits.default_list_page_size;
  if (page_size < 0 || page_size > limits.max_list_page_size) {
    return Invalid(absl::StrCat("page_size = ", page_size, " is out of range; allowed: [1, ",
                                limits.max_list_page_size, "], or 0 for ",
                                limits.default_list_page_size));
  }
  return page_size;
}

bool TokenizeOffCallThread(const v1::GenerateRequest& request) {
  return request.input_case() == v1::GenerateRequest::kText &&
         request.text().size() > kInlinePromptBytes;
}

bool TokenizeOffCallThread(const v1::CreateSessionRequest& request) {
  return request.prompt_case() == v1::CreateSessionRequest::kText &&
         request.text().size() > kInlinePromptBytes;
}

absl::StatusOr<GenerationRequest> ToGenerationRequest(const v1::GenerateRequest& request,
                                                      const RequestLimits& limits,
                                                      const ModelLimits& model,
                                                      uint64_t default_seed) {
  GenerationRequest out;
  if (static_cast<int64_t>(request.request_id().size()) > limits.max_request_id_bytes) {
    return Invalid(absl::StrCat("request_id is ", request.request_id().size(),
                                " bytes long; at most ", limits.max_request_id_bytes,
                                " are allowed"));
  }
  out.request_id = request.request_id();
  if (!request.session_id().empty()) {
    absl::Status s = ValidateSessionId(request.session_id());
    if (!s.ok()) return s;
    out.session_id = request.session_id();
  }
  // A text prompt gets the special tokens the tokenizer puts in front (a BOS) once: a stateless
  // prompt now, a session's turn only when it is the session's first content (the engine adds
  // session_start then); token ids are taken as given.
  const bool text = request.input_case() == v1::GenerateRequest::kText;
  absl::StatusOr<std::vector<int32_t>> tokens =
      InputTokens(text, request.text(), request.input_case() == v1::GenerateRequest::kTokenIds,
                  request.token_ids().ids(), /*allow_empty=*/false,
                  /*add_special_tokens=*/out.session_id.empty(), limits, model);
  if (!tokens.ok()) return tokens.status();
  out.prompt = *std::move(tokens);
  if (text && !out.session_id.empty()) out.session_start = model.text_prefix_tokens;
  if (request.cache_checkpoints_size() > kMaxCacheCheckpoints) {
    return Invalid(absl::StrCat("cache_checkpoints has ", request.cache_checkpoints_size(),
                                " offsets; at most ", kMaxCacheCheckpoints, " are allowed"));
  }
  for (int i = 0; i < request.cache_checkpoints_size(); ++i) {
    const uint32_t at = request.cache_checkpoints(i);
    if (at < 1 || at > out.prompt.size()) {
      return Invalid(absl::StrCat("cache_checkpoints[", i, "] = ", at,
                                  " is outside the input; allowed: 1 to ", out.prompt.size(),
                                  " (offsets in tokens)"));
    }
    out.cache_checkpoints.push_back(static_cast<int32_t>(at));
  }

  ConvertSampling(request.sampling(), &out.sampling);
  out.sampling.seed = request.sampling().has_seed() ? request.sampling().seed() : default_seed;
  absl::Status s = ValidateStopping(request.stopping(), limits, model, &out.stopping);
  if (!s.ok()) return s;

  if (request.has_logprobs()) {
    // The protocol's encoding: "none" is an unset field, so a set one must be a count. The upper
    // bound is the engine's rule (it checks it); the message states both.
    if (request.logprobs() < 0) {
      return Invalid(absl::StrCat("logprobs = ", request.logprobs(),
                                  " is out of range; allowed: [0, ", sampling::kMaxTopLogprobs,
                                  "] (0 = the chosen token only), or unset for none"));
    }
    out.logprobs = request.logprobs();
  }
  return out;
}

absl::StatusOr<std::vector<int32_t>> SessionPrompt(const v1::CreateSessionRequest& request,
                                                   const RequestLimits& limits,
                                                   const ModelLimits& model) {
  // The session's first content: a text gets the tokenizer's leading specials (a BOS).
  const bool text = request.prompt_case() == v1::CreateSessionRequest::kText;
  return InputTokens(text, request.text(),
                     request.prompt_case() == v1::CreateSessionRequest::kTokenIds,
                     request.token_ids().ids(), /*allow_empty=*/true,
                     /*add_special_tokens=*/text && !request.text().empty(), limits, model);
}

absl::Status ValidateDetokenizeRequest(const v1::DetokenizeRequest& request,
                                       const tokenizer::Tokenizer& tokenizer) {
  return ValidateTokenIds(request.token_ids(), tokenizer.vocab_size(), "token_ids");
}

}  // namespace mamba::server
