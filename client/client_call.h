// What every mamba-client subcommand shares: the connection (--addr), per-call contexts
// (deadline, session-affinity metadata), output mode (--json), and how failures are reported.
#pragma once

#include <memory>
#include <string>

#include "absl/flags/declare.h"
#include "absl/status/status.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/support/status.h"
#include "nlohmann/json.hpp"

ABSL_DECLARE_FLAG(std::string, addr);
ABSL_DECLARE_FLAG(bool, json);
ABSL_DECLARE_FLAG(double, timeout_seconds);

namespace mamba::client {

// Exit codes: 0 success, 1 the call failed (or health is not SERVING), 2 bad usage.
inline constexpr int kExitOk = 0;
inline constexpr int kExitCallFailed = 1;
inline constexpr int kExitUsage = 2;

// A channel to --addr. Responses may be large (ExportSession carries a whole state), so the
// receive limit is lifted.
std::shared_ptr<grpc::Channel> OpenChannel();

// A context with the --timeout_seconds deadline (if any) and, when `session_id` is not empty,
// the `x-session-id` metadata that session-affinity proxies route by.
std::unique_ptr<grpc::ClientContext> NewContext(const std::string& session_id = "");

// Prints "CODE_NAME: message" to stderr and returns kExitCallFailed.
int ReportFailure(const grpc::Status& status);
// Prints "mamba-client: message" to stderr and returns kExitUsage.
int ReportUsageError(const std::string& message);

bool JsonOutput();
// Prints `value` as one line of JSON on stdout (invalid UTF-8 replaced, never thrown on).
void PrintJson(const nlohmann::json& value);

}  // namespace mamba::client
