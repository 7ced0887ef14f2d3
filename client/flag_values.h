// Parsing of the list-valued flags mamba-client accepts (token ids, stop strings), and the
// input flags that generate and session create share.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/flags/declare.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

ABSL_DECLARE_FLAG(std::string, prompt);
ABSL_DECLARE_FLAG(std::string, prompt_ids);
ABSL_DECLARE_FLAG(std::string, session);
ABSL_DECLARE_FLAG(uint32_t, ttl_seconds);

namespace mamba::client {

// "1,2,3" -> {1, 2, 3}; spaces around ids are allowed; "" -> {}. `flag` names it in errors.
absl::StatusOr<std::vector<int32_t>> ParseIdList(std::string_view text, std::string_view flag);

// A comma-separated list of strings with C-style escapes: "\n" (newline), "\t", "\\", "\,"
// (a comma inside a string). "" -> {}.
absl::StatusOr<std::vector<std::string>> ParseStringList(std::string_view text,
                                                         std::string_view flag);

// The input --prompt / --prompt_ids selects (at most one of them may be set).
struct PromptInput {
  enum class Kind { kNone, kText, kIds } kind = Kind::kNone;
  std::string text;
  std::vector<int32_t> ids;
};
absl::StatusOr<PromptInput> PromptFromFlags();

}  // namespace mamba::client
