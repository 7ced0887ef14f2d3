// The sampler: each option's effect, reproducibility, the empirical distribution, and agreement
// with a plain full-sort implementation of the algorithm in engine/sampling/sampler.h (which the fast
// paths, partial selection and thresholded sorting, must never change).
#include "engine/sampling/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "engine/simd/vector_math.h"
#include "gtest/gtest.h"

namespace mamba {
namespace {

std::vector<float> RandomLogits(int v, uint64_t seed, float scale) {
  std::vector<float> l(v);
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 7;
  for (int i = 0; i < v; ++i) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    l[i] = scale * (static_cast<float>(x >> 40) / static_cast<float>(1 << 24) - 0.5f);
  }
  return l;
}

int32_t SampleToken(sampling::Sampler& s, const std::vector<float>& logits,
                    const sampling::SamplingParams& p, uint64_t position = 0,
                    const std::vector<int32_t>& penalty = {},
                    const std::vector<int32_t>& output = {}) {
  sampling::SampleOutput out;
  const absl::Status st = s.Sample(logits, p, position, penalty, output, 0, &out);
  EXPECT_TRUE(st.ok()) << st;
  return out.token;
}

// The algorithm of engine/sampling/sampler.h written the plain way: sort everything, sum in candidate
// order. The ordering and weights do not depend on the seed, so they are built once.
class ReferenceSampler {
 public:
  ReferenceSampler(const std::vector<float>& logits, const sampling::SamplingParams& p,
                   const std::vector<int32_t>& penalty, const std::vector<int32_t>& output = {})
      : p_(p) {
    const int v = static_cast<int>(logits.size());
    std::vector<float> l = logits;
    if (p.repetition_penalty != 1.0f) {
      std::set<int32_t> distinct(penalty.begin(), penalty.end());
      for (int32_t t : distinct) {
        l[t] = l[t] > 0.0f ? l[t] / p.repetition_penalty : l[t] * p.repetition_penalty;
      }
    }
    std::map<int32_t, int64_t> counts;
    for (int32_t t : output) ++counts[t];
    for (const auto& [t, c] : counts) l[t] -= sampling::AdditivePenalty(p, c);
    if (p.temperature == 0.0f) {
      argmax_ = static_cast<int32_t>(std::max_element(l.begin(), l.end()) - l.begin());
      return;
    }
    std::vector<float> z(v);
    for (int i = 0; i < v; ++i) z[i] = l[i] / p.temperature;
    order_.resize(v);
    for (int i = 0; i < v; ++i) order_[i] = i;
    std::sort(order_.begin(), order_.end(),
              [&](int32_t a, int32_t b) { return z[a] > z[b] || (z[a] == z[b] && a < b); });
    const int k = p.top_k > 0 && p.top_k < v ? p.top_k : v;
    const float zmax = z[order_[0]];
    w_.resize(k);
    for (int j = 0; j < k; ++j) w_[j] = z[order_[j]] - zmax;
    simd::ExpArray(w_.data(), w_.data(), k);  // the exp the sampler uses
    for (int j = 0; j < k; ++j) total_ += w_[j];
    keep_ = k;
    if (p.top_p < 1.0f) {
      const double target = static_cast<double>(p.top_p) * total_;
      double cum = 0.0;
      for (int j = 0; j < k; ++j) {
        cum += w_[j];
        if (std::abs(cum - target) < 1e-9 * total_) nucleus_ambiguous_ = true;
        if (cum >= target) {
          keep_ = j + 1;
          break;
        }
      }
    }
    int above = 0;
    while (above < keep_ && w_[above] >= p.min_p) ++above;
    keep_ = std::max(above, 1);
    for (int j = 0; j < keep_; ++j) s_ += w_[j];
  }

  // The token for `seed` at `position`. Sets *ambiguous when u or the top_p target lies so close
  // to a running sum that a different (equally valid) summation order could move the boundary.
  int32_t Draw(uint64_t seed, uint64_t position, bool* ambiguous) const {
    *ambiguous = nucleus_ambiguous_;
    if (p_.temperature == 0.0f) return argmax_;
    const double u = sampling::SampleUniform(seed, position) * s_;
    double run = 0.0;
    int last_nonzero = 0;
    for (int j = 0; j < keep_; ++j) {
      if (w_[j] > 0.0f) last_nonzero = j;
      run += w_[j];
      if (std::abs(run - u) < 1e-9 * s_) *ambiguous = true;
      if (run > u) return order_[j];
    }
    *ambiguous = true;
    return order_[last_nonzero];
  }

