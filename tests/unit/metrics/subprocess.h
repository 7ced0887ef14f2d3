// Running the tools the observability tests need (promtool, prometheus, python3, mamba-serve,
// mamba-client) as child processes.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace mamba::metrics::testing {

struct CommandResult {
  int exit_code = -1;  // 128 + signal number when killed by a signal
  std::string output;  // stdout, then stderr when `merge_stderr`
};

// Runs argv[0] (searched in PATH) with `stdin_text` as its standard input and waits for it.
// stderr is appended to the output when `merge_stderr`, otherwise it goes to the test's stderr.
CommandResult RunCommand(const std::vector<std::string>& argv, std::string_view stdin_text = "",
                         bool merge_stderr = false);

// The full path of `program` in PATH, if it is there and executable.
std::optional<std::string> FindInPath(std::string_view program);

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it by the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A child process that runs in the background, with stdout readable line by line and stderr
// written to a file. The destructor stops it (SIGTERM, then SIGKILL after 5 s) and reaps it.
class ChildProcess {
 public:
  static absl::StatusOr<ChildProcess> Start(const std::vector<std::string>& argv,
                                            const std::string& stderr_path);
  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&&) = delete;
  ChildProcess(const ChildProcess&) = delete;
  ~ChildProcess();

  pid_t pid() const { return pid_; }
  // The next line of stdout (without '\n'); error on EOF or timeout.
  absl::StatusOr<std::string> ReadLine(std::chrono::milliseconds timeout);
  // Sends SIGTERM and waits up to `grace` before SIGKILL; returns the exit code (128+signal when
  // killed). Idempotent.
  int Stop(std::chrono::milliseconds grace = std::chrono::seconds(5));
  // Whether it has exited (reaping it if so), without waiting.
  bool Exited();

 private:
  ChildProcess(pid_t pid, int stdout_fd) : pid_(pid), stdout_fd_(stdout_fd) {}
  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  std::string buffer_;
  std::optional<int> exit_code_;
};

// A TCP port on 127.0.0.1 that was free a moment ago (for servers that need a fixed port).
absl::StatusOr<int> PickFreeLoopbackPort();

// The whole content of a file.
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

}  // namespace mamba::metrics::testing
