// The standard process metrics every Prometheus client exports, read from /proc at scrape time:
// process_cpu_seconds_total, process_resident_memory_bytes, process_virtual_memory_bytes,
// process_open_fds, process_max_fds and process_start_time_seconds.
#pragma once

#include <cstdint>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/metrics/registry.h"

namespace mamba::metrics {

// The fields of /proc/<pid>/stat the process metrics use, in base units.
struct ProcStat {
  double cpu_seconds = 0;  // utime + stime
  double start_seconds_after_boot = 0;
  double virtual_memory_bytes = 0;
  double resident_memory_bytes = 0;
};

// Parses the text of /proc/<pid>/stat (the command name may contain spaces and parentheses).
// `clock_ticks_per_second` and `page_size` come from sysconf(_SC_CLK_TCK) and
// sysconf(_SC_PAGESIZE).
absl::StatusOr<ProcStat> ParseProcStat(std::string_view text, int64_t clock_ticks_per_second,
                                       int64_t page_size);

// The boot time in seconds since the Unix epoch, from the "btime" line of /proc/stat.
absl::StatusOr<int64_t> ParseBootTime(std::string_view proc_stat_text);

// Registers the process metrics in `registry`; each is read from /proc when scraped (and listed
// without a sample if /proc cannot be read, e.g. on a system without procfs).
absl::Status RegisterProcessMetrics(Registry* registry);

}  // namespace mamba::metrics
