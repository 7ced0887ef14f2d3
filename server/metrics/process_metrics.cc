#include "server/metrics/process_metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "server/metrics/text_format.h"

namespace mamba::metrics {
namespace {

std::optional<std::string> ReadWholeFile(const char* path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

std::optional<ProcStat> ReadSelfStat() {
  std::optional<std::string> text = ReadWholeFile("/proc/self/stat");
  if (!text) return std::nullopt;
  absl::StatusOr<ProcStat> stat = ParseProcStat(*text, sysconf(_SC_CLK_TCK), sysconf(_SC_PAGESIZE));
  if (!stat.ok()) return std::nullopt;
  return *stat;
}

std::optional<double> OpenFds() {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return std::nullopt;
  const int own_fd = dirfd(dir);
  const std::string own_name = std::to_string(own_fd);
  int64_t count = 0;
  while (const dirent* entry = readdir(dir)) {
    const std::string_view name = entry->d_name;
    if (name == "." || name == ".." || name == own_name) continue;  // not the listing's own fd
    ++count;
  }
  closedir(dir);
  return static_cast<double>(count);
}

std::optional<double> MaxFds() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return std::nullopt;
  if (limit.rlim_cur == RLIM_INFINITY) return std::numeric_limits<double>::infinity();
  return static_cast<double>(limit.rlim_cur);
}

std::optional<double> StartTime() {
  std::optional<ProcStat> stat = ReadSelfStat();
  std::optional<std::string> proc_stat = ReadWholeFile("/proc/stat");
  if (!stat || !proc_stat) return std::nullopt;
  absl::StatusOr<int64_t> boot = ParseBootTime(*proc_stat);
  if (!boot.ok()) return std::nullopt;
  return static_cast<double>(*boot) + stat->start_seconds_after_boot;
}

}  // namespace

absl::StatusOr<ProcStat> ParseProcStat(std::string_view text, int64_t clock_ticks_per_second,
                                       int64_t page_size) {
  if (clock_ticks_per_second <= 0 || page_size <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("clock ticks per second and page size must be positive; got ",
                     clock_ticks_per_second, " and ", page_size));
  }
  // "pid (comm) state ppid ...": comm may hold anything, so split after its last ')'.
  const size_t close = text.rfind(')');
  if (close == std::string_view::npos) {
    return absl::InvalidArgumentError("/proc stat text has no \"(comm)\" field");
  }
  std::vector<absl::string_view> fields =
      absl::StrSplit(absl::string_view(text.data() + close + 1, text.size() - close - 1), ' ',
                     absl::SkipWhitespace());
  // fields[0] is field 3 (state) of proc(5); utime is 14, stime 15, starttime 22, vsize 23, rss 24.
  constexpr size_t kUtime = 14 - 3, kStime = 15 - 3, kStart = 22 - 3, kVsize = 23 - 3,
                   kRss = 24 - 3;
  if (fields.size() <= kRss) {
    return absl::InvalidArgumentError(
        absl::StrCat("/proc stat text has ", fields.size() + 2, " fields; at least 24 are needed"));
  }
  uint64_t utime = 0, stime = 0, start = 0, vsize = 0;
  int64_t rss = 0;
  if (!absl::SimpleAtoi(fields[kUtime], &utime) || !absl::SimpleAtoi(fields[kStime], &stime) ||
      !absl::SimpleAtoi(fields[kStart], &start) || !absl::SimpleAtoi(fields[kVsize], &vsize) ||
      !absl::SimpleAtoi(fields[kRss], &rss)) {
    return absl::InvalidArgumentError(
        "/proc stat text has a non-numeric utime, stime, starttime, vsize or rss field");
  }
  const double ticks = static_cast<double>(clock_ticks_per_second);
  ProcStat out;
  out.cpu_seconds = static_cast<double>(utime + stime) / ticks;
  out.start_seconds_after_boot = static_cast<double>(start) / ticks;
  out.virtual_memory_bytes = static_cast<double>(vsize);
  out.resident_memory_bytes = static_cast<double>(rss) * static_cast<double>(page_size);
  return out;
}

absl::StatusOr<int64_t> ParseBootTime(std::string_view proc_stat_text) {
  for (absl::string_view line :
       absl::StrSplit(absl::string_view(proc_stat_text.data(), proc_stat_text.size()), '\n')) {
    if (!absl::ConsumePrefix(&line, "btime ")) continue;
    int64_t seconds = 0;
    if (!absl::SimpleAtoi(line, &seconds) || seconds <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("/proc/stat has a malformed btime line: \"btime ", line, "\""));
    }
    return seconds;
  }
  return absl::NotFoundError("/proc/stat has no btime line");
}

absl::Status RegisterProcessMetrics(Registry* registry) {
  struct Entry {
    const char* name;
    const char* help;
    MetricType type;
    std::function<std::optional<double>()> read;
  };
  const Entry entries[] = {
      {"process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
       MetricType::kCounter,
       [] {
         std::optional<ProcStat> s = ReadSelfStat();
         return s ? std::optional<double>(s->cpu_seconds) : std::nullopt;
       }},
      {"process_resident_memory_bytes", "Resident memory size in bytes.", MetricType::kGauge,
       [] {
         std::optional<ProcStat> s = ReadSelfStat();
         return s ? std::optional<double>(s->resident_memory_bytes) : std::nullopt;
       }},
      {"process_virtual_memory_bytes", "Virtual memory size in bytes.", MetricType::kGauge,
       [] {
         std::optional<ProcStat> s = ReadSelfStat();
         return s ? std::optional<double>(s->virtual_memory_bytes) : std::nullopt;
       }},
      {"process_open_fds", "Number of open file descriptors.", MetricType::kGauge, OpenFds},
      {"process_max_fds", "Maximum number of open file descriptors.", MetricType::kGauge, MaxFds},
      {"process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
       MetricType::kGauge, StartTime},
  };
  for (const Entry& e : entries) {
    if (absl::Status s = registry->AddCallback(e.name, e.help, e.type, e.read); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace mamba::metrics