 private:
  sampling::SamplingParams p_;
  int32_t argmax_ = -1;
  std::vector<int32_t> order_;
  std::vector<float> w_;
  double total_ = 0.0, s_ = 0.0;
  int keep_ = 0;
  bool nucleus_ambiguous_ = false;
};

TEST(SamplerTest, ValidatesEveryParameter) {
  struct Case {
    std::string name;
    sampling::SamplingParams p;
    int32_t top_logprobs;
    std::string message;
  };
  auto with = [](auto set) {
    sampling::SamplingParams p;
    set(p);
    return p;
  };
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<Case> cases = {
      {"negative temperature", with([](sampling::SamplingParams& p) { p.temperature = -0.5f; }), 0,
       "temperature"},
      {"nan temperature", with([&](sampling::SamplingParams& p) { p.temperature = nan; }), 0,
       "temperature"},
      {"inf temperature", with([&](sampling::SamplingParams& p) { p.temperature = inf; }), 0,
       "temperature"},
      {"negative top_k", with([](sampling::SamplingParams& p) { p.top_k = -1; }), 0, "top_k"},
      {"top_p 0", with([](sampling::SamplingParams& p) { p.top_p = 0.0f; }), 0, "top_p"},
      {"top_p above 1", with([](sampling::SamplingParams& p) { p.top_p = 1.5f; }), 0, "top_p"},
      {"nan top_p", with([&](sampling::SamplingParams& p) { p.top_p = nan; }), 0, "top_p"},
      {"negative min_p", with([](sampling::SamplingParams& p) { p.min_p = -0.1f; }), 0, "min_p"},
      {"min_p above 1", with([](sampling::SamplingParams& p) { p.min_p = 1.1f; }), 0, "min_p"},
      {"zero penalty", with([](sampling::SamplingParams& p) { p.repetition_penalty = 0.0f; }), 0,
       "repetition_penalty"},
      {"inf penalty", with([&](sampling::SamplingParams& p) { p.repetition_penalty = inf; }), 0,
       "repetition_penalty"},
      {"frequency above 2", with([](sampling::SamplingParams& p) { p.frequency_penalty = 2.5f; }),
       0, "frequency_penalty"},
      {"nan frequency", with([&](sampling::SamplingParams& p) { p.frequency_penalty = nan; }), 0,
       "frequency_penalty"},
      {"presence below -2", with([](sampling::SamplingParams& p) { p.presence_penalty = -2.1f; }),
       0, "presence_penalty"},
      {"-inf presence", with([&](sampling::SamplingParams& p) { p.presence_penalty = -inf; }), 0,
       "presence_penalty"},
      {"negative logprobs", sampling::SamplingParams(), -1, "top_logprobs"},
      {"21 logprobs", sampling::SamplingParams(), 21, "top_logprobs"},
  };
  sampling::Sampler s;
  const std::vector<float> logits = RandomLogits(10, 1, 4.0f);
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const absl::Status st = sampling::ValidateSamplingParams(c.p, c.top_logprobs);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(std::string(st.message()).find(c.message), std::string::npos) << st;
    sampling::SampleOutput out;
    out.token = 77;
    EXPECT_EQ(s.Sample(logits, c.p, 0, {}, {}, c.top_logprobs, &out).code(),
              absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(out.token, 77);  // left unchanged
  }
  EXPECT_TRUE(sampling::ValidateSamplingParams(sampling::SamplingParams(), 20).ok());
}

TEST(SamplerTest, RejectsBadLogitsAndPenaltyTokens) {
  sampling::Sampler s;
  sampling::SampleOutput out;
  const sampling::SamplingParams greedy;
  EXPECT_EQ(s.Sample({}, greedy, 0, {}, {}, 0, &out).code(), absl::StatusCode::kInvalidArgument);
  std::vector<float> l = {1.0f, std::numeric_limits<float>::quiet_NaN(), 0.0f};
  EXPECT_EQ(s.Sample(l, greedy, 0, {}, {}, 0, &out).code(), absl::StatusCode::kInternal);
  l[1] = std::numeric_limits<float>::infinity();
  EXPECT_EQ(s.Sample(l, greedy, 0, {}, {}, 0, &out).code(), absl::StatusCode::kInternal);
  l = {-std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity()};
  EXPECT_EQ(s.Sample(l, greedy, 0, {}, {}, 0, &out).code(), absl::StatusCode::kInternal);
  // -inf on some ids masks them; that is allowed.
  l = {-std::numeric_limits<float>::infinity(), 0.5f, 0.25f};
  ASSERT_TRUE(s.Sample(l, greedy, 0, {}, {}, 0, &out).ok());
  EXPECT_EQ(out.token, 1);
  sampling::SamplingParams rp;
  rp.repetition_penalty = 1.1f;
  const std::vector<int32_t> bad = {0, 3};
  const absl::Status st = s.Sample(l, rp, 0, bad, {}, 0, &out);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(st.message()).find("token id 3"), std::string::npos) << st;
}

