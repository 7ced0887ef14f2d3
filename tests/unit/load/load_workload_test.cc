// What the load tester sends: length specs, the arrival process's rate and variability on
// seeded samples, prompt files, the requests a Workload makes, and sweep specs.
#include "client/load_workload.h"

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mamba::client::load {
namespace {

namespace v1 = ::mambaserve::v1;
using ::testing::HasSubstr;

TEST(LengthDistributionTest, ParsesTheThreeKindsAndRejectsTheRest) {
  struct Case {
    const char* spec;
    bool ok;
    const char* canonical;
  };
  const Case cases[] = {
      {"128", true, "128"},
      {" 7 ", true, "7"},
      {"uniform:16:64", true, "uniform:16:64"},
      {"uniform:5:5", true, "uniform:5:5"},
      {"normal:100:20", true, "normal:100:20"},
      {"normal:3.5:0", true, "normal:3.5:0"},
      {"0", false, ""},
      {"-3", false, ""},
      {"abc", false, ""},
      {"uniform:64:16", false, ""},
      {"uniform:0:4", false, ""},
      {"uniform:1.5:4", false, ""},
      {"normal:0:1", false, ""},
      {"normal:10:-1", false, ""},
      {"gamma:1:2", false, ""},
      {"uniform:1", false, ""},
      {"uniform:a:b", false, ""},
      {"", false, ""},
  };
  for (const Case& c : cases) {
    absl::StatusOr<LengthDistribution> d = LengthDistribution::Parse(c.spec, "prompt_tokens");
    EXPECT_EQ(d.ok(), c.ok) << c.spec;
    if (d.ok()) {
      EXPECT_EQ(d->ToString(), c.canonical);
    } else {
      EXPECT_THAT(std::string(d.status().message()), HasSubstr("--prompt_tokens="));
      EXPECT_THAT(std::string(d.status().message()), HasSubstr("uniform:A:B"));
    }
  }
}

TEST(LengthDistributionTest, SamplesStayInRangeWithTheRightMean) {
  std::mt19937_64 rng(1);
  const LengthDistribution fixed = *LengthDistribution::Parse("9", "x");
  const LengthDistribution uniform = *LengthDistribution::Parse("uniform:3:6", "x");
  const LengthDistribution normal = *LengthDistribution::Parse("normal:50:10", "x");
  const LengthDistribution clamped = *LengthDistribution::Parse("normal:1:100", "x");
  double uniform_sum = 0, normal_sum = 0;
  std::vector<int> seen(7, 0);
  constexpr int kSamples = 20000;
  for (int i = 0; i < kSamples; ++i) {
    EXPECT_EQ(fixed.Sample(rng), 9);
    const int u = uniform.Sample(rng);
    ASSERT_GE(u, 3);
    ASSERT_LE(u, 6);
    ++seen[static_cast<size_t>(u)];
    uniform_sum += u;
    normal_sum += normal.Sample(rng);
    ASSERT_GE(clamped.Sample(rng), 1);
  }
  for (int v = 3; v <= 6; ++v) EXPECT_GT(seen[static_cast<size_t>(v)], kSamples / 5) << v;
  EXPECT_NEAR(uniform_sum / kSamples, uniform.Mean(), 0.05);
  EXPECT_NEAR(normal_sum / kSamples, normal.Mean(), 0.3);
}

// Mean rate and coefficient of variation of `n` gaps.
void GapStats(ArrivalProcess& arrivals, uint64_t seed, int n, double* rate, double* cv) {
  std::mt19937_64 rng(seed);
  double sum = 0, sum_sq = 0;
  for (int i = 0; i < n; ++i) {
    const double g = arrivals.NextGapSeconds(rng);
    ASSERT_GT(g, 0);
    sum += g;
    sum_sq += g * g;
  }
  const double mean = sum / n;
  *rate = 1 / mean;
  *cv = std::sqrt(sum_sq / n - mean * mean) / mean;
}

TEST(ArrivalProcessTest, MeanRateAndVariabilityOnSeededSamples) {
  struct Case {
    double rate;
    double burstiness;
    double want_cv;  // 1 / sqrt(burstiness)
  };
  for (const Case& c : {Case{10, 1, 1.0}, Case{250, 0.25, 2.0}, Case{2, 4, 0.5}}) {
    ArrivalProcess arrivals = *ArrivalProcess::Create(c.rate, c.burstiness);
    double rate = 0, cv = 0;
    GapStats(arrivals, 42, 200000, &rate, &cv);
    EXPECT_NEAR(rate / c.rate, 1.0, 0.02) << c.rate << " " << c.burstiness;
    EXPECT_NEAR(cv, c.want_cv, 0.05 * c.want_cv) << c.rate << " " << c.burstiness;
  }
}

TEST(ArrivalProcessTest, RejectsBadParameters) {
  for (double rate : {0.0, -1.0, static_cast<double>(INFINITY), static_cast<double>(NAN)}) {
    absl::StatusOr<ArrivalProcess> a = ArrivalProcess::Create(rate, 1);
    ASSERT_FALSE(a.ok()) << rate;
    EXPECT_THAT(std::string(a.status().message()), HasSubstr("--rate"));
  }
  for (double b : {0.0, -2.0, static_cast<double>(NAN)}) {
    absl::StatusOr<ArrivalProcess> a = ArrivalProcess::Create(1, b);
    ASSERT_FALSE(a.ok()) << b;
    EXPECT_THAT(std::string(a.status().message()), HasSubstr("--burstiness"));
  }
}

TEST(PromptsFileTest, ParsesLinesAndNamesBadOnes) {
  absl::StatusOr<std::vector<PromptFileEntry>> ok = ParsePromptsJsonl(
      "{\"prompt\": \"hello\"}\n\n{\"prompt\": \"two\", \"max_tokens\": 7}\n", "p.jsonl");
  ASSERT_TRUE(ok.ok()) << ok.status();
  ASSERT_EQ(ok->size(), 2u);
  EXPECT_EQ((*ok)[0].prompt, "hello");
  EXPECT_EQ((*ok)[0].max_tokens, -1);
  EXPECT_EQ((*ok)[1].max_tokens, 7);

  struct Case {
    const char* text;
    const char* want;
  };
  for (const Case& c : {
           Case{"{\"prompt\": \"a\"}\nnot json\n", "p.jsonl:2: not a JSON object"},
           Case{"[1, 2]", "p.jsonl:1: not a JSON object"},
           Case{"{\"text\": \"a\"}", "\"prompt\" must be a non-empty string"},
           Case{"{\"prompt\": \"\"}", "\"prompt\" must be a non-empty string"},
           Case{"{\"prompt\": 3}", "\"prompt\" must be a non-empty string"},
           Case{"{\"prompt\": \"a\", \"max_tokens\": 0}", "\"max_tokens\" must be an integer >= 1"},
           Case{"{\"prompt\": \"a\", \"max_tokens\": \"5\"}", "\"max_tokens\" must be an integer"},
           Case{"{\"prompt\": \"a\", \"extra\": 1}", "unknown key \"extra\""},
           Case{"\n\n", "no prompts"},
       }) {
    absl::StatusOr<std::vector<PromptFileEntry>> bad = ParsePromptsJsonl(c.text, "p.jsonl");
    ASSERT_FALSE(bad.ok()) << c.text;
    EXPECT_THAT(std::string(bad.status().message()), HasSubstr(c.want)) << c.text;
  }
  EXPECT_EQ(ReadPromptsFile("/nonexistent/prompts.jsonl").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(WorkloadTest, SyntheticIdsAreBelowTheVocabularyAndReproducible) {
  WorkloadOptions o;
  o.vocab_size = 50;
  o.prompt_tokens = *LengthDistribution::Parse("uniform:3:9", "x");
  o.output_tokens = LengthDistribution::Fixed(11);
  o.base.mutable_stopping()->set_ignore_eos(true);
  o.base.mutable_sampling()->set_temperature(0.5f);
  o.seed = 7;
  auto a = *Workload::Create(o);
  auto b = *Workload::Create(o);
  for (int i = 0; i < 50; ++i) {
    v1::GenerateRequest ra, rb;
    a->Next(&ra);
    b->Next(&rb);
    ASSERT_EQ(ra.input_case(), v1::GenerateRequest::kTokenIds);
    EXPECT_GE(ra.token_ids().ids_size(), 3);
    EXPECT_LE(ra.token_ids().ids_size(), 9);
    for (int32_t id : ra.token_ids().ids()) {
      EXPECT_GE(id, 0);
      EXPECT_LT(id, 50);
    }
    EXPECT_EQ(ra.stopping().max_tokens(), 11);
    EXPECT_TRUE(ra.stopping().ignore_eos());
    EXPECT_FLOAT_EQ(ra.sampling().temperature(), 0.5f);
    EXPECT_EQ(ra.SerializeAsString(), rb.SerializeAsString());  // same seed, same requests
  }
  o.vocab_size = 0;
  EXPECT_FALSE(Workload::Create(o).ok());
}

TEST(WorkloadTest, FilePromptsCycleAndCarryTheirMaxTokens) {
  WorkloadOptions o;
  o.source = WorkloadOptions::PromptSource::kFile;
  o.file_prompts = {{"first", 3}, {"second", -1}};
  o.output_tokens = LengthDistribution::Fixed(20);
  auto w = *Workload::Create(o);
  std::vector<std::pair<std::string, int>> got;
  for (int i = 0; i < 4; ++i) {
    v1::GenerateRequest r;
    w->Next(&r);
    got.emplace_back(r.text(), r.stopping().max_tokens());
  }
  EXPECT_EQ(got, (std::vector<std::pair<std::string, int>>{
                     {"first", 3}, {"second", 20}, {"first", 3}, {"second", 20}}));
  o.file_prompts.clear();
  EXPECT_FALSE(Workload::Create(o).ok());
}

TEST(WorkloadTest, RandomWordsScaleWithTheCalibration) {
  WorkloadOptions o;
  o.source = WorkloadOptions::PromptSource::kWords;
  o.prompt_tokens = LengthDistribution::Fixed(40);
  o.tokens_per_word = 2.0;  // 40 tokens -> 20 words
  auto w = *Workload::Create(o);
  v1::GenerateRequest r;
  w->Next(&r);
  ASSERT_EQ(r.input_case(), v1::GenerateRequest::kText);
  const std::vector<std::string> words = absl::StrSplit(r.text(), ' ');
  EXPECT_EQ(words.size(), 20u);
  std::mt19937_64 rng(3);
  EXPECT_EQ(RandomWords(0, rng), "");
  o.tokens_per_word = 0;
  EXPECT_FALSE(Workload::Create(o).ok());
}

TEST(SweepSpecTest, ParsesKindsAndValues) {
  EXPECT_EQ(ParseSweep("")->kind, SweepSpec::Kind::kNone);
  const SweepSpec c = *ParseSweep("concurrency:1,4,16");
  EXPECT_EQ(c.kind, SweepSpec::Kind::kConcurrency);
  EXPECT_EQ(c.values, (std::vector<double>{1, 4, 16}));
  const SweepSpec r = *ParseSweep("rate:0.5, 2");
  EXPECT_EQ(r.kind, SweepSpec::Kind::kRate);
  EXPECT_EQ(r.values, (std::vector<double>{0.5, 2}));
  EXPECT_EQ(ParseSweep("sessions:2,8")->kind, SweepSpec::Kind::kSessions);
  for (const char* bad : {"concurrency", "concurrency:", "concurrency:0", "concurrency:1.5",
                          "rate:-1", "rate:x", "threads:1,2", "sessions:1,,2"}) {
    absl::StatusOr<SweepSpec> s = ParseSweep(bad);
    ASSERT_FALSE(s.ok()) << bad;
    EXPECT_THAT(std::string(s.status().message()), HasSubstr("--sweep")) << bad;
  }
}

}  // namespace
}  // namespace mamba::client::load
