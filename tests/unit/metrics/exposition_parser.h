// A strict reader of the Prometheus text format, independent of the writer in server/metrics, so
// tests can check what a scrape says rather than how it was produced.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace mamba::metrics::testing {

struct Sample {
  std::string name;                                         // series name, e.g. x_bucket
  std::vector<std::pair<std::string, std::string>> labels;  // unescaped, in order
  double value = 0;

  // The value of label `key`, if present.
  std::optional<std::string> Label(std::string_view key) const;
};

struct Exposition {
  std::vector<Sample> samples;
  std::map<std::string, std::string> help;  // metric name -> unescaped help
  std::map<std::string, std::string> type;  // metric name -> counter|gauge|histogram|...

  // Samples named `name` whose labels include every pair in `match`.
  std::vector<const Sample*> Find(std::string_view name,
                                  const std::map<std::string, std::string>& match = {}) const;
  // The value of the single sample named `name` matching `match`; error if none or several.
  absl::StatusOr<double> Value(std::string_view name,
                               const std::map<std::string, std::string>& match = {}) const;
};

// Parses a whole exposition; fails on the first malformed line, naming it.
absl::StatusOr<Exposition> ParseExposition(std::string_view text);

}  // namespace mamba::metrics::testing
