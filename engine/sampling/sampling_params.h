// Per-request sampling parameters and their rules. Shared by the CPU sampler and the device
// sampler so that both draw the same token for the same (seed, position) where their logits
// agree. ValidateSamplingParams is the one place the allowed ranges are written: the engine calls
// it once, at its boundary (Engine::Submit), so every sequence that reaches a backend is valid by
// construction; protocols map its INVALID_ARGUMENT to their own errors.
#pragma once

#include <cstdint>

#include "absl/status/status.h"

namespace mamba::sampling {

// The smallest temperature that samples. Below it the distribution is a point mass in all but
// rounding (1e-30 gave greedy text, 1e-40, a denormal, overflowed the scaled logits into noise),
// so both backends decode greedily: the same tokens for every temperature in [0, kMinTemperature).
inline constexpr float kMinTemperature = 1e-5f;

struct SamplingParams {
  float temperature = 0.0f;         // below kMinTemperature (0 included) = greedy
  int32_t top_k = 0;                // 0 = off
  float top_p = 1.0f;               // 1 = off; in (0, 1]
  float min_p = 0.0f;               // 0 = off; in [0, 1]
  float repetition_penalty = 1.0f;  // 1 = off; > 0
  uint64_t seed = 0;                // with the position, fixes the random draw
  // OpenAI's additive penalties, over the tokens the request has generated (not the prompt): a
  // token generated c > 0 times loses frequency_penalty * c + presence_penalty from its logit.
  float frequency_penalty = 0.0f;  // 0 = off; in [-2, 2]
  float presence_penalty = 0.0f;   // 0 = off; in [-2, 2]

  bool greedy() const { return !(temperature >= kMinTemperature); }
  bool additive_penalties() const { return frequency_penalty != 0.0f || presence_penalty != 0.0f; }
};

// The most top_logprobs alternatives a request may ask for.
inline constexpr int32_t kMaxTopLogprobs = 20;

// Checks every field of `params` and `top_logprobs` (alternatives returned with each token,
// 0..kMaxTopLogprobs) against its allowed range. INVALID_ARGUMENT names the field as a request
// spells it ("sampling.temperature = -1 ..."), the value and what is allowed; NaN fails every rule.
absl::Status ValidateSamplingParams(const SamplingParams& params, int32_t top_logprobs = 0);

// What the additive penalties subtract from the logit of a token the request has generated
// `count` > 0 times: frequency_penalty * count + presence_penalty. The product is exact in double
// and the sum is rounded to float once, so every backend subtracts the same float.
inline float AdditivePenalty(const SamplingParams& params, int64_t count) {
  return static_cast<float>(static_cast<double>(params.frequency_penalty) *
                                static_cast<double>(count) +
                            static_cast<double>(params.presence_penalty));
}

// A token and its log-probability under the model's (unmodified) distribution.
struct TokenLogprob {
  int32_t token = -1;
  float logprob = 0.0f;
};

// The uniform random number in [0, 1) used to sample position `position` of a request with
// `seed`: a counter-based hash, so the draw does not depend on the batch or the backend.
inline double SampleUniform(uint64_t seed, uint64_t position) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + position + 0xD1B54A32D192ED03ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<double>(z >> 11) * (1.0 / 9007199254740992.0);  // 53 bits
}

}  // namespace mamba::sampling
