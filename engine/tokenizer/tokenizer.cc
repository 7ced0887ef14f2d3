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

absl::StatusOr<std::string> IncrementalDecoder::Add(int32_t id) {
  MAMBA_ASSIGN_OR_RETURN(std::string bytes, tokenizer_->DecodeBytes({id}, skip_special_));
  pending_ += bytes;
  const size_t complete = CompleteUtf8Prefix(pending_);
  std::string text;
  AppendUtf8Lossy(std::string_view(pending_).substr(0, complete), &text);
  pending_.erase(0, complete);
  return text;
}

std::string IncrementalDecoder::Flush() {
  std::string text = ToValidUtf8(pending_);
  pending_.clear();
  return text;
}

}  // namespace mamba::tokenizer
