// Fuzzes what the server does with a request's bytes before any work: ParseRequestBytes (the
// server's own parse, which names a field holding invalid UTF-8) and then the validation of
// GenerateRequest, CreateSessionRequest, DetokenizeRequest, ImportSessionRequest and
// ListSessionsRequest, against a fixed small set of limits and a real tokenizer.
//
// Input: byte 0 picks the request type (low 3 bits); byte 1 is the length n of the
// x-session-id metadata value, the next n bytes that value; the rest is the serialized request.
//
// Checks: every refusal is INVALID_ARGUMENT (FAILED_PRECONDITION for an import from another
// model) with a short, valid UTF-8 message however large the input; and everything accepted
// honours the limits (prompt length, vocabulary, sampling ranges, stop lists, max_tokens,
// logprobs, ids) and is what the request said.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "engine/model/model_config.h"
#include "engine/sampling/sampling_params.h"
#include "engine/sessions/session_codec.h"
#include "engine/tokenizer/tokenizer.h"
#include "google/protobuf/stubs/logging.h"
#include "server/request_validation.h"
#include "server/wire_codec.h"
#include "tests/fuzz/fuzz_check.h"
#include "tests/fuzz/fuzz_session_keys.h"

namespace {

namespace v1 = ::mambaserve::v1;
using mamba::server::ModelLimits;
using mamba::server::RequestLimits;

// Error messages go back to clients and into logs; the validators quote client values bounded
// and escaped, so a message stays short and printable whatever the request holds.
constexpr size_t kMaxMessageBytes = 1024;
constexpr uint64_t kDefaultSeed = 0x5eed;

struct Setup {
  std::unique_ptr<mamba::tokenizer::Tokenizer> tokenizer;
  RequestLimits limits;
  ModelLimits model;
  mamba::model::ModelConfig config;  // what an imported session must match
};

const Setup& GetSetup() {
  static const Setup* setup = [] {
    auto* s = new Setup();
    auto tok = mamba::tokenizer::LoadTokenizerJson(mamba::fuzz::TestDataDir() +
                                                   "/tokenizer/small/tokenizer.json");
    FUZZ_CHECK(tok.ok(), "cannot load the tokenizer: %s", tok.status().ToString().c_str());
    s->tokenizer = *std::move(tok);
    s->limits.max_prompt_tokens = 64;
    s->limits.max_new_tokens = 128;
    s->limits.default_max_tokens = 16;
    s->limits.max_stop_strings = 4;
    s->limits.max_stop_string_bytes = 32;
    s->limits.max_stop_token_ids = 8;
    s->limits.max_request_id_bytes = 32;
    s->limits.max_list_page_size = 50;
    s->limits.default_list_page_size = 10;
    s->model.vocab_size = s->tokenizer->vocab_size();
    s->model.tokenizer = s->tokenizer.get();
    s->config.n_layer = 2;
    s->config.d_model = 16;
    s->config.d_inner = 32;
    s->config.d_conv = 4;
    s->config.d_state = 4;
    s->config.dt_rank = 1;
    s->config.vocab_size = s->model.vocab_size;
    // Protobuf logs every string field it refuses to parse; the fuzzer makes millions.
    google::protobuf::SetLogHandler(nullptr);
    return s;
  }();
  return *setup;
}

void CheckRefusal(const absl::Status& s, bool import_allowed = false) {
  FUZZ_CHECK(s.code() == absl::StatusCode::kInvalidArgument ||
                 (import_allowed && s.code() == absl::StatusCode::kFailedPrecondition),
             "unexpected status %s", s.ToString().c_str());
  const std::string message(s.message());
  FUZZ_CHECK(!message.empty(), "a refusal without a message");
  FUZZ_CHECK(message.size() <= kMaxMessageBytes, "a %zu-byte error message", message.size());
  FUZZ_CHECK(mamba::tokenizer::IsValidUtf8(message), "error message is not valid UTF-8");
}

bool IdsInVocabulary(const std::vector<int32_t>& ids, int32_t vocab) {
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab) return false;
  }
  return true;
}