TEST(SamplerTest, TemperatureZeroIsArgmaxWithLowestIdOnTies) {
  sampling::Sampler s;
  sampling::SamplingParams p;  // temperature 0
  for (uint64_t seed = 0; seed < 20; ++seed) {
    const std::vector<float> l = RandomLogits(50280, seed, 20.0f);
    const int32_t argmax = static_cast<int32_t>(std::max_element(l.begin(), l.end()) - l.begin());
    p.seed = seed;
    EXPECT_EQ(SampleToken(s, l, p, seed), argmax);
  }
  EXPECT_EQ(SampleToken(s, {1.0f, 3.0f, 2.0f, 3.0f}, p), 1);
}

// Temperatures below kMinTemperature decode greedily (a denormal temperature once overflowed the
// scaled logits into noise); from kMinTemperature up they sample.
TEST(SamplerTest, TinyTemperaturesAreGreedy) {
  sampling::Sampler s;
  const std::vector<float> l = RandomLogits(50280, 3, 20.0f);
  const int32_t argmax = static_cast<int32_t>(std::max_element(l.begin(), l.end()) - l.begin());
  for (float t : {1e-40f, 1e-30f, 1e-10f, 9.9e-6f}) {
    sampling::SamplingParams p;
    p.temperature = t;
    EXPECT_TRUE(p.greedy()) << t;
    for (uint64_t seed = 0; seed < 5; ++seed) {
      p.seed = seed;
      EXPECT_EQ(SampleToken(s, l, p, seed), argmax) << t;
    }
  }
  sampling::SamplingParams p;
  p.temperature = sampling::kMinTemperature;
  EXPECT_FALSE(p.greedy());
}

TEST(SamplerTest, LogprobsComeFromTheRawLogits) {
  sampling::Sampler s;
  const std::vector<float> l = {2.0f, 1.0f, 3.0f, 3.0f, -1.0f, 0.5f};
  double norm = 0.0;
  for (float v : l) norm += std::exp(static_cast<double>(v));
  sampling::SamplingParams p;
  p.repetition_penalty = 2.0f;  // changes the choice, not the reported logprobs
  sampling::SampleOutput out;
  const std::vector<int32_t> penalty = {2, 3};
  ASSERT_TRUE(s.Sample(l, p, 0, penalty, {}, 4, &out).ok());
  EXPECT_EQ(out.token, 0);  // 3/2 = 1.5 < 2
  EXPECT_NEAR(out.logprob, 2.0 - std::log(norm), 1e-6);
  ASSERT_EQ(out.top.size(), 4u);
  const int32_t expected_ids[] = {2, 3, 0, 1};  // ties: lower id first
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(out.top[i].token, expected_ids[i]);
    EXPECT_NEAR(out.top[i].logprob, l[expected_ids[i]] - std::log(norm), 1e-6);
  }
}

