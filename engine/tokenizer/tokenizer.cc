#include "engine/tokenizer/tokenizer.h"

#include <string>

#include "common/status_macros.h"

namespace mamba::tokenizer {

absl::StatusOr<std::string> Tokenizer::Decode(absl::Span<const int32_t> ids,
                                              bool skip_special_tokens) const {
  MAMBA_ASSIGN_OR_RETURN(std::string bytes, DecodeBytes(ids, skip_special_tokens));
  if (IsValidUtf8(bytes)) return bytes;
  return ToValidUtf8(bytes);
}

absl::Status Tokenizer::DecodeStreamStep(int32_t id, bool skip_special_tokens,
                                         DecodeStreamState* state, std::string* out) const {
  MAMBA_ASSIGN_OR_RETURN(std::string bytes, DecodeBytes({id}, skip_special_tokens));
  if (!(skip_special_tokens && IsSpecial(id))) state->started = true;
  std::string& pending = state->pending;
  pending += bytes;
  const size_t complete = CompleteUtf8Prefix(pending);
  if (out != nullptr) AppendUtf8Lossy(std::string_view(pending).substr(0, complete), out);
  pending.erase(0, complete);
  return absl::OkStatus();
}

void Tokenizer::DecodeStreamFlush(DecodeStreamState* state, std::string* out) const {
  AppendUtf8Lossy(state->pending, out);
  state->pending.clear();
}

absl::Status IncrementalDecoder::AddContext(absl::Span<const int32_t> ids) {
  for (const int32_t id : ids) {
    MAMBA_RETURN_IF_ERROR(tokenizer_->DecodeStreamStep(id, skip_special_, &state_, nullptr));
  }
  state_.context_only = !state_.pending.empty();
  return absl::OkStatus();
}

absl::StatusOr<std::string> IncrementalDecoder::Add(int32_t id) {
  std::string text;
  const size_t held = state_.pending.size();
  MAMBA_RETURN_IF_ERROR(tokenizer_->DecodeStreamStep(id, skip_special_, &state_, &text));
  // What the context held is the stream's too once this id completed or extended it.
  if (!text.empty() || state_.pending.size() != held) state_.context_only = false;
  return text;
}

std::string IncrementalDecoder::Flush() {
  std::string text;
  if (state_.context_only) {
    // The held bytes are the prompt's; the stream never added to them.
    state_.pending.clear();
    state_.pending_tokens = 0;
  }
  tokenizer_->DecodeStreamFlush(&state_, &text);
  state_.context_only = false;
  return text;
}

}  // namespace mamba::tokenizer
