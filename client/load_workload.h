// What `mamba-client load` sends and when: length distributions for prompts and outputs, the
// open-loop arrival process, the prompt sources (synthetic token ids, random words, a JSONL file),
// and the Workload that turns them into GenerateRequests.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "mambaserve/v1/generation.pb.h"

namespace mamba::client::load {

// A distribution of positive integer lengths: "N" (fixed), "uniform:A:B" (every integer in
// [A, B] equally likely) or "normal:MEAN:STD" (rounded to the nearest integer, then clamped to
// [1, max]). Lengths are at least 1.
class LengthDistribution {
 public:
  enum class Kind { kFixed, kUniform, kNormal };

  // Parses `spec`; `flag` names the flag in errors, which say what is allowed.
  static absl::StatusOr<LengthDistribution> Parse(std::string_view spec, std::string_view flag);
  static LengthDistribution Fixed(int32_t n);

  int32_t Sample(std::mt19937_64& rng) const;
  Kind kind() const { return kind_; }
  // The mean of the (unclamped) distribution.
  double Mean() const;
  // The canonical spec ("128", "uniform:16:64", "normal:100:20").
  std::string ToString() const;

 private:
  // Normal samples are clamped here so that one outlier cannot ask for an absurd length.
  static constexpr int32_t kMaxLength = 1 << 20;
  Kind kind_ = Kind::kFixed;
  double a_ = 1;  // fixed value, uniform low, or normal mean
  double b_ = 1;  // uniform high, or normal standard deviation
};

// Inter-arrival gaps of an open loop: gamma-distributed with shape = burstiness and mean 1/rate,
// so burstiness 1 is a Poisson process, < 1 is burstier and > 1 is more regular (the coefficient
// of variation of the gaps is 1/sqrt(burstiness)).
class ArrivalProcess {
 public:
  // rate in requests/s (> 0, finite); burstiness > 0.
  static absl::StatusOr<ArrivalProcess> Create(double rate, double burstiness);
  // The next gap in seconds.
  double NextGapSeconds(std::mt19937_64& rng);
  double rate() const { return rate_; }
  double burstiness() const { return burstiness_; }

 private:
  ArrivalProcess(double rate, double burstiness);
  double rate_;
  double burstiness_;
  std::gamma_distribution<double> gamma_;
};

// One line of a --prompts file: {"prompt": "...", "max_tokens": N} (max_tokens optional).
struct PromptFileEntry {
  std::string prompt;
  int32_t max_tokens = -1;  // -1: take --output_tokens
};

// Parses JSONL text (blank lines skipped); `name` names the source in errors, with line numbers.
absl::StatusOr<std::vector<PromptFileEntry>> ParsePromptsJsonl(std::string_view text,
                                                               std::string_view name);
absl::StatusOr<std::vector<PromptFileEntry>> ReadPromptsFile(const std::string& path);

// `count` words drawn at random from a fixed list of common English words, space-separated.
std::string RandomWords(int32_t count, std::mt19937_64& rng);

struct WorkloadOptions {
  enum class PromptSource {
    kTokenIds,  // prompt_tokens random ids in [0, vocab_size)
    kWords,     // about prompt_tokens tokens of random words (tokens_per_word calibrates)
    kFile,      // file_prompts, in order, cycling
  };
  PromptSource source = PromptSource::kTokenIds;
  LengthDistribution prompt_tokens = LengthDistribution::Fixed(128);
  LengthDistribution output_tokens = LengthDistribution::Fixed(128);
  std::vector<PromptFileEntry> file_prompts;
  int32_t vocab_size = 0;        // kTokenIds: ids are drawn below this (> 0)
  double tokens_per_word = 1.0;  // kWords: measured with the server's tokenizer (> 0)
  // Sampling and stopping fields every request carries; its max_tokens is replaced per request.
  mambaserve::v1::GenerateRequest base;
  uint64_t seed = 0;
};

// Makes the requests of a run from WorkloadOptions: the same options and seed give the same
// sequence of requests. Thread-safe.
class Workload {
 public:
  static absl::StatusOr<std::unique_ptr<Workload>> Create(WorkloadOptions options);
  Workload(const Workload&) = delete;
  Workload& operator=(const Workload&) = delete;

  // Fills `request` with the next prompt, its max_tokens and the base fields; the session id
  // is left for the caller.
  void Next(mambaserve::v1::GenerateRequest* request);
  const WorkloadOptions& options() const { return options_; }

 private:
  explicit Workload(WorkloadOptions options);
  WorkloadOptions options_;
  std::mutex mu_;
  std::mt19937_64 rng_;
  size_t next_file_prompt_ = 0;
};

// --sweep=KIND:V1,V2,...: the points of a sweep, run one after another.
struct SweepSpec {
  enum class Kind { kNone, kConcurrency, kRate, kSessions };
  Kind kind = Kind::kNone;
  std::vector<double> values;  // integers for concurrency and sessions
};
// "" -> kNone; "concurrency:1,4,16" (integers >= 1), "rate:0.5,2" (> 0), "sessions:1,8"
// (integers >= 1).
absl::StatusOr<SweepSpec> ParseSweep(std::string_view spec);

}  // namespace mamba::client::load