// The prompt the validator must have produced: the encoded text or the given ids.
template <typename Request>
void CheckPrompt(const Request& r, bool is_text, bool is_ids, const std::vector<int32_t>& prompt,
                 const Setup& s) {
  FUZZ_CHECK(static_cast<int64_t>(prompt.size()) <= s.limits.max_prompt_tokens,
             "prompt of %zu tokens", prompt.size());
  FUZZ_CHECK(IdsInVocabulary(prompt, s.model.vocab_size), "prompt id outside the vocabulary");
  if (is_text) {
    auto encoded = s.tokenizer->Encode(r.text());
    FUZZ_CHECK(encoded.ok() && *encoded == prompt, "prompt differs from the encoded text");
  } else if (is_ids) {
    FUZZ_CHECK(std::equal(prompt.begin(), prompt.end(), r.token_ids().ids().begin(),
                          r.token_ids().ids().end()),
               "prompt differs from token_ids");
  } else {
    FUZZ_CHECK(prompt.empty(), "a prompt from no input");
  }
}

void FuzzGenerate(const v1::GenerateRequest& r, const Setup& s) {
  absl::StatusOr<mamba::GenerationRequest> g =
      mamba::server::ToGenerationRequest(r, s.limits, s.model, kDefaultSeed);
  if (!g.ok()) return CheckRefusal(g.status());
  // What reaches the engine's scheduler has also passed the engine's boundary (Engine::Submit):
  // the sampling rules, checked there once.
  const absl::Status engine_rules =
      mamba::sampling::ValidateSamplingParams(g->sampling, std::max(0, g->logprobs));
  if (!engine_rules.ok()) return CheckRefusal(engine_rules);
  const RequestLimits& l = s.limits;
  FUZZ_CHECK(!g->prompt.empty(), "empty prompt accepted");
  CheckPrompt(r, r.input_case() == v1::GenerateRequest::kText,
              r.input_case() == v1::GenerateRequest::kTokenIds, g->prompt, s);
  FUZZ_CHECK(static_cast<int64_t>(g->request_id.size()) <= l.max_request_id_bytes &&
                 g->request_id == r.request_id(),
             "request_id");
  FUZZ_CHECK(g->session_id == r.session_id(), "session_id changed");
  FUZZ_CHECK(g->session_id.empty() || mamba::server::ValidateSessionId(g->session_id).ok(),
             "malformed session id accepted");
  const mamba::sampling::SamplingParams& p = g->sampling;
  FUZZ_CHECK(std::isfinite(p.temperature) && p.temperature >= 0, "temperature %g", p.temperature);
  FUZZ_CHECK(p.top_k >= 0, "top_k %d", p.top_k);
  FUZZ_CHECK(p.top_p > 0 && p.top_p <= 1, "top_p %g", p.top_p);
  FUZZ_CHECK(p.min_p >= 0 && p.min_p <= 1, "min_p %g", p.min_p);
  FUZZ_CHECK(std::isfinite(p.repetition_penalty) && p.repetition_penalty > 0,
             "repetition_penalty %g", p.repetition_penalty);
  FUZZ_CHECK(p.seed == (r.sampling().has_seed() ? r.sampling().seed() : kDefaultSeed), "seed");
  const mamba::StoppingCriteria& st = g->stopping;
  FUZZ_CHECK(st.max_tokens >= 1 && st.max_tokens <= l.max_new_tokens, "max_tokens %d",
             st.max_tokens);
  FUZZ_CHECK(static_cast<int32_t>(st.stop_strings.size()) <= l.max_stop_strings, "stop count");
  for (const std::string& stop : st.stop_strings) {
    FUZZ_CHECK(!stop.empty() && static_cast<int32_t>(stop.size()) <= l.max_stop_string_bytes,
               "stop string of %zu bytes", stop.size());
  }
  FUZZ_CHECK(static_cast<int32_t>(st.stop_token_ids.size()) <= l.max_stop_token_ids,
             "stop id count");
  FUZZ_CHECK(IdsInVocabulary(st.stop_token_ids, s.model.vocab_size), "stop id outside vocab");
  FUZZ_CHECK(g->logprobs == (r.has_logprobs() ? r.logprobs() : -1) && g->logprobs >= -1 &&
                 g->logprobs <= mamba::sampling::kMaxTopLogprobs,
             "logprobs %d", g->logprobs);
}

void FuzzCreateSession(const v1::CreateSessionRequest& r, std::string_view metadata,
                       const Setup& s) {
  absl::StatusOr<std::string> id = mamba::server::RequestedSessionId(r.session_id(), metadata);
  if (!id.ok()) {
    CheckRefusal(id.status());
  } else {
    FUZZ_CHECK(id->empty() || mamba::server::ValidateSessionId(*id).ok(), "bad id accepted");
    FUZZ_CHECK(*id == (r.session_id().empty() ? std::string(metadata) : r.session_id()),
               "the id is neither the field nor the metadata");
  }
  absl::StatusOr<std::vector<int32_t>> prompt = mamba::server::SessionPrompt(r, s.limits, s.model);
  if (!prompt.ok()) return CheckRefusal(prompt.status());
  CheckPrompt(r, r.prompt_case() == v1::CreateSessionRequest::kText,
              r.prompt_case() == v1::CreateSessionRequest::kTokenIds, *prompt, s);
}

