// The token sampler: turns one row of logits into a token and log-probabilities. This is the
// reference algorithm; the device sampler mirrors it step for step, so that both backends draw
// the same token for the same (seed, position) where their logits agree.
//
// The algorithm, for logits l[0, V):
//  1. Reported log-probabilities come from the raw logits: m = max l, s = sum over i of
//     exp(l[i] - m) accumulated in double, logprob(i) = float(double(l[i] - m) - log(s)).
//     The top_logprobs alternatives are the N largest raw logits (ties: lower id first).
//  2. Repetition penalty rp != 1: for each distinct token t in penalty_tokens,
//     l'[t] = l[t] > 0 ? l[t] / rp : l[t] * rp. Then the additive penalties (frequency_penalty or
//     presence_penalty nonzero): for each distinct token t that occurs c times in output_tokens,
//     l'[t] -= AdditivePenalty(params, c) (one float subtraction). Other logits are unchanged.
//  3. temperature below kMinTemperature (0 included): the token is argmax l' (ties: the lowest
//     id).
//  4. Otherwise z[i] = l'[i] / temperature (float division). Candidates are ordered by z
//     descending (ties: lower id first). top_k > 0 keeps the first min(top_k, V). Each kept
//     candidate gets the weight w = exp(z - z_first) (so the first has weight 1; if z_first
//     overflowed to +inf, w is 1 where z is +inf and 0 elsewhere), and p = w / (sum of kept w).
//     top_p < 1 keeps the shortest prefix whose cumulative p is >= top_p (at least one
//     candidate). min_p > 0 then keeps the candidates with p >= min_p * p_first, i.e. w >= min_p.
//     With S = the sum of the kept w and u = SampleUniform(seed, position) * S, the token is the
//     first kept candidate at which the running sum of w exceeds u (if rounding leaves none, the
//     last kept candidate with nonzero weight).
// exp is a float exp within about 1 ulp (here the CPU backend's vector exp); sums are in double,
// in an order the implementation chooses (a device reduces in parallel). Orders differ by about
// 1e-16 of S, so two implementations can disagree only when u lands that close to a boundary.
// The kept set is always a prefix of the candidate order, so no path sorts the vocabulary: see
// sampler.cc for the partial selection and the weight buckets.
//
// Thread-safety: a Sampler holds scratch buffers; use one per thread.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "engine/sampling/sampling_params.h"

namespace mamba::sampling {

struct SampleOutput {
  int32_t token = -1;
  float logprob = 0.0f;           // of `token`, under the raw logits (step 1)
  std::vector<TokenLogprob> top;  // top_logprobs alternatives, most likely first
};

class Sampler {
 public:
  Sampler() = default;
  Sampler(const Sampler&) = delete;
  Sampler& operator=(const Sampler&) = delete;
  Sampler(Sampler&&) = default;
  Sampler& operator=(Sampler&&) = default;

  // Samples one token from `logits` (one entry per vocabulary id) as the header comment describes.
  // `position` is the index of the sampled token within its request (the random draw's counter);
  // `penalty_tokens` are the ids the repetition penalty applies to (the prompt and the generated
  // tokens), `output_tokens` the ones the additive penalties count (the generated tokens only).
  // Fails, leaving *out unchanged, on invalid params, an empty vocabulary, a penalty or output
  // token outside [0, V), or logits that are NaN or +inf (a model that diverged), and never
  // crashes.
  absl::Status Sample(absl::Span<const float> logits, const SamplingParams& params,
                      uint64_t position, absl::Span<const int32_t> penalty_tokens,
                      absl::Span<const int32_t> output_tokens, int32_t top_logprobs,
                      SampleOutput* out);

 private:
  // Candidate order: larger z first, then lower id.
  struct Candidate {
    float z;
    int32_t id;
  };

  // Fills candidates_ with the first min(k, V) entries of `values` in candidate order.
  void SelectTopK(absl::Span<const float> values, int32_t k);
  // Picks the token from `z` (temperature-scaled logits) by step 4.
  int32_t SampleFromScaled(absl::Span<const float> z, const SamplingParams& params,
                           uint64_t position);
  // Step 4 over candidates_ (the whole top-k set, ordered) with weights_ in the same order.
  int32_t SampleSorted(const SamplingParams& params, double uniform);
  // Step 4 over the weight buckets of every id (weights_ by id), restricted to the ids not after
  // *last_member in candidate order when it is set.
  int32_t SampleBuckets(absl::Span<const float> z, const Candidate* last_member,
                        const SamplingParams& params, double uniform);
  // Fills candidates_ with the members of weight bucket `bucket`, ordered.
  void SortBucket(absl::Span<const float> z, int bucket);

  std::vector<float> penalized_;  // l' when the penalty is on
  std::vector<float> scaled_;     // z
  std::vector<float> weights_;    // w by id (buckets) or in candidate order (small top_k)
  std::vector<uint8_t> seen_;     // distinct-token marks for the penalty (all zero between calls)
  std::vector<int32_t> counts_;   // occurrences in output_tokens by id (all zero between calls)
  std::vector<Candidate> candidates_;
  std::vector<int32_t> bucket_count_;
  std::vector<double> bucket_mass_;
  std::vector<uint16_t> bucket_of_;    // by id
  std::vector<int32_t> bucket_start_;  // first index of each bucket in bucket_ids_
  std::vector<int32_t> bucket_ids_;    // ids grouped by bucket
  std::vector<int32_t> fill_;
  int sorted_bucket_ = -1;  // the bucket candidates_ holds, -1 when none
};

}  // namespace mamba::sampling
