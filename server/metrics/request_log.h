// Structured logs: a small leveled logger that writes one JSON object per line to stderr, and the
// one line per finished request that operators search when a user reports a slow or failed call.
//
// Every line has "ts" (UTC, RFC 3339 with milliseconds), "level" and "msg" first, then the
// caller's fields, e.g.
//   {"ts":"2026-01-02T03:04:05.678Z","level":"info","msg":"request","request_id":"r-1",...}
//
// Thread-safety: Logger methods may be called from any thread; each line is written whole.
#pragma once

#include <atomic>
#include <concepts>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace mamba::metrics {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// "debug", "info", "warning", "error".
const char* LogLevelName(LogLevel level);
// Parses a --log_level value (one of the names above, any case; "warn" is taken for "warning").
absl::StatusOr<LogLevel> ParseLogLevel(std::string_view text);

// One key/value of a log line. Strings are copied into the line with JSON escaping (invalid UTF-8
// becomes U+FFFD); non-finite doubles become null.
class LogField {
 public:
  LogField(std::string_view key, std::string_view value) : key_(key), value_(value) {}
  LogField(std::string_view key, const char* value) : key_(key), value_(std::string_view(value)) {}
  LogField(std::string_view key, const std::string& value)
      : key_(key), value_(std::string_view(value)) {}
  template <typename T>
  requires(std::integral<T> && !std::same_as<T, bool>) LogField(std::string_view key, T value)
      : key_(key), value_(static_cast<int64_t>(value)) {}
  LogField(std::string_view key, double value) : key_(key), value_(value) {}
  LogField(std::string_view key, bool value) : key_(key), value_(value) {}
  LogField(std::string_view key, std::nullptr_t) : key_(key), value_(nullptr) {}

  std::string_view key() const { return key_; }
  const std::variant<std::string_view, int64_t, double, bool, std::nullptr_t>& value() const {
    return value_;
  }

 private:
  std::string_view key_;
  std::variant<std::string_view, int64_t, double, bool, std::nullptr_t> value_;
};

class Logger {
 public:
  // Receives each finished line, ending in '\n'. Must be thread-safe.
  using Sink = std::function<void(std::string_view line)>;
  // A clock for the "ts" field (tests fix it).
  using Clock = std::function<absl::Time()>;

  // Writes to stderr when `sink` is empty, stamped with absl::Now() when `clock` is empty.
  explicit Logger(LogLevel level = LogLevel::kInfo, Sink sink = nullptr, Clock clock = nullptr);
  Logger(const Logger&) = delete;
  Logger& operator=(const Logger&) = delete;

  void set_level(LogLevel level) { level_.store(level, std::memory_order_relaxed); }
  LogLevel level() const { return level_.load(std::memory_order_relaxed); }
  bool enabled(LogLevel level) const { return level >= this->level(); }

  // Writes one line if `level` is enabled. Fields named ts, level or msg are renamed with a
  // leading underscore rather than overwriting the standard ones.
  void Log(LogLevel level, std::string_view message,
           std::initializer_list<LogField> fields = {}) const;
  void Debug(std::string_view message, std::initializer_list<LogField> fields = {}) const {
    Log(LogLevel::kDebug, message, fields);
  }
  void Info(std::string_view message, std::initializer_list<LogField> fields = {}) const {
    Log(LogLevel::kInfo, message, fields);
  }
  void Warning(std::string_view message, std::initializer_list<LogField> fields = {}) const {
    Log(LogLevel::kWarning, message, fields);
  }
  void Error(std::string_view message, std::initializer_list<LogField> fields = {}) const {
    Log(LogLevel::kError, message, fields);
  }

  // The line Log() would write, without the level check (for tests and other sinks).
  std::string Format(LogLevel level, std::string_view message,
                     std::initializer_list<LogField> fields) const;

 private:
  std::atomic<LogLevel> level_;
  Sink sink_;
  Clock clock_;
};

// The process-wide logger (stderr, level info until main applies --log_level with set_level).
Logger& DefaultLogger();

// What the gRPC layer knows when a call ends. Generation fields stay at their defaults for calls
// that generate nothing (session and tokenizer calls, requests rejected before the engine).
struct RequestRecord {
  std::string request_id;
  std::string session_id;  // "" when stateless
  std::string method;      // gRPC method name, e.g. "Generate"; HTTP: "chat.completions", ...
  std::string protocol = "grpc";  // "grpc" or "http" (the OpenAI-compatible API)
  absl::StatusCode code = absl::StatusCode::kOk;
  std::string error_message;                          // the status message when code is not OK
  int64_t prompt_tokens = 0;                          // new tokens processed for this request
  int64_t generated_tokens = 0;                       // tokens streamed
  int64_t cached_tokens = 0;                          // tokens already in the session's state
  std::optional<absl::Duration> time_to_first_token;  // unset when no token was produced
  absl::Duration e2e;                                 // from receipt to the final status
  std::string finish_reason;  // "length", "stop", "eos", "cancelled", "error"; "" if none
};

// gRPC's name for a status code ("OK", "INVALID_ARGUMENT", ...); "UNKNOWN" for values outside it.
const char* GrpcCodeName(absl::StatusCode code);

// Longest client-supplied id and error message a log line carries (longer ones are cut, with
// their length noted), so that a hostile value cannot make a line huge.
inline constexpr size_t kMaxLoggedIdBytes = 128;
inline constexpr size_t kMaxLoggedErrorBytes = 1024;

// `value` when it has at most `max_bytes` bytes; else its first bytes (cut on a UTF-8 character
// boundary) followed by "...(N bytes)".
std::string BoundedForLog(std::string_view value, size_t max_bytes);

// Writes the record as one line with msg "request" and the fields request_id, session_id,
// method, code, error (null when OK), prompt_tokens, generated_tokens, cached_tokens,
// ttft_seconds (null when no token was produced), e2e_seconds and finish_reason (null if none).
// The line is at level error for the server's own faults (INTERNAL, UNKNOWN, DATA_LOSS: a model
// that diverged on a request, a device error), else info; ids and the error message are bounded
// (BoundedForLog).
void LogRequest(const Logger& logger, const RequestRecord& record);

}  // namespace mamba::metrics
