// Cost: the passes over the vocabulary (max, exp-sum, scaling, weights) are vector code from
// engine/simd/vector_math.h. Ordering the candidates is never a full sort of the vocabulary:
// - top_k <= kHeapTopK: a bounded heap picks and orders the k best in about one pass;
// - otherwise the weights w in [0, 1] go into buckets by their leading bits (8 exponent bits and
//   4 mantissa bits, so a bucket spans 1/16 of an octave and the bucket order is the weight
//   order). Whole buckets are skipped by their summed weight; only the bucket where the nucleus
//   ends, min_p cuts, or the draw lands is sorted. On a flat 50k distribution a bucket holds a
//   few hundred candidates.
#include "engine/sampling/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "engine/simd/vector_math.h"

namespace mamba::sampling {
namespace {

constexpr int32_t kHeapTopK = 1024;
constexpr int kBucketShift = 19;  // keep 32 - 19 = 13 bits: sign (0), 8 exponent, 4 mantissa
constexpr int kNumBuckets = (0x3f800000 >> kBucketShift) + 1;  // weights are <= 1.0

// Candidate order as a function object, so that the std algorithms inline it.
struct BetterThan {
  template <class C>
  bool operator()(const C& a, const C& b) const {
    return a.z > b.z || (a.z == b.z && a.id < b.id);
  }
};

int BucketOf(float w) {
  uint32_t bits;
  std::memcpy(&bits, &w, sizeof bits);
  return static_cast<int>(bits >> kBucketShift);
}

}  // namespace

void Sampler::SelectTopK(absl::Span<const float> values, int32_t k) {
  const int32_t v = static_cast<int32_t>(values.size());
  candidates_.clear();
  if (k >= v || k > kHeapTopK) {
    candidates_.resize(v);
    for (int32_t i = 0; i < v; ++i) candidates_[i] = {values[i], i};
    if (k < v) {
      std::nth_element(candidates_.begin(), candidates_.begin() + (k - 1), candidates_.end(),
                       BetterThan());
      candidates_.resize(k);
    }
    std::sort(candidates_.begin(), candidates_.end(), BetterThan());
    return;
  }
  // A heap of the k best so far with the worst of them on top. Later ids lose ties, so only a
  // value strictly above the worst kept one can enter: a vector scan skips the rest.
  candidates_.reserve(k);
  for (int32_t i = 0; i < k; ++i) candidates_.push_back({values[i], i});
  std::make_heap(candidates_.begin(), candidates_.end(), BetterThan());
  for (int64_t i = k; i < v; ++i) {
    i += simd::FindFirstGreater(values.data() + i, v - i, candidates_.front().z);
    if (i >= v) break;
    std::pop_heap(candidates_.begin(), candidates_.end(), BetterThan());
    candidates_.back() = {values[i], static_cast<int32_t>(i)};
    std::push_heap(candidates_.begin(), candidates_.end(), BetterThan());
  }
  std::sort_heap(candidates_.begin(), candidates_.end(), BetterThan());
}

int32_t Sampler::SampleSorted(const SamplingParams& params, double uniform) {
  // candidates_ is the whole top-k set in candidate order, weights_ its weights.
  const int32_t n = static_cast<int32_t>(candidates_.size());
  double total = 0.0;
  for (int32_t j = 0; j < n; ++j) total += weights_[j];
  int32_t keep = n;
  double s = total;
  const float cut = params.min_p;
  if (params.top_p < 1.0f || cut > 0.0f) {
    const double target = static_cast<double>(params.top_p) * total;
    double cum = 0.0;
    int32_t j = 0;
    for (; j < n; ++j) {
      if (weights_[j] < cut) break;
      cum += weights_[j];
      if (params.top_p < 1.0f && cum >= target) {
        ++j;
        break;
      }
    }
    keep = std::max(j, 1);
    s = j == 0 ? weights_[0] : cum;
  }
  const double u = uniform * s;
  double run = 0.0;
  int32_t last_nonzero = 0;
  for (int32_t j = 0; j < keep; ++j) {
    if (weights_[j] > 0.0f) last_nonzero = j;
    run += weights_[j];
    if (run > u) return candidates_[j].id;
  }
  return candidates_[last_nonzero].id;
}

void Sampler::SortBucket(absl::Span<const float> z, int bucket) {
  if (sorted_bucket_ == bucket) return;
  candidates_.clear();
  for (int32_t j = bucket_start_[bucket]; j < bucket_start_[bucket + 1]; ++j) {
    const int32_t id = bucket_ids_[j];
    candidates_.push_back({z[id], id});
  }
  std::sort(candidates_.begin(), candidates_.end(), BetterThan());
  sorted_bucket_ = bucket;
}

int32_t Sampler::SampleBuckets(absl::Span<const float> z, const Candidate* last_member,
                               const SamplingParams& params, double uniform) {
  // weights_ holds w for every id; members are every id, or those not after *last_member in
  // candidate order (the top-k set when top_k is large). A counting sort by bucket lets a bucket
  // be sorted without another pass over the vocabulary.
  const int32_t v = static_cast<int32_t>(z.size());
  bucket_count_.assign(kNumBuckets + 1, 0);  // the extra bucket holds non-members
  bucket_mass_.assign(kNumBuckets, 0.0);
  bucket_of_.resize(v);
  for (int32_t i = 0; i < v; ++i) {
    int b = BucketOf(weights_[i]);
    if (last_member != nullptr && BetterThan()(*last_member, Candidate{z[i], i})) {
      b = kNumBuckets;
    } else {
      bucket_mass_[b] += weights_[i];
    }
    bucket_of_[i] = static_cast<uint16_t>(b);
    ++bucket_count_[b];
  }
  bucket_start_.resize(kNumBuckets + 2);
  bucket_start_[0] = 0;
  for (int b = 0; b <= kNumBuckets; ++b) bucket_start_[b + 1] = bucket_start_[b] + bucket_count_[b];
  bucket_ids_.resize(v);
  fill_.assign(bucket_start_.begin(), bucket_start_.end() - 1);
  for (int32_t i = 0; i < v; ++i) bucket_ids_[fill_[bucket_of_[i]]++] = i;
  sorted_bucket_ = -1;
  double total = 0.0;
  for (int b = kNumBuckets - 1; b >= 0; --b) total += bucket_mass_[b];

  // The kept prefix: every bucket above end_bucket, plus the first end_count candidates of
  // end_bucket (end_bucket -1: everything). s is its weight.
  const float cut = params.min_p;
  const bool use_top_p = params.top_p < 1.0f;
  int end_bucket = -1;
  size_t end_count = 0;
  double s = total;
  if (use_top_p || cut > 0.0f) {
    const int cut_bucket = cut > 0.0f ? BucketOf(cut) : -1;
    const double target = static_cast<double>(params.top_p) * total;
    double cum = 0.0;
    for (int b = kNumBuckets - 1; b >= 0 && end_bucket < 0; --b) {
      if (bucket_count_[b] == 0) continue;
      if (b < cut_bucket) {  // all below min_p
        end_bucket = b;
        end_count = 0;
        break;
      }
      if (!(use_top_p && cum + bucket_mass_[b] >= target) && b != cut_bucket) {
        cum += bucket_mass_[b];
        continue;
      }
      SortBucket(z, b);
      size_t j = 0;
      for (; j < candidates_.size(); ++j) {
        const float w = weights_[candidates_[j].id];
        if (w < cut) {
          end_bucket = b;
          break;
        }
        cum += w;
        if (use_top_p && cum >= target) {
          end_bucket = b;
          ++j;
          break;
        }
      }
      end_count = j;
      // Reaching the bucket's end means it is kept whole (the nucleus needs more, or rounding).
    }
    s = cum;
  }

  // The draw: the first candidate at which the running weight exceeds u.
  const double u = uniform * s;
  double run = 0.0;
  int32_t fallback = -1;     // last nonzero-weight candidate passed one by one
  int fallback_bucket = -1;  // or a later whole bucket passed by its mass
  for (int b = kNumBuckets - 1; b >= 0; --b) {
    if (bucket_count_[b] == 0) continue;
    if (end_bucket >= 0 && b < end_bucket) break;
    const bool is_end = b == end_bucket;
    if (!is_end && run + bucket_mass_[b] <= u) {
      run += bucket_mass_[b];
      if (bucket_mass_[b] > 0.0) {
        fallback_bucket = b;
        fallback = -1;
      }
      continue;
    }
    SortBucket(z, b);
    const size_t take = is_end ? end_count : candidates_.size();
    for (size_t j = 0; j < take; ++j) {
      const float w = weights_[candidates_[j].id];
      if (w > 0.0f) {
        fallback = candidates_[j].id;
        fallback_bucket = -1;
      }
      run += w;
      if (run > u) return candidates_[j].id;
    }
  }
  // Rounding left u unreached: the last kept candidate with nonzero weight.
  if (fallback >= 0) return fallback;
  if (fallback_bucket >= 0) {
    SortBucket(z, fallback_bucket);
    for (size_t j = candidates_.size(); j-- > 0;) {
      if (weights_[candidates_[j].id] > 0.0f) return candidates_[j].id;
    }
  }
  // Unreachable with a finite maximum (its weight is 1); the best candidate regardless.
  return static_cast<int32_t>(simd::FindFirst(z.data(), v, *std::max_element(z.begin(), z.end())));
}

int32_t Sampler::SampleFromScaled(absl::Span<const float> z, const SamplingParams& params,
                                  uint64_t position) {
  const int32_t v = static_cast<int32_t>(z.size());
  const double uniform = SampleUniform(params.seed, position);
  // A tiny temperature can push the best logits to +inf: the limit is a point mass on them.
  float zmax = simd::MaxOrNaN(z.data(), v);
  const bool infinite = std::isnan(zmax);
  if (infinite) zmax = std::numeric_limits<float>::infinity();
  auto weight = [&](float zi) {
    return infinite ? (zi == zmax ? 1.0f : 0.0f) : std::exp(zi - zmax);
  };

  if (params.top_k > 0 && params.top_k < v && params.top_k <= kHeapTopK) {
    SelectTopK(z, params.top_k);
    weights_.resize(candidates_.size());
    for (size_t j = 0; j < candidates_.size(); ++j) weights_[j] = weight(candidates_[j].z);
    return SampleSorted(params, uniform);
  }
  weights_.resize(v);
  if (infinite) {
    for (int32_t i = 0; i < v; ++i) weights_[i] = weight(z[i]);
  } else {
    simd::SumExpShifted(z.data(), v, zmax, weights_.data());
  }
  Candidate last_member{0.0f, -1};
  if (params.top_k > 0 && params.top_k < v) {
    SelectTopK(z, params.top_k);
    last_member = candidates_.back();
  }
  return SampleBuckets(z, last_member.id >= 0 ? &last_member : nullptr, params, uniform);
}

absl::Status Sampler::Sample(absl::Span<const float> logits, const SamplingParams& params,
                             uint64_t position, absl::Span<const int32_t> penalty_tokens,
                             absl::Span<const int32_t> output_tokens, int32_t top_logprobs,
                             SampleOutput* out) {
  const int64_t v64 = static_cast<int64_t>(logits.size());
  if (v64 == 0) return absl::InvalidArgumentError("cannot sample from an empty vocabulary");
  if (v64 > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError("vocabulary too large to sample from");
  }
  const int32_t v = static_cast<int32_t>(v64);
  absl::Status valid = ValidateSamplingParams(params, top_logprobs);
  if (!valid.ok()) return valid;
  for (int32_t t : penalty_tokens) {
    if (t < 0 || t >= v) {
      return absl::InvalidArgumentError(
          absl::StrCat("repetition penalty token id ", t, " is out of range; allowed: 0..", v - 1));
    }
  }
  for (int32_t t : output_tokens) {
    if (t < 0 || t >= v) {
      return absl::InvalidArgumentError(
          absl::StrCat("output token id ", t, " is out of range; allowed: 0..", v - 1));
    }
  }

  // Step 1: the raw distribution.
  const float m = simd::MaxOrNaN(logits.data(), v);
  if (std::isnan(m)) {
    int32_t bad = 0;
    while (bad < v && !std::isnan(logits[bad]) &&
           logits[bad] != std::numeric_limits<float>::infinity()) {
      ++bad;
    }
    return absl::InternalError(absl::StrCat("logits are not finite (token ", bad, " has ",
                                            logits[bad], "); the model diverged"));
  }
  if (m == -std::numeric_limits<float>::infinity()) {
    return absl::InternalError("every logit is -inf; nothing can be sampled");
  }
  const double log_sum = std::log(simd::SumExpShifted(logits.data(), v, m, nullptr));
  auto logprob = [&](int32_t id) {
    return static_cast<float>(static_cast<double>(logits[id] - m) - log_sum);
  };

  SampleOutput result;
  if (top_logprobs > 0) {
    SelectTopK(logits, top_logprobs);
    for (const Candidate& c : candidates_) result.top.push_back({c.id, logprob(c.id)});
  }

  // Step 2: repetition penalty on distinct tokens, then the additive penalties.
  absl::Span<const float> penalized = logits;
  const float rp = params.repetition_penalty;
  const bool repetition = rp != 1.0f && !penalty_tokens.empty();
  const bool additive = params.additive_penalties() && !output_tokens.empty();
  if (repetition || additive) {
    penalized_.assign(logits.begin(), logits.end());
    penalized = penalized_;
  }
  if (repetition) {
    seen_.resize(v, 0);
    for (int32_t t : penalty_tokens) {
      if (seen_[t]) continue;
      seen_[t] = 1;
      penalized_[t] = penalized_[t] > 0.0f ? penalized_[t] / rp : penalized_[t] * rp;
    }
    for (int32_t t : penalty_tokens) seen_[t] = 0;
  }
  if (additive) {
    counts_.resize(v, 0);
    for (int32_t t : output_tokens) ++counts_[t];
    for (int32_t t : output_tokens) {
      if (counts_[t] == 0) continue;  // applied at its first occurrence
      penalized_[t] -= AdditivePenalty(params, counts_[t]);
      counts_[t] = 0;
    }
  }

  if (params.greedy()) {
    // Step 3: argmax, lowest id on ties.
    float best = penalized.data() == logits.data() ? m : simd::MaxOrNaN(penalized.data(), v);
    // NaN here means +inf (a penalty below 1 can overflow a huge logit); nothing else is NaN.
    if (std::isnan(best)) best = std::numeric_limits<float>::infinity();
    result.token = static_cast<int32_t>(simd::FindFirst(penalized.data(), v, best));
  } else {
    // Step 4.
    scaled_.resize(v);
    simd::DivideArray(penalized.data(), params.temperature, scaled_.data(), v);
    result.token = SampleFromScaled(scaled_, params, position);
  }
  result.logprob = logprob(result.token);
  *out = std::move(result);
  return absl::OkStatus();
}

}  // namespace mamba::sampling
