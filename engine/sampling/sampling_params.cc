#include "engine/sampling/sampling_params.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace mamba::sampling {

absl::Status ValidateSamplingParams(const SamplingParams& p, int32_t top_logprobs) {
  // Written as negated ranges so that NaN, which fails every comparison, is rejected too.
  if (!(p.temperature >= 0.0f) || !std::isfinite(p.temperature)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling.temperature = ", p.temperature,
                     " is invalid; allowed: a finite value >= 0 (0 = greedy)"));
  }
  if (p.top_k < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling.top_k = ", p.top_k, " is invalid; allowed: >= 0 (0 = off)"));
  }
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling.top_p = ", p.top_p, " is out of range; allowed: (0, 1] (1 = off)"));
  }
  if (!(p.min_p >= 0.0f && p.min_p <= 1.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling.min_p = ", p.min_p, " is out of range; allowed: [0, 1] (0 = off)"));
  }
  if (!(p.repetition_penalty > 0.0f) || !std::isfinite(p.repetition_penalty)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling.repetition_penalty = ", p.repetition_penalty,
                     " is invalid; allowed: a finite value > 0 (1 = off)"));
  }
  if (!(p.frequency_penalty >= -2.0f && p.frequency_penalty <= 2.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling.frequency_penalty = ", p.frequency_penalty,
                     " is out of range; allowed: -2 to 2 (0 = off)"));
  }
  if (!(p.presence_penalty >= -2.0f && p.presence_penalty <= 2.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling.presence_penalty = ", p.presence_penalty,
                     " is out of range; allowed: -2 to 2 (0 = off)"));
  }
  if (top_logprobs < 0 || top_logprobs > kMaxTopLogprobs) {
    return absl::InvalidArgumentError(absl::StrCat("top_logprobs = ", top_logprobs,
                                                   " is out of range; allowed: [0, ",
                                                   kMaxTopLogprobs, "] alternatives per token"));
  }
  return absl::OkStatus();
}

}  // namespace mamba::sampling
