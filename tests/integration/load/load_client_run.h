// What the load tests share: running `mamba-client load` against a server process, reading its
// JSON report, and reading the server's own counters from /metrics to check the client against.
#pragma once

#include <httplib.h>
#include <unistd.h>

#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/server/server_test_util.h"

namespace mamba::client::load::testing {

using ::mamba::server::testing::ProgramResult;
using ::mamba::server::testing::RunProgram;
using ::mamba::server::testing::ServerProcess;

inline const std::vector<std::string> kTinyServer = {
    "--model=synthetic:tiny", "--backend=cpu", "--host=127.0.0.1", "--port=0",
    "--metrics_port=0",       "--http_port=0",       "--log_level=warning"};

inline std::vector<std::string> With(std::vector<std::string> args,
                                     std::initializer_list<std::string> more) {
  args.insert(args.end(), more.begin(), more.end());
  return args;
}

// Runs `mamba-client load --addr=ADDRESS ARGS...`.
inline ProgramResult RunLoad(const std::string& address, const std::vector<std::string>& args,
                             absl::Duration timeout = absl::Seconds(120)) {
  std::vector<std::string> argv = {std::string(MAMBA_BIN_DIR) + "/mamba-client", "load",
                                   "--addr=" + address};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunProgram(argv, timeout);
}

// The report --json prints on stdout (its last line); a discarded value when there is none.
inline nlohmann::json ReportOf(const ProgramResult& run) {
  std::string last;
  for (absl::string_view line : absl::StrSplit(run.out, '\n', absl::SkipEmpty())) {
    last = std::string(line);
  }
  return nlohmann::json::parse(last, nullptr, /*allow_exceptions=*/false);
}

// Every sample of the server's /metrics, keyed by the series as written ("name{labels}").
inline std::map<std::string, double> ScrapeMetrics(const std::string& metrics_address) {
  std::map<std::string, double> samples;
  const size_t colon = metrics_address.rfind(':');
  httplib::Client client(metrics_address.substr(0, colon),
                         std::stoi(metrics_address.substr(colon + 1)));
  client.set_read_timeout(10, 0);
  auto response = client.Get("/metrics");
  if (!response || response->status != 200) return samples;
  for (absl::string_view line : absl::StrSplit(response->body, '\n', absl::SkipEmpty())) {
    if (absl::StartsWith(line, "#")) continue;
    const size_t space = line.rfind(' ');
    double value;
    if (space == absl::string_view::npos || !absl::SimpleAtod(line.substr(space + 1), &value)) {
      continue;
    }
    samples[std::string(line.substr(0, space))] = value;
  }
  return samples;
}

// The sum of every series of `name` whose labels contain each of `labels` ("key=\"v\"").
inline double MetricSum(const std::map<std::string, double>& samples, const std::string& name,
                        const std::vector<std::string>& labels = {}) {
  double sum = 0;
  for (const auto& [series, value] : samples) {
    if (series != name && !absl::StartsWith(series, name + "{")) continue;
    bool match = true;
    for (const std::string& l : labels) match = match && series.find(l) != std::string::npos;
    if (match) sum += value;
  }
  return sum;
}

// A path for a test's output file.
inline std::string TempPath(const std::string& name) {
  return ::testing::TempDir() + "/mamba_load_" + std::to_string(::getpid()) + "_" + name;
}

}  // namespace mamba::client::load::testing
