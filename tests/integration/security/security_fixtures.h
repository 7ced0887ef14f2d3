// Shared by the security tests: temporary files, a test PKI made with the openssl command-line
// tool, tokens files, and raw calls that carry metadata.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "grpcpp/support/status.h"

namespace mamba::server::testing {

// A fresh directory under the test's temporary directory, removed with everything in it when
// this goes away (the certificates and keys the tests make do not outlive them).
class ScratchDir {
 public:
  ScratchDir();
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  // "" when the directory could not be made.
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};
// Writes `content` to `path` (replacing it); false on failure.
bool WriteFile(const std::string& path, const std::string& content);

// Two tenants' tokens, as the tests' tokens files hold them.
inline constexpr char kAlphaToken[] = "alpha-secret-token-0001";
inline constexpr char kBravoToken[] = "bravo-secret-token-0002";
// `TOKEN TENANT` lines for alpha and bravo, with a comment and a blank line.
std::string AlphaBravoTokensFile();

// A CA, a server certificate for localhost / 127.0.0.1 signed by it, a client certificate
// signed by it, and a second CA with a client certificate of its own (which the server must
// refuse). All PEM, EC P-256, made by the openssl CLI.
struct TestPki {
  std::string ca_cert;
  std::string server_cert;
  std::string server_key;
  std::string client_cert;
  std::string client_key;
  std::string rogue_client_cert;  // signed by the other CA
  std::string rogue_client_key;
};
absl::StatusOr<TestPki> MakeTestPki(const std::string& dir);

// Reads a whole file ("" when it cannot be read).
std::string ReadWholeFile(const std::string& path);

// A raw call of `method` with `request` bytes and the given metadata; the status and the
// response messages' bytes. Works for unary and server-streaming methods.
struct MetadataCallResult {
  grpc::Status status;
  int responses = 0;
};
MetadataCallResult CallWithMetadata(const std::shared_ptr<grpc::Channel>& channel,
                                    const std::string& method, const std::string& request,
                                    const std::multimap<std::string, std::string>& metadata,
                                    absl::Duration timeout = absl::Seconds(30));

// `authorization: Bearer TOKEN` metadata.
std::multimap<std::string, std::string> Bearer(const std::string& token);

}  // namespace mamba::server::testing
