// TLS on the gRPC port: server credentials from PEM files (--tls_cert, --tls_key), optionally
// requiring and verifying client certificates (--tls_client_ca).
#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "grpcpp/security/server_credentials.h"
#include "server/http/http_server.h"

namespace mamba::server {

struct TlsFiles {
  std::string cert_file;       // server certificate chain (PEM), leaf first
  std::string key_file;        // its private key (PEM)
  std::string client_ca_file;  // CA bundle (PEM) that client certificates must chain to; "" = none

  bool enabled() const { return !cert_file.empty() || !key_file.empty(); }
};

// INVALID_ARGUMENT when the combination is not allowed: the certificate and the key come
// together, and a client CA needs both.
absl::Status CheckTlsFileCombination(const TlsFiles& files);

// Insecure credentials when TLS is off; otherwise reads and checks the files (each parses as PEM,
// the key matches the certificate) and returns TLS credentials. Errors name the flag and the file:
// NOT_FOUND or FAILED_PRECONDITION when a file cannot be read, INVALID_ARGUMENT when its content
// is not what the flag needs.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentialsFor(
    const TlsFiles& files);

// The same files as PEM text for the HTTP API's server, with the same errors (the certificate
// chain is checked further when the server loads it).
absl::StatusOr<http::HttpTlsOptions> HttpTlsFromFiles(const TlsFiles& files);

}  // namespace mamba::server
