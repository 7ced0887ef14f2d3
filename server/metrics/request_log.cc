#include "server/metrics/request_log.h"

#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace mamba::metrics {
namespace {

using Json = nlohmann::ordered_json;

// One write(2) per line: with O_APPEND or a pipe, lines from different threads never interleave.
void WriteToStderr(std::string_view line) {
  const char* p = line.data();
  size_t left = line.size();
  while (left > 0) {
    const ssize_t n = ::write(STDERR_FILENO, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // nowhere left to report a failure to log
    p += n;
    left -= static_cast<size_t>(n);
  }
}

Json FieldValue(const LogField& field) {
  return std::visit(
      [](const auto& v) -> Json {
        using V = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<V, std::string_view>) {
          return Json(std::string(v));
        } else if constexpr (std::is_same_v<V, double>) {
          return std::isfinite(v) ? Json(v) : Json(nullptr);
        } else {
          return Json(v);
        }
      },
      field.value());
}

// Durations in seconds, rounded to the microsecond so lines stay short (0.0123 rather than
// 0.012300000000000001).
double Seconds(absl::Duration d) { return std::round(absl::ToDoubleSeconds(d) * 1e6) / 1e6; }

}  // namespace

const char* LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kError:
      return "error";
  }
  return "info";
}

absl::StatusOr<LogLevel> ParseLogLevel(std::string_view text) {
  const std::string lower = absl::AsciiStrToLower(absl::string_view(text.data(), text.size()));
  if (lower == "debug") return LogLevel::kDebug;
  if (lower == "info") return LogLevel::kInfo;
  if (lower == "warning" || lower == "warn") return LogLevel::kWarning;
  if (lower == "error") return LogLevel::kError;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown log level \"", lower, "\"; allowed: debug, info, warning, error"));
}

Logger::Logger(LogLevel level, Sink sink, Clock clock)
    : level_(level), sink_(std::move(sink)), clock_(std::move(clock)) {}

std::string Logger::Format(LogLevel level, std::string_view message,
                           std::initializer_list<LogField> fields) const {
  const absl::Time now = clock_ ? clock_() : absl::Now();
  Json line = Json::object();
  line["ts"] = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", now, absl::UTCTimeZone());
  line["level"] = LogLevelName(level);
  line["msg"] = std::string(message);
  for (const LogField& f : fields) {
    std::string key(f.key());
    while (line.contains(key)) key = absl::StrCat("_", key);
    line[key] = FieldValue(f);
  }
  std::string out = line.dump(-1, ' ', false, Json::error_handler_t::replace);
  out.push_back('\n');
  return out;
}

void Logger::Log(LogLevel level, std::string_view message,
                 std::initializer_list<LogField> fields) const {
  if (!enabled(level)) return;
  const std::string line = Format(level, message, fields);
  if (sink_) {
    sink_(line);
  } else {
    WriteToStderr(line);
  }
}

Logger& DefaultLogger() {
  static Logger* const logger = new Logger();  // never destroyed: threads may log during exit
  return *logger;
}

const char* GrpcCodeName(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk:
      return "OK";
    case absl::StatusCode::kCancelled:
      return "CANCELLED";
    case absl::StatusCode::kUnknown:
      return "UNKNOWN";
    case absl::StatusCode::kInvalidArgument:
      return "INVALID_ARGUMENT";
    case absl::StatusCode::kDeadlineExceeded:
      return "DEADLINE_EXCEEDED";
    case absl::StatusCode::kNotFound:
      return "NOT_FOUND";
    case absl::StatusCode::kAlreadyExists:
      return "ALREADY_EXISTS";
    case absl::StatusCode::kPermissionDenied:
      return "PERMISSION_DENIED";
    case absl::StatusCode::kResourceExhausted:
      return "RESOURCE_EXHAUSTED";
    case absl::StatusCode::kFailedPrecondition:
      return "FAILED_PRECONDITION";
    case absl::StatusCode::kAborted:
      return "ABORTED";
    case absl::StatusCode::kOutOfRange:
      return "OUT_OF_RANGE";
    case absl::StatusCode::kUnimplemented:
      return "UNIMPLEMENTED";
    case absl::StatusCode::kInternal:
      return "INTERNAL";
    case absl::StatusCode::kUnavailable:
      return "UNAVAILABLE";
    case absl::StatusCode::kDataLoss:
      return "DATA_LOSS";
    case absl::StatusCode::kUnauthenticated:
      return "UNAUTHENTICATED";
    default:
      return "UNKNOWN";
  }
}

std::string BoundedForLog(std::string_view value, size_t max_bytes) {
  if (value.size() <= max_bytes) return std::string(value);
  // Cut on a character boundary so that the line stays valid UTF-8, and say how much was left out.
  size_t cut = max_bytes;
  while (cut > 0 && (static_cast<unsigned char>(value[cut]) & 0xC0) == 0x80) --cut;
  return absl::StrCat(std::string(value.substr(0, cut)), "...(", value.size(), " bytes)");
}

void LogRequest(const Logger& logger, const RequestRecord& r) {
  // The server's own faults are errors an operator must see; a client's mistakes are not.
  const bool server_fault = r.code == absl::StatusCode::kInternal ||
                            r.code == absl::StatusCode::kUnknown ||
                            r.code == absl::StatusCode::kDataLoss;
  const LogLevel level = server_fault ? LogLevel::kError : LogLevel::kInfo;
  if (!logger.enabled(level)) return;
  const bool ok = r.code == absl::StatusCode::kOk;
  // Client-supplied strings are bounded: a malformed 5 MB session id must not become 5 MB of log.
  const std::string request_id = BoundedForLog(r.request_id, kMaxLoggedIdBytes);
  const std::string session_id = BoundedForLog(r.session_id, kMaxLoggedIdBytes);
  const std::string error = BoundedForLog(r.error_message, kMaxLoggedErrorBytes);
  logger.Log(level, "request",
             {{"request_id", request_id},
              {"session_id", session_id},
              {"protocol", r.protocol},
              {"method", r.method},
              {"code", GrpcCodeName(r.code)},
              ok ? LogField("error", nullptr) : LogField("error", error),
              {"prompt_tokens", r.prompt_tokens},
              {"generated_tokens", r.generated_tokens},
              {"cached_tokens", r.cached_tokens},
              r.time_to_first_token ? LogField("ttft_seconds", Seconds(*r.time_to_first_token))
                                    : LogField("ttft_seconds", nullptr),
              {"e2e_seconds", Seconds(r.e2e)},
              r.finish_reason.empty() ? LogField("finish_reason", nullptr)
                                      : LogField("finish_reason", r.finish_reason)});
}

}  // namespace mamba::metrics
