// Bearer-token authentication: the tokens a server accepts, each naming the tenant its calls act
// for, read from a file (--auth_tokens_file) and re-read while the server runs (SIGHUP).
//
// File format: one `TOKEN TENANT` pair per line, separated by spaces or tabs. Blank lines and
// lines whose first non-blank character is '#' are ignored. Tokens are 8 to 4096 printable ASCII
// characters without spaces; tenants are 1 to 128 of [A-Za-z0-9._:@-]. A token may appear once.
//
// Clients send `authorization: Bearer TOKEN` metadata. Tokens are compared in time that does not
// depend on where a presented token differs from a known one, and never appear in errors or logs.
//
// Thread-safety: every method may be called from any thread; Reload swaps the table atomically,
// so a call sees either the old table or the new one.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace mamba::server {

// One accepted token, kept only as its SHA-256 digest.
struct TokenEntry {
  std::array<uint8_t, 32> digest;
  std::string tenant;
};

// Parses the text of a tokens file. `source` names the file in errors. INVALID_ARGUMENT naming
// the line number for a malformed line, a bad token or tenant, or a token seen before; also when
// the file holds no token at all (every call would be refused).
absl::StatusOr<std::vector<TokenEntry>> ParseTokenTable(std::string_view text,
                                                        std::string_view source);

class TokenAuthenticator {
 public:
  // Reads and parses `path`: NOT_FOUND (or PERMISSION_DENIED, ...) naming the file and the reason
  // when it cannot be read; ParseTokenTable's errors when it is malformed.
  static absl::StatusOr<std::unique_ptr<TokenAuthenticator>> FromFile(std::string path);
  TokenAuthenticator(const TokenAuthenticator&) = delete;
  TokenAuthenticator& operator=(const TokenAuthenticator&) = delete;

  // Re-reads the file. On error the table in use stays as it was and the error is returned.
  absl::Status Reload();

  // The tenant for the value of a call's `authorization` metadata (nullopt when the call sent
  // none). UNAUTHENTICATED when it is missing, not of the form `Bearer TOKEN`, or not a known
  // token; the message never repeats what the client sent.
  absl::StatusOr<std::string> Authenticate(std::optional<std::string_view> authorization) const;

  const std::string& path() const { return path_; }
  // Tokens in the table in use.
  size_t size() const;

 private:
  TokenAuthenticator(std::string path, std::vector<TokenEntry> table);

  const std::string path_;
  mutable std::mutex mu_;
  std::shared_ptr<const std::vector<TokenEntry>> table_;  // guarded by mu_; replaced, never mutated
};

}  // namespace mamba::server
