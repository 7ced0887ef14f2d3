// What a generation request asks for and what it produces, in engine terms (no protobuf).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "engine/sampling/sampling_params.h"

namespace mamba {

struct StoppingCriteria {
  int32_t max_tokens = 16;                // >= 1
  std::vector<std::string> stop_strings;  // generation ends before the first occurrence
  std::vector<int32_t> stop_token_ids;    // generation ends after emitting one of these
  bool ignore_eos = false;                // keep going past the end-of-text token
};

struct GenerationRequest {
  std::string request_id;       // for logs; the engine makes one when empty
  std::string tenant;           // owner of the session, "" when auth is off
  std::string session_id;       // "" = stateless (a fresh zero state)
  std::vector<int32_t> prompt;  // new tokens (continuing the session's state, if any)
  // Tokens put before `prompt` when this request is the first content of its session (it holds
  // no tokens yet): the specials a tokenizer's post-processor puts before a text (a BOS), which
  // later turns must not repeat. Ignored without a session (such a prompt carries its own).
  std::vector<int32_t> session_start;
  // Prompt offsets (token counts, 1..prompt size) after which the prefix cache should keep the
  // state, besides its own checkpoints: message boundaries, so that a shared system prompt hits
  // exactly. Stateless requests only.
  std::vector<int32_t> cache_checkpoints;
  sampling::SamplingParams sampling;
  StoppingCriteria stopping;
  int32_t logprobs = -1;  // -1: none; 0..20: chosen token plus that many top
  absl::Time deadline = absl::InfiniteFuture();
};

enum class FinishReason { kLength, kStop, kEos, kCancelled, kError };
const char* FinishReasonName(FinishReason r);  // "length", "stop", "eos", "cancelled", "error"

struct TokenLogprobs {
  sampling::TokenLogprob chosen;
  std::vector<sampling::TokenLogprob> top;  // most likely first
};

struct Usage {
  // Input tokens prefilled for this request (a stateless request's input minus cached_tokens).
  int32_t prompt_tokens = 0;
  int32_t generated_tokens = 0;  // tokens streamed
  // Tokens already held in a state before this request: the session's, or the cached prefix a
  // stateless request resumed from.
  int64_t cached_tokens = 0;
};

struct GenerationTiming {
  absl::Duration queue_time;           // submit -> first step that worked on the request
  absl::Duration time_to_first_token;  // submit -> first token produced
  absl::Duration total;                // submit -> finish
};

struct GenerationResult {
  FinishReason finish_reason = FinishReason::kLength;
  // Why it ended, beyond finish_reason:
  //   OK                 length / stop / eos, and kCancelled when its session was closed;
  //   CANCELLED          kCancelled: the consumer called GenerationStream::Cancel();
  //   DEADLINE_EXCEEDED  kCancelled: the request's deadline passed;
  //   UNAVAILABLE        kCancelled: the engine shut down (drain ended) before it finished;
  //   anything else      kError: the engine failed (the message says how).
  // The tokens already streamed stay valid in every case (and in the session, if any, except
  // after kError).
  absl::Status status;
  Usage usage;
  GenerationTiming timing;
};

// Output produced since the consumer's last read: new tokens (merged when the consumer is slower
// than the engine) and the text they complete, and the result once finished.
struct GenerationChunk {
  std::vector<int32_t> token_ids;
  std::string text;                     // whole UTF-8 characters only
  std::vector<TokenLogprobs> logprobs;  // one per token when the request asked
  bool finished = false;
  GenerationResult result;  // valid when finished
};

}  // namespace mamba