TEST(SamplerTest, RepetitionPenaltyAppliesOncePerDistinctToken) {
  sampling::Sampler s;
  sampling::SamplingParams p;
  p.repetition_penalty = 1.3f;
  // Once: 3.0 / 1.3 = 2.31 stays above 2.2. Twice would give 1.78.
  EXPECT_EQ(SampleToken(s, {3.0f, 2.2f}, p, 0, {0, 0, 0}), 0);
  // Positive logits are divided, negative ones multiplied: both move down.
  EXPECT_EQ(SampleToken(s, {2.0f, 1.9f}, p, 0, {0}), 1);
  EXPECT_EQ(SampleToken(s, {-1.0f, -1.2f}, p, 0, {0}), 1);
  // A penalty below 1 favours the tokens instead.
  p.repetition_penalty = 0.5f;
  EXPECT_EQ(SampleToken(s, {1.0f, 1.5f}, p, 0, {0}), 0);
  // The scratch marks are cleared between calls: a later call without penalty tokens is plain.
  p.repetition_penalty = 1.3f;
  EXPECT_EQ(SampleToken(s, {3.0f, 2.9f}, p, 0, {}), 0);
}

TEST(SamplerTest, RejectsOutputTokensOutsideTheVocabulary) {
  sampling::Sampler s;
  sampling::SampleOutput out;
  out.token = 77;
  sampling::SamplingParams p;
  p.frequency_penalty = 0.5f;
  const std::vector<float> l = {1.0f, 2.0f, 3.0f};
  for (const std::vector<int32_t>& bad : {std::vector<int32_t>{0, 3}, std::vector<int32_t>{-1}}) {
    const absl::Status st = s.Sample(l, p, 0, {}, bad, 0, &out);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(std::string(st.message()).find("output token id"), std::string::npos) << st;
    EXPECT_EQ(out.token, 77);
  }
}

// The additive penalties' exact effect, greedy: logit[j] -= frequency * c[j] + presence *
// (c[j] > 0), c counted over the generated tokens alone, after the repetition penalty. Each row
// sits on a tie or just past one, so an off-by-one count or a rounding would change the token.
TEST(SamplerTest, AdditivePenaltiesSubtractFrequencyTimesCountPlusPresence) {
  struct Case {
    std::string name;
    std::vector<float> logits;
    float frequency, presence, repetition;
    std::vector<int32_t> prompt, output;  // penalty tokens = prompt + output
    int32_t expected;
  };
  const std::vector<Case> cases = {
      {"off: the argmax", {3.0f, 2.0f}, 0.0f, 0.0f, 1.0f, {}, {0, 0, 0}, 0},
      {"frequency times count: a tie", {3.0f, 2.0f}, 0.5f, 0.0f, 1.0f, {}, {0, 0}, 0},
      {"one occurrence more passes the tie", {3.0f, 2.0f}, 0.5f, 0.0f, 1.0f, {}, {0, 0, 0}, 1},
      {"presence once, whatever the count", {3.0f, 2.0f}, 0.0f, 1.0f, 1.0f, {}, {0, 0, 0, 0}, 0},
      {"presence past the tie", {3.0f, 2.0f}, 0.0f, 1.25f, 1.0f, {}, {0}, 1},
      // Both, each token by its own count: 3 - (0.25 * 2 + 0.75) = 1.75 ties with id 2, and
      // 2 - (0.25 + 0.75) = 1 drops below it; a larger presence passes the tie.
      {"both: a tie", {3.0f, 2.0f, 1.75f}, 0.25f, 0.75f, 1.0f, {}, {0, 1, 0}, 0},
      {"both: past the tie", {3.0f, 2.0f, 1.75f}, 0.25f, 1.0f, 1.0f, {}, {0, 1, 0}, 2},
      {"the prompt is not counted", {3.0f, 2.5f}, 2.0f, 2.0f, 1.0f, {0, 0, 0, 0}, {}, 0},
      {"generated after the prompt", {3.0f, 2.5f}, 2.0f, 0.0f, 1.0f, {0, 0}, {1}, 0},
      {"negative penalties favour", {1.0f, 2.0f}, -0.5f, -0.5f, 1.0f, {}, {0}, 0},
      {"negative logits go down too", {-1.0f, -1.5f}, 0.5f, 0.0f, 1.0f, {}, {0, 0}, 1},
      // Repetition first: 4 / 2 - 1 = 1 < 1.2 (additive first would give (4 - 1) / 2 = 1.5).
      {"after the repetition penalty", {4.0f, 1.2f}, 0.0f, 1.0f, 2.0f, {}, {0}, 1},
  };
  sampling::Sampler s;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    sampling::SamplingParams p;  // greedy
    p.frequency_penalty = c.frequency;
    p.presence_penalty = c.presence;
    p.repetition_penalty = c.repetition;
    std::vector<int32_t> penalty = c.prompt;
    penalty.insert(penalty.end(), c.output.begin(), c.output.end());
    EXPECT_EQ(SampleToken(s, c.logits, p, 0, penalty, c.output), c.expected);
  }
}