void FuzzDetokenize(const v1::DetokenizeRequest& r, const Setup& s) {
  absl::Status valid = mamba::server::ValidateDetokenizeRequest(r, *s.tokenizer);
  const std::vector<int32_t> ids(r.token_ids().begin(), r.token_ids().end());
  FUZZ_CHECK(valid.ok() == IdsInVocabulary(ids, s.tokenizer->vocab_size()),
             "Detokenize validation disagrees with the vocabulary");
  if (!valid.ok()) return CheckRefusal(valid);
  absl::StatusOr<std::string> text = s.tokenizer->Decode(ids, r.skip_special_tokens());
  FUZZ_CHECK(text.ok() && mamba::tokenizer::IsValidUtf8(*text), "validated ids do not decode");
}

void FuzzImport(const v1::ImportSessionRequest& r, std::string_view metadata, const Setup& s) {
  absl::StatusOr<std::string> id = mamba::server::RequestedSessionId(r.session_id(), metadata);
  if (!id.ok()) CheckRefusal(id.status());
  absl::StatusOr<mamba::sessions::SessionSnapshot> snapshot =
      mamba::sessions::DecodeSession(r.state(), mamba::fuzz::FuzzSessionKeys());
  if (!snapshot.ok()) return CheckRefusal(snapshot.status());
  absl::Status compatible =
      mamba::sessions::CheckSessionCompatible(*snapshot, s.config, "fuzz-model");
  if (!compatible.ok()) CheckRefusal(compatible, /*import_allowed=*/true);
  absl::Status valid = mamba::sessions::ValidateSessionSnapshot(*snapshot, s.model.vocab_size,
                                                                s.limits.max_prompt_tokens);
  if (!valid.ok()) CheckRefusal(valid);
}

void FuzzList(const v1::ListSessionsRequest& r, const Setup& s) {
  absl::StatusOr<int32_t> page = mamba::server::ValidatePageSize(r.page_size(), s.limits);
  if (!page.ok()) return CheckRefusal(page.status());
  FUZZ_CHECK(*page >= 1 && *page <= s.limits.max_list_page_size, "page size %d", *page);
  FUZZ_CHECK(*page == (r.page_size() == 0 ? s.limits.default_list_page_size : r.page_size()),
             "page size changed");
}

// Parses with the server's parser; a refusal must be a well-formed INVALID_ARGUMENT, and an
// accepted message must be what protobuf itself parses.
template <typename Request>
bool Parse(const std::string& bytes, Request* r) {
  absl::Status parsed = mamba::server::ParseRequestBytes(bytes, r);
  Request direct;
  FUZZ_CHECK(parsed.ok() == direct.ParseFromString(bytes),
             "ParseRequestBytes and protobuf disagree");
  if (!parsed.ok()) {
    CheckRefusal(parsed);
    return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const Setup& s = GetSetup();
  if (size < 2) return 0;
  const int kind = data[0] & 7;
  const size_t metadata_len = std::min<size_t>(data[1], size - 2);
  const std::string_view metadata(reinterpret_cast<const char*>(data + 2), metadata_len);
  const std::string bytes(reinterpret_cast<const char*>(data + 2 + metadata_len),
                          size - 2 - metadata_len);
  switch (kind) {
    case 0:
    case 5: {
      v1::GenerateRequest r;
      if (Parse(bytes, &r)) FuzzGenerate(r, s);
      break;
    }
    case 1:
    case 6: {
      v1::CreateSessionRequest r;
      if (Parse(bytes, &r)) FuzzCreateSession(r, metadata, s);
      break;
    }
    case 2: {
      v1::DetokenizeRequest r;
      if (Parse(bytes, &r)) FuzzDetokenize(r, s);
      break;
    }
    case 3: {
      v1::ImportSessionRequest r;
      if (Parse(bytes, &r)) FuzzImport(r, metadata, s);
      break;
    }
    default: {
      v1::ListSessionsRequest r;
      if (Parse(bytes, &r)) FuzzList(r, s);
      break;
    }
  }
  return 0;
}
