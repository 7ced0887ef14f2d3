#include "client/client_call.h"

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"

ABSL_FLAG(std::string, addr, "localhost:50051", "Server address, HOST:PORT");
ABSL_FLAG(bool, json, false, "Print JSON (one object per line) instead of plain text");
ABSL_FLAG(double, timeout_seconds, 0, "Deadline of the call in seconds; 0 = none");
ABSL_FLAG(bool, tls, false,
          "Connect with TLS, checking the server against the system's root CAs (implied by "
          "--tls_ca, --tls_cert and --tls_key)");
ABSL_FLAG(std::string, tls_ca, "", "PEM CA bundle the server's certificate must chain to");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM client certificate (with --tls_key), for servers that require one");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert");
ABSL_FLAG(std::string, tls_server_name, "",
          "Name to check the server's certificate against, instead of --addr's host");
ABSL_FLAG(std::string, token, "",
          "Bearer token sent as `authorization: Bearer TOKEN` on every call");

namespace mamba::client {
namespace {

absl::StatusOr<std::string> ReadFlagFile(const char* flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    return absl::NotFoundError(absl::StrCat("--", flag, "=", path, " cannot be read: ",
                                            err != 0 ? std::strerror(err) : "cannot be opened"));
  }
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

bool TlsFromFlags() {
  return absl::GetFlag(FLAGS_tls) || !absl::GetFlag(FLAGS_tls_ca).empty() ||
         !absl::GetFlag(FLAGS_tls_cert).empty();
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentialsFromFlags() {
  const std::string token = absl::GetFlag(FLAGS_token);
  for (char c : token) {
    // Metadata values are printable ASCII; anything else would fail every call obscurely.
    if (c <= 0x20 || c >= 0x7f) {
      return absl::InvalidArgumentError(
          "--token may only contain printable ASCII characters without spaces");
    }
  }
  const std::string ca = absl::GetFlag(FLAGS_tls_ca);
  const std::string cert = absl::GetFlag(FLAGS_tls_cert);
  const std::string key = absl::GetFlag(FLAGS_tls_key);
  if (cert.empty() != key.empty()) {
    return absl::InvalidArgumentError(
        "--tls_cert and --tls_key come together: give both or neither");
  }
  if (!TlsFromFlags()) {
    if (!absl::GetFlag(FLAGS_tls_server_name).empty()) {
      return absl::InvalidArgumentError("--tls_server_name needs TLS (--tls or --tls_ca)");
    }
    return grpc::InsecureChannelCredentials();
  }
  grpc::SslCredentialsOptions options;
  if (!ca.empty()) {
    absl::StatusOr<std::string> pem = ReadFlagFile("tls_ca", ca);
    if (!pem.ok()) return pem.status();
    options.pem_root_certs = *std::move(pem);
  }
  if (!cert.empty()) {
    absl::StatusOr<std::string> cert_pem = ReadFlagFile("tls_cert", cert);
    if (!cert_pem.ok()) return cert_pem.status();
    absl::StatusOr<std::string> key_pem = ReadFlagFile("tls_key", key);
    if (!key_pem.ok()) return key_pem.status();
    options.pem_cert_chain = *std::move(cert_pem);
    options.pem_private_key = *std::move(key_pem);
  }
  return grpc::SslCredentials(options);
}

void AddChannelArgumentsFromFlags(grpc::ChannelArguments* args) {
  const std::string name = absl::GetFlag(FLAGS_tls_server_name);
  if (!name.empty()) args->SetSslTargetNameOverride(name);
}

std::shared_ptr<grpc::Channel> OpenChannel() {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  args.SetMaxSendMessageSize(-1);
  return OpenChannel(absl::GetFlag(FLAGS_addr), std::move(args));
}

std::shared_ptr<grpc::Channel> OpenChannel(const std::string& address,
                                           grpc::ChannelArguments args) {
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      ChannelCredentialsFromFlags();
  if (!credentials.ok()) std::exit(ReportUsageError(std::string(credentials.status().message())));
  AddChannelArgumentsFromFlags(&args);
  return grpc::CreateCustomChannel(address, *std::move(credentials), args);
}

void AddAuthMetadata(grpc::ClientContext* context) {
  const std::string token = absl::GetFlag(FLAGS_token);
  if (!token.empty()) context->AddMetadata("authorization", absl::StrCat("Bearer ", token));
}

std::unique_ptr<grpc::ClientContext> NewContext(const std::string& session_id) {
  auto context = std::make_unique<grpc::ClientContext>();
  const double timeout = absl::GetFlag(FLAGS_timeout_seconds);
  if (timeout > 0) {
    context->set_deadline(std::chrono::system_clock::now() +
                          std::chrono::microseconds(static_cast<int64_t>(timeout * 1e6)));
  }
  AddAuthMetadata(context.get());
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
