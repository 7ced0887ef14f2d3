// What every mamba-client subcommand shares: the connection (--addr, TLS flags), per-call contexts
// (deadline, bearer token, session-affinity metadata), output mode (--json), and how failures
// are reported.
#pragma once

#include <memory>
#include <string>

#include "absl/flags/declare.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "grpcpp/support/status.h"
#include "nlohmann/json.hpp"

ABSL_DECLARE_FLAG(std::string, addr);
ABSL_DECLARE_FLAG(bool, json);
ABSL_DECLARE_FLAG(double, timeout_seconds);
ABSL_DECLARE_FLAG(bool, tls);
ABSL_DECLARE_FLAG(std::string, tls_ca);
ABSL_DECLARE_FLAG(std::string, tls_cert);
ABSL_DECLARE_FLAG(std::string, tls_key);
ABSL_DECLARE_FLAG(std::string, tls_server_name);
ABSL_DECLARE_FLAG(std::string, token);

namespace mamba::client {

// Exit codes: 0 success, 1 the call failed (or health is not SERVING), 2 bad usage.
inline constexpr int kExitOk = 0;
inline constexpr int kExitCallFailed = 1;
inline constexpr int kExitUsage = 2;

// The channel credentials the flags ask for: plaintext by default; TLS with --tls or any of
// --tls_ca (server CA bundle; default: the system's roots), --tls_cert and --tls_key (a client
// certificate, both or neither). INVALID_ARGUMENT for a bad combination or a bad --token; an
// error naming the flag and file when a file cannot be read. main() checks it before any call.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentialsFromFlags();

// Whether the flags ask for TLS: --tls, or a --tls_ca or --tls_cert given.
bool TlsFromFlags();

// Channel arguments the flags ask for (--tls_server_name overrides the name the server's
// certificate is checked against), added to `args`.
void AddChannelArgumentsFromFlags(grpc::ChannelArguments* args);

// A channel to --addr with ChannelCredentialsFromFlags(). Responses may be large (ExportSession
// carries a whole state), so the receive limit is lifted. Exits with kExitUsage when the
// credentials cannot be built (main() checked them already, so only a file that vanished since).
std::shared_ptr<grpc::Channel> OpenChannel();
// The same for `address`, with `args` (the flags' arguments are added to them).
std::shared_ptr<grpc::Channel> OpenChannel(const std::string& address,
                                           grpc::ChannelArguments args);

// Adds `authorization: Bearer TOKEN` when --token is set.
void AddAuthMetadata(grpc::ClientContext* context);

// A context with the --timeout_seconds deadline (if any), the --token bearer token (if any) and,
// when `session_id` is not empty, the `x-session-id` metadata that session-affinity proxies
// route by.
std::unique_ptr<grpc::ClientContext> NewContext(const std::string& session_id = "");

// Prints "CODE_NAME: message" to stderr and returns kExitCallFailed.
int ReportFailure(const grpc::Status& status);
// Prints "mamba-client: message" to stderr and returns kExitUsage.
int ReportUsageError(const std::string& message);

bool JsonOutput();
// Prints `value` as one line of JSON on stdout (invalid UTF-8 replaced, never thrown on).
void PrintJson(const nlohmann::json& value);

}  // namespace mamba::client
