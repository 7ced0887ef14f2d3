#include "client/client_call.h"

#include <chrono>
#include <cstdio>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"

ABSL_FLAG(std::string, addr, "localhost:50051", "Server address, HOST:PORT");
ABSL_FLAG(bool, json, false, "Print JSON (one object per line) instead of plain text");
ABSL_FLAG(double, timeout_seconds, 0, "Deadline of the call in seconds; 0 = none");

namespace mamba::client {

std::shared_ptr<grpc::Channel> OpenChannel() {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  args.SetMaxSendMessageSize(-1);
  // The channel credentials are where TLS plugs in.
  return grpc::CreateCustomChannel(absl::GetFlag(FLAGS_addr), grpc::InsecureChannelCredentials(),
                                   args);
}

std::unique_ptr<grpc::ClientContext> NewContext(const std::string& session_id) {
  auto context = std::make_unique<grpc::ClientContext>();
  const double timeout = absl::GetFlag(FLAGS_timeout_seconds);
  if (timeout > 0) {
    context->set_deadline(std::chrono::system_clock::now() +
                          std::chrono::microseconds(static_cast<int64_t>(timeout * 1e6)));
  }
  if (!session_id.empty()) context->AddMetadata("x-session-id", session_id);
  return context;
}

int ReportFailure(const grpc::Status& status) {
  // absl and gRPC share the canonical code numbers, and absl knows their names.
  const std::string name =
      absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code()));
  std::fprintf(stderr, "%s: %s\n", name.c_str(), status.error_message().c_str());
  return kExitCallFailed;
}

int ReportUsageError(const std::string& message) {
  std::fprintf(stderr, "mamba-client: %s\n", message.c_str());
  return kExitUsage;
}

bool JsonOutput() { return absl::GetFlag(FLAGS_json); }

void PrintJson(const nlohmann::json& value) {
  const std::string line = value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

}  // namespace mamba::client