// Sampling with the penalties draws what sampling the penalized logits without them draws, for
// every seed and option (the penalties change the logits and nothing else), and the reported
// log-probabilities stay those of the raw logits.
TEST(SamplerTest, AdditivePenaltiesActOnTheLogitsOnly) {
  sampling::Sampler s, plain;
  const int v = 5000;
  const std::vector<float> l = RandomLogits(v, 21, 6.0f);
  std::vector<int32_t> order(v);
  for (int i = 0; i < v; ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return l[a] > l[b]; });
  // The five best generated 1..5 times, and some others once.
  std::vector<int32_t> output;
  for (int k = 0; k < 5; ++k) output.insert(output.end(), k + 1, order[k]);
  for (int k = 0; k < 40; ++k) output.push_back(static_cast<int32_t>((k * 7919) % v));
  double norm = 0.0;
  for (float x : l) norm += std::exp(static_cast<double>(x));
  struct Case {
    float temperature, top_p, min_p, frequency, presence;
    int32_t top_k;
  };
  int changed = 0;
  for (const Case& c : {Case{1.0f, 1.0f, 0.0f, 0.8f, 0.4f, 0}, Case{0.7f, 0.9f, 0.0f, 2.0f, 0, 0},
                        Case{1.3f, 1.0f, 0.05f, 0, 2.0f, 50}, Case{0.5f, 1.0f, 0, -1.0f, -2.0f, 3},
                        Case{1.0f, 0.8f, 0.0f, 1.0f, 1.0f, 2000}}) {
    sampling::SamplingParams p;
    p.temperature = c.temperature;
    p.top_p = c.top_p;
    p.min_p = c.min_p;
    p.top_k = c.top_k;
    p.frequency_penalty = c.frequency;
    p.presence_penalty = c.presence;
    std::vector<float> penalized = l;
    std::map<int32_t, int64_t> counts;
    for (int32_t t : output) ++counts[t];
    for (const auto& [t, n] : counts) penalized[t] -= sampling::AdditivePenalty(p, n);
    sampling::SamplingParams without = p;
    without.frequency_penalty = without.presence_penalty = 0.0f;
    for (uint64_t seed = 0; seed < 100; ++seed) {
      p.seed = without.seed = seed;
      sampling::SampleOutput got, want, raw;
      ASSERT_TRUE(s.Sample(l, p, seed, {}, output, 3, &got).ok());
      ASSERT_TRUE(plain.Sample(penalized, without, seed, {}, {}, 0, &want).ok());
      ASSERT_TRUE(plain.Sample(l, without, seed, {}, {}, 3, &raw).ok());
      ASSERT_EQ(got.token, want.token) << "seed " << seed;
      EXPECT_NEAR(got.logprob, l[got.token] - std::log(norm), 1e-5);
      ASSERT_EQ(got.top.size(), raw.top.size());
      for (size_t k = 0; k < raw.top.size(); ++k) {
        EXPECT_EQ(got.top[k].token, raw.top[k].token);
        EXPECT_EQ(got.top[k].logprob, raw.top[k].logprob);
      }
      changed += got.token != raw.token;
    }
  }
  EXPECT_GT(changed, 100);  // the penalties did change the draws
}

// The sampler's scratch counts start from zero on every call.
TEST(SamplerTest, AdditivePenaltyCountsDoNotCarryOver) {
  sampling::Sampler s;
  sampling::SamplingParams p;
  p.frequency_penalty = 0.5f;
  EXPECT_EQ(SampleToken(s, {3.0f, 2.0f}, p, 0, {}, {0, 0, 0}), 1);  // 1.5 < 2
  EXPECT_EQ(SampleToken(s, {3.0f, 2.0f}, p, 0, {}, {0}), 0);        // 2.5 > 2
  EXPECT_EQ(SampleToken(s, {3.0f, 2.0f}, p, 0, {}, {}), 0);
}

