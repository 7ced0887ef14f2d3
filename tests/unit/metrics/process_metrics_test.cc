#include "server/metrics/process_metrics.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/metrics/exposition_parser.h"

namespace mamba::metrics {
namespace {

// A real /proc/<pid>/stat line, with a command name that contains ") (" to test the split.
constexpr char kStat[] =
    "4242 (evil) (name) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 150 0 0 20 0 9 0 "
    "123456 104857600 2560 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 3 0 0 0 0 0";

TEST(ProcessMetricsTest, ParsesProcStat) {
  absl::StatusOr<ProcStat> s = ParseProcStat(kStat, 100, 4096);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_DOUBLE_EQ(s->cpu_seconds, 4.0);  // (250 + 150) / 100
  EXPECT_DOUBLE_EQ(s->start_seconds_after_boot, 1234.56);
  EXPECT_EQ(s->virtual_memory_bytes, 104857600);
  EXPECT_EQ(s->resident_memory_bytes, 2560.0 * 4096);
}

TEST(ProcessMetricsTest, RejectsMalformedProcStat) {
  struct Case {
    std::string text;
    const char* message;
  } cases[] = {
      {"4242 no parens S 1", "(comm)"},
      {"4242 (x) S 1 2 3", "fields"},
      {"4242 (x) S 1 4242 4242 0 -1 4194560 1234 0 0 0 abc 150 0 0 20 0 9 0 123456 1 2",
       "non-numeric"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<ProcStat> s = ParseProcStat(c.text, 100, 4096);
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument) << c.text;
    EXPECT_THAT(std::string(s.status().message()), ::testing::HasSubstr(c.message));
  }
  EXPECT_FALSE(ParseProcStat(kStat, 0, 4096).ok());
}

TEST(ProcessMetricsTest, ParsesBootTime) {
  EXPECT_EQ(*ParseBootTime("cpu  1 2 3\nintr 5\nbtime 1700000000\nprocesses 9\n"), 1700000000);
  EXPECT_EQ(ParseBootTime("cpu 1\n").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ParseBootTime("btime soon\n").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ProcessMetricsTest, ReportsThisProcess) {
  Registry r;
  ASSERT_TRUE(RegisterProcessMetrics(&r).ok());
  // Burn a little CPU and open a file so the figures have something to show.
  volatile double x = 0;
  for (int i = 0; i < 20000000; ++i) x = x + i * 1e-9;
  auto before = testing::ParseExposition(r.Expose());
  ASSERT_TRUE(before.ok()) << before.status();
  const int fd = open("/proc/self/stat", O_RDONLY);
  ASSERT_GE(fd, 0);
  auto after = testing::ParseExposition(r.Expose());
  close(fd);
  ASSERT_TRUE(after.ok());

  EXPECT_EQ(after->type["process_cpu_seconds_total"], "counter");
  EXPECT_GT(*after->Value("process_cpu_seconds_total"), 0.0);
  EXPECT_GT(*after->Value("process_resident_memory_bytes"), 1 << 20);
  EXPECT_GE(*after->Value("process_virtual_memory_bytes"),
            *after->Value("process_resident_memory_bytes"));
  EXPECT_EQ(*after->Value("process_open_fds"), *before->Value("process_open_fds") + 1);
  rlimit limit{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &limit), 0);
  if (limit.rlim_cur != RLIM_INFINITY) {
    EXPECT_EQ(*after->Value("process_max_fds"), static_cast<double>(limit.rlim_cur));
  }
  const double now = static_cast<double>(std::time(nullptr));
  const double start = *after->Value("process_start_time_seconds");
  EXPECT_LE(start, now + 1);
  EXPECT_GT(start, now - 3600);  // this test binary started moments ago
}

}  // namespace
}  // namespace mamba::metrics
