// The one set of sampling rules: every range, with the field named as a request spells it, the
// value and what is allowed (these rows were the server's until the rules moved to the engine's
// boundary; the integration tests check that gRPC answers them with INVALID_ARGUMENT).
#include "engine/sampling/sampling_params.h"

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mamba::sampling {
namespace {

using ::testing::HasSubstr;

struct Row {
  const char* name;
  std::function<void(SamplingParams*)> mutate;
  int32_t top_logprobs;
  std::vector<const char*> message_parts;
};

TEST(SamplingParamsTest, EveryRuleRejectsWithAClearMessage) {
  const std::vector<Row> rows = {
      {"negative temperature",
       [](auto* p) { p->temperature = -0.5f; },
       0,
       {"sampling.temperature = -0.5", ">= 0"}},
      {"nan temperature", [](auto* p) { p->temperature = NAN; }, 0, {"temperature", "finite"}},
      {"infinite temperature",
       [](auto* p) { p->temperature = INFINITY; },
       0,
       {"temperature", "finite"}},
      {"top_p 0", [](auto* p) { p->top_p = 0.0f; }, 0, {"sampling.top_p = 0", "(0, 1]"}},
      {"top_p above 1", [](auto* p) { p->top_p = 1.5f; }, 0, {"top_p = 1.5", "(0, 1]"}},
      {"nan top_p", [](auto* p) { p->top_p = NAN; }, 0, {"top_p", "(0, 1]"}},
      {"negative top_k", [](auto* p) { p->top_k = -1; }, 0, {"sampling.top_k = -1", ">= 0"}},
      {"min_p above 1", [](auto* p) { p->min_p = 1.5f; }, 0, {"min_p = 1.5", "[0, 1]"}},
      {"negative min_p", [](auto* p) { p->min_p = -0.1f; }, 0, {"min_p = -0.1", "[0, 1]"}},
      {"repetition_penalty 0",
       [](auto* p) { p->repetition_penalty = 0.0f; },
       0,
       {"sampling.repetition_penalty = 0", "> 0"}},
      {"infinite repetition_penalty",
       [](auto* p) { p->repetition_penalty = INFINITY; },
       0,
       {"repetition_penalty", "finite"}},
      {"frequency_penalty above 2",
       [](auto* p) { p->frequency_penalty = 2.5f; },
       0,
       {"sampling.frequency_penalty = 2.5 is out of range; allowed: -2 to 2"}},
      {"frequency_penalty below -2",
       [](auto* p) { p->frequency_penalty = -3.0f; },
       0,
       {"sampling.frequency_penalty = -3", "-2 to 2"}},
      {"nan frequency_penalty",
       [](auto* p) { p->frequency_penalty = NAN; },
       0,
       {"frequency_penalty", "-2 to 2"}},
      {"infinite frequency_penalty",
       [](auto* p) { p->frequency_penalty = INFINITY; },
       0,
       {"frequency_penalty", "-2 to 2"}},
      {"presence_penalty above 2",
       [](auto* p) { p->presence_penalty = 2.01f; },
       0,
       {"sampling.presence_penalty = 2.01 is out of range; allowed: -2 to 2"}},
      {"presence_penalty below -2",
       [](auto* p) { p->presence_penalty = -2.5f; },
       0,
       {"sampling.presence_penalty = -2.5", "-2 to 2"}},
      {"nan presence_penalty",
       [](auto* p) { p->presence_penalty = NAN; },
       0,
       {"presence_penalty", "-2 to 2"}},
      {"-infinite presence_penalty",
       [](auto* p) { p->presence_penalty = -INFINITY; },
       0,
       {"presence_penalty", "-2 to 2"}},
      {"logprobs 21", [](auto*) {}, 21, {"logprobs = 21", "[0, 20]"}},
      {"negative logprobs", [](auto*) {}, -1, {"logprobs = -1", "[0, 20]"}},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.name);
    SamplingParams p;
    row.mutate(&p);
    const absl::Status st = ValidateSamplingParams(p, row.top_logprobs);
    ASSERT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
    for (const char* part : row.message_parts) {
      EXPECT_THAT(std::string(st.message()), HasSubstr(part));
    }
  }
}

TEST(SamplingParamsTest, BoundaryValuesPass) {
  const std::vector<std::function<void(SamplingParams*)>> accepted = {
      [](auto*) {},
      [](auto* p) { p->temperature = 0.0f; },
      [](auto* p) { p->temperature = 1e30f; },
      [](auto* p) { p->top_p = 1.0f; },
      [](auto* p) { p->top_p = 1e-6f; },
      [](auto* p) { p->min_p = 0.0f; },
      [](auto* p) { p->min_p = 1.0f; },
      [](auto* p) { p->top_k = 0; },
      [](auto* p) { p->top_k = 1 << 30; },
      [](auto* p) { p->repetition_penalty = 1e-6f; },
      [](auto* p) { p->frequency_penalty = 2.0f; },
      [](auto* p) { p->frequency_penalty = -2.0f; },
      [](auto* p) { p->presence_penalty = 2.0f; },
      [](auto* p) { p->presence_penalty = -2.0f; },
      [](auto* p) {
        p->frequency_penalty = -0.0f;
        p->presence_penalty = 0.0f;
      },
  };
  for (size_t i = 0; i < accepted.size(); ++i) {
    SamplingParams p;
    accepted[i](&p);
    EXPECT_TRUE(ValidateSamplingParams(p, 0).ok()) << i;
  }
  EXPECT_TRUE(ValidateSamplingParams(SamplingParams(), kMaxTopLogprobs).ok());
}

TEST(SamplingParamsTest, AdditivePenaltyIsFrequencyTimesCountPlusPresence) {
  SamplingParams p;
  EXPECT_FALSE(p.additive_penalties());  // both 0 by default: off
  p.frequency_penalty = 0.5f;
  p.presence_penalty = 0.25f;
  EXPECT_TRUE(p.additive_penalties());
  EXPECT_EQ(AdditivePenalty(p, 1), 0.75f);
  EXPECT_EQ(AdditivePenalty(p, 4), 2.25f);
  p.frequency_penalty = -2.0f;
  p.presence_penalty = 2.0f;
  EXPECT_EQ(AdditivePenalty(p, 3), -4.0f);
  // Rounded once: 0.1f * 3 + 0.2f in double, then to float.
  p.frequency_penalty = 0.1f;
  p.presence_penalty = 0.2f;
  EXPECT_EQ(AdditivePenalty(p, 3),
            static_cast<float>(static_cast<double>(0.1f) * 3.0 + static_cast<double>(0.2f)));
  p.frequency_penalty = 0.0f;
  p.presence_penalty = -0.0f;
  EXPECT_FALSE(p.additive_penalties());
}

}  // namespace
}  // namespace mamba::sampling