TEST(SamplerTest, TopKNeverLeavesTheKBest) {
  sampling::Sampler s;
  const std::vector<float> l = RandomLogits(50280, 3, 6.0f);
  std::vector<int32_t> order(l.size());
  for (size_t i = 0; i < l.size(); ++i) order[i] = static_cast<int32_t>(i);
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return l[a] > l[b]; });
  for (int32_t k : {1, 5, 40, 1000}) {
    SCOPED_TRACE(k);
    const std::set<int32_t> best(order.begin(), order.begin() + k);
    sampling::SamplingParams p;
    p.temperature = 2.0f;  // flatten, so the cut matters
    p.top_k = k;
    std::set<int32_t> seen;
    for (uint64_t seed = 0; seed < 400; ++seed) {
      p.seed = seed;
      const int32_t t = SampleToken(s, l, p, 9);
      ASSERT_TRUE(best.count(t)) << "token " << t << " is not among the " << k << " best";
      seen.insert(t);
    }
    if (k == 5) {
      EXPECT_EQ(seen.size(), 5u);
    }
  }
}

TEST(SamplerTest, TopPKeepsTheNucleus) {
  sampling::Sampler s;
  // p = 0.5, 0.3, 0.15, 0.05: cumulative 0.5, 0.8, 0.95, 1.0.
  const std::vector<float> l = {std::log(0.15f), std::log(0.5f), std::log(0.05f), std::log(0.3f)};
  struct Case {
    float top_p;
    std::set<int32_t> nucleus;
  };
  for (const Case& c :
       {Case{0.4f, {1}}, Case{0.75f, {1, 3}}, Case{0.9f, {1, 3, 0}}, Case{0.99f, {1, 3, 0, 2}}}) {
    SCOPED_TRACE(c.top_p);
    sampling::SamplingParams p;
    p.temperature = 1.0f;
    p.top_p = c.top_p;
    std::set<int32_t> seen;
    for (uint64_t seed = 0; seed < 2000; ++seed) {
      p.seed = seed;
      seen.insert(SampleToken(s, l, p));
    }
    EXPECT_EQ(seen, c.nucleus);
  }
}

TEST(SamplerTest, MinPDropsTokensBelowAFractionOfTheBest) {
  sampling::Sampler s;
  // p = 0.4, 0.3, 0.2, 0.06, 0.04; min_p 0.2 keeps p >= 0.08.
  const std::vector<float> l = {std::log(0.06f), std::log(0.4f), std::log(0.2f), std::log(0.04f),
                                std::log(0.3f)};
  sampling::SamplingParams p;
  p.temperature = 1.0f;
  p.min_p = 0.2f;
  std::set<int32_t> seen;
  for (uint64_t seed = 0; seed < 2000; ++seed) {
    p.seed = seed;
    seen.insert(SampleToken(s, l, p));
  }
  EXPECT_EQ(seen, (std::set<int32_t>{1, 2, 4}));
}

TEST(SamplerTest, SameSeedSameTokensDifferentSeedsDiffer) {
  sampling::Sampler s;
  const std::vector<float> l = RandomLogits(50280, 4, 3.0f);
  sampling::SamplingParams p;
  p.temperature = 1.0f;
  p.top_p = 0.95f;
  std::set<int32_t> across_seeds, across_positions;
  for (uint64_t seed = 1; seed <= 50; ++seed) {
    p.seed = seed;
    const int32_t first = SampleToken(s, l, p, 3);
    EXPECT_EQ(SampleToken(s, l, p, 3), first);
    sampling::Sampler other;  // fresh scratch: same answer
    EXPECT_EQ(SampleToken(other, l, p, 3), first);
    across_seeds.insert(first);
    across_positions.insert(SampleToken(s, l, p, seed + 100));
  }
  EXPECT_GT(across_seeds.size(), 40u);
  EXPECT_GT(across_positions.size(), 40u);
}

// Pearson's chi-square over draws with seeds 0..n-1: deterministic, so it cannot flake.
double ChiSquare(sampling::Sampler& s, const std::vector<float>& l, sampling::SamplingParams p,
                 const std::vector<double>& probs, int n) {
  std::vector<int> counts(l.size(), 0);
  for (int i = 0; i < n; ++i) {
    p.seed = static_cast<uint64_t>(i);
    ++counts[SampleToken(s, l, p, 0)];
  }
  double chi2 = 0.0;
  for (size_t i = 0; i < l.size(); ++i) {
    const double expected = probs[i] * n;
    if (expected == 0.0) {
      EXPECT_EQ(counts[i], 0) << "token " << i << " has probability 0";
      continue;
    }
    chi2 += (counts[i] - expected) * (counts[i] - expected) / expected;
  }
  return chi2;
}

