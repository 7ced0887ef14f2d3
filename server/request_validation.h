// Checks requests against the protocol's own limits before any work is done and turns them into
// engine requests. Every failure is INVALID_ARGUMENT with a message naming the field, the value
// that was wrong and what is allowed; README's validation table lists the rules. The engine's
// rules (sampling ranges, logprobs count) are checked once, by Engine::Submit, with the same
// field names.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/api/generation.h"
#include "engine/sampling/sampling_params.h"
#include "engine/tokenizer/tokenizer.h"
#include "mambaserve/v1/generation.pb.h"
#include "mambaserve/v1/models.pb.h"
#include "mambaserve/v1/sessions.pb.h"

namespace mamba::server {

struct RequestLimits {
  int32_t max_prompt_tokens = 16384;  // --max_prompt_tokens
  int32_t max_new_tokens = 4096;      // --max_new_tokens
  int32_t default_max_tokens = 16;    // max_tokens when unset (clamped to max_new_tokens)
  int32_t max_stop_strings = 16;
  int32_t max_stop_string_bytes = 256;
  int32_t max_stop_token_ids = 64;
  int32_t max_request_id_bytes = 128;
  int32_t max_list_page_size = 1000;
  int32_t default_list_page_size = 100;
};

// What validation needs to know about the loaded model.
struct ModelLimits {
  int32_t vocab_size = 0;  // model embedding rows: valid ids are [0, vocab_size)
  const tokenizer::Tokenizer* tokenizer = nullptr;
  // Bytes of text the tokenizer's longest token stands for (ModelInfo::max_token_bytes).
  int32_t max_token_bytes = 1;
  // The specials the tokenizer puts before a text (ModelInfo::text_prefix_tokens).
  std::vector<int32_t> text_prefix_tokens;
};

// Normalizers may shrink text before it is split into tokens (NFKC maps a 4-byte mathematical
// letter to one ASCII byte): the byte bound on a prompt allows for this factor.
inline constexpr int64_t kNormalizationShrink = 4;

// Marked prefix-cache offsets one Generate may carry (GenerateRequest.cache_checkpoints).
inline constexpr int kMaxCacheCheckpoints = 256;

// The most bytes of text that can encode to `max_tokens` tokens or fewer: text longer than this
// is refused before it is tokenized.
int64_t MaxPromptTextBytes(int32_t max_tokens, const ModelLimits& model);

// Text prompts longer than this are tokenized on the server's prompt threads rather than the
// gRPC thread that received the call (tokenizing 16 KiB takes well under a millisecond; the
// longest prompt --max_prompt_tokens allows may take hundreds).
inline constexpr size_t kInlinePromptBytes = 16 << 10;

// True when the request's prompt is text longer than kInlinePromptBytes.
bool TokenizeOffCallThread(const mambaserve::v1::GenerateRequest& request);
bool TokenizeOffCallThread(const mambaserve::v1::CreateSessionRequest& request);

// Validates `request` and converts it. Text input is tokenized here (so the prompt limit applies
// to tokens), with the tokenizer's special tokens when the request has no session; a session's
// text turn carries them in session_start instead, which the engine uses only for the session's
// first content; `default_seed` is used when the request leaves sampling.seed unset. Does not check
// that the session exists (the engine does).
absl::StatusOr<GenerationRequest> ToGenerationRequest(
    const mambaserve::v1::GenerateRequest& request, const RequestLimits& limits,
    const ModelLimits& model, uint64_t default_seed);

// The prompt of a CreateSession request (may be empty), validated like a Generate input.
absl::StatusOr<std::vector<int32_t>> SessionPrompt(
    const mambaserve::v1::CreateSessionRequest& request, const RequestLimits& limits,
    const ModelLimits& model);

// A session id is 32 lowercase hexadecimal digits (128 random bits). `field` names it in the
// message ("session_id").
absl::Status ValidateSessionId(std::string_view id, std::string_view field = "session_id");

// The id a new session (CreateSession, ImportSession) should get: `field` (the request's
// session_id) or else `metadata` (the x-session-id a session-affinity proxy routed by), "" for a
// random one. Both must be well-formed when given, and equal when both are.
absl::StatusOr<std::string> RequestedSessionId(std::string_view field, std::string_view metadata);

// Every id in [0, vocab_size); `field` names the list in the message.
absl::Status ValidateTokenIds(absl::Span<const int32_t> ids, int32_t vocab_size,
                              std::string_view field);

// page_size in [0, max] (0 = the default); returns the effective page size.
absl::StatusOr<int32_t> ValidatePageSize(int32_t page_size, const RequestLimits& limits);

// Detokenize ids against the tokenizer's vocabulary.
absl::Status ValidateDetokenizeRequest(const mambaserve::v1::DetokenizeRequest& request,
                                       const tokenizer::Tokenizer& tokenizer);

}  // namespace mamba::server
