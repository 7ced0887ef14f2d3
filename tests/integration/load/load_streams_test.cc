// One mamba-client load process drives 2,000 concurrent streams against a real server, and
// reports its own CPU cost per received token.
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/load/load_client_run.h"

namespace mamba::client::load::testing {
namespace {

using nlohmann::json;

TEST(LoadStreamsTest, TwoThousandConcurrentStreams) {
  // Room for every stream at once: 256 advancing, the rest queued (not refused).
  auto process = ServerProcess::Start(
      With(kTinyServer, {"--num_slots=256", "--max_running=256", "--max_queue=4096"}));
  ASSERT_TRUE(process.ok()) << process.status();
  const ProgramResult run = RunLoad(
      (*process)->grpc_address(),
      {"--concurrency=2000", "--requests=2000", "--prompt_tokens=2", "--output_tokens=48",
       "--channels=4", "--timeout_seconds=240", "--json"},
      absl::Seconds(280));
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const json report = ReportOf(run);
  ASSERT_FALSE(report.is_discarded()) << run.out;
  const json& p = report["points"][0];
  EXPECT_EQ(p["requests"]["sent"], 2000);
  EXPECT_EQ(p["requests"]["succeeded"], 2000) << p["requests"].dump();
  // (Nearly) all 2,000 open at once: each lasts 48 steps, so the first finish after the last
  // start unless the machine is loaded (under ctest -j2 a stream or two sometimes ends just
  // before the last of the 2,000 is launched).
  EXPECT_GE(p["client"]["max_in_flight"].get<int>(), 1980);
  EXPECT_EQ(p["tokens"]["output"], 2000 * 48);
  EXPECT_EQ(p["tokens"]["usage_mismatches"], 0);
  const auto metrics = ScrapeMetrics((*process)->metrics_address());
  EXPECT_EQ(MetricSum(metrics, "mamba_generated_tokens_total"), 2000 * 48);
  std::printf("2000 streams: %.2f s, client %.2f us CPU per token\n",
              p["duration_s"].get<double>(), p["client"]["cpu_us_per_token"].get<double>());
}

}  // namespace
}  // namespace mamba::client::load::testing