TEST(SamplerTest, EmpiricalDistributionMatchesTheProbabilities) {
  sampling::Sampler s;
  const std::vector<double> base = {0.3, 0.2, 0.15, 0.1, 0.08, 0.06, 0.05, 0.03, 0.02, 0.01};
  std::vector<float> l(base.size());
  for (size_t i = 0; i < base.size(); ++i) l[i] = static_cast<float>(std::log(base[i]));
  // Chi-square with 9 degrees of freedom: 27.9 is its 99.9th percentile.
  sampling::SamplingParams p;
  p.temperature = 1.0f;
  EXPECT_LT(ChiSquare(s, l, p, base, 20000), 27.9);

  // Temperature 0.5 squares the probabilities (then renormalizes).
  std::vector<double> sq(base.size());
  double z = 0.0;
  for (size_t i = 0; i < base.size(); ++i) z += sq[i] = base[i] * base[i];
  for (double& v : sq) v /= z;
  p.temperature = 0.5f;
  EXPECT_LT(ChiSquare(s, l, p, sq, 20000), 27.9);

  // top_k 3 renormalizes over the three best (2 degrees of freedom: 13.8).
  std::vector<double> top3(base.size(), 0.0);
  for (int i = 0; i < 3; ++i) top3[i] = base[i] / 0.65;
  p.temperature = 1.0f;
  p.top_k = 3;
  EXPECT_LT(ChiSquare(s, l, p, top3, 20000), 13.8);
}

TEST(SamplerTest, AgreesWithAFullSortImplementation) {
  // Random settings over vocabularies where the thresholded sort must widen its cut (one strong
  // token over a flat tail), as well as peaked and flat ones.
  sampling::Sampler s;
  int checked = 0;
  for (int trial = 0; trial < 60; ++trial) {
    const int v = trial % 3 == 0 ? 50280 : (trial % 3 == 1 ? 5000 : 37);
    std::vector<float> l = RandomLogits(v, 100 + trial, trial % 2 == 0 ? 4.0f : 30.0f);
    if (trial % 5 == 0) {
      std::fill(l.begin(), l.end(), 0.0f);
      l[trial % v] = 10.0f;
    }
    sampling::SamplingParams p;
    p.temperature = 0.3f + 0.25f * static_cast<float>(trial % 7);
    p.top_k = trial % 4 == 0 ? 0 : (trial % 4 == 1 ? 20 : (trial % 4 == 2 ? 700 : 0));
    p.top_p = trial % 3 == 0 ? 1.0f : 0.5f + 0.07f * static_cast<float>(trial % 7);
    p.min_p = trial % 6 == 0 ? 0.05f : 0.0f;
    p.repetition_penalty = trial % 2 == 0 ? 1.0f : 1.2f;
    p.frequency_penalty = trial % 4 == 3 ? 0.0f : 0.3f * static_cast<float>(trial % 4);
    p.presence_penalty = trial % 5 == 2 ? -1.0f : (trial % 5 == 4 ? 1.5f : 0.0f);
    const std::vector<int32_t> penalty = {0, 1, 2, 2, static_cast<int32_t>(v - 1)};
    const std::vector<int32_t> output = {
        1, 2, 2, static_cast<int32_t>(v - 1), 2, static_cast<int32_t>(v / 2)};
    const ReferenceSampler reference(l, p, penalty, output);
    for (uint64_t seed = 0; seed < 25; ++seed) {
      p.seed = seed * 31 + trial;
      bool ambiguous = false;
      const int32_t expected = reference.Draw(p.seed, seed, &ambiguous);
      if (ambiguous) continue;
      ASSERT_EQ(SampleToken(s, l, p, seed, penalty, output), expected)
          << "trial " << trial << " seed " << p.seed;
      ++checked;
    }
  }
  // Ambiguous draws need u within 1e-9 of a boundary: essentially never.
  EXPECT_GE(checked, 1495);
}

}  // namespace
}  // namespace mamba
