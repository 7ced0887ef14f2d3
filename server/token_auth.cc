#include "server/token_auth.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <unordered_set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace mamba::server {
namespace {

constexpr size_t kMinTokenBytes = 8;
constexpr size_t kMaxTokenBytes = 4096;
constexpr size_t kMaxTenantBytes = 128;

absl::string_view AsAbsl(std::string_view s) { return absl::string_view(s.data(), s.size()); }

std::array<uint8_t, 32> Digest(std::string_view token) {
  std::array<uint8_t, 32> digest;
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), digest.data());
  return digest;
}

bool ValidTokenChar(char c) { return c > 0x20 && c < 0x7f; }

bool ValidTenantChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == ':' ||
         c == '@' || c == '-';
}

absl::Status LineError(std::string_view source, int line, std::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat(AsAbsl(source), " line ", line, ": ", AsAbsl(what),
                   "; each line is `TOKEN TENANT` (blank lines and # comments allowed)"));
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    const std::string reason = err != 0 ? std::strerror(err) : "cannot be opened";
    const std::string message =
        absl::StrCat("auth tokens file ", path, " cannot be read: ", reason);
    if (err == ENOENT) return absl::NotFoundError(message);
    if (err == EACCES) return absl::PermissionDeniedError(message);
    return absl::FailedPreconditionError(message);
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) {
    return absl::FailedPreconditionError(
        absl::StrCat("auth tokens file ", path, " could not be read to the end"));
  }
  return text.str();
}

}  // namespace

absl::StatusOr<std::vector<TokenEntry>> ParseTokenTable(std::string_view text,
                                                        std::string_view source) {
  std::vector<TokenEntry> table;
  // Digests of the tokens seen so far, to refuse duplicates (never the tokens themselves).
  std::unordered_set<std::string> seen;
  int line_number = 0;
  for (absl::string_view raw : absl::StrSplit(AsAbsl(text), '\n')) {
    ++line_number;
    absl::string_view line = absl::StripAsciiWhitespace(raw);
    if (line.empty() || line.front() == '#') continue;
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (fields.size() != 2) {
      return LineError(source, line_number,
                       absl::StrCat("expected 2 fields, found ", fields.size()));
    }
    const absl::string_view token = fields[0];
    const absl::string_view tenant = fields[1];
    if (token.size() < kMinTokenBytes || token.size() > kMaxTokenBytes) {
      return LineError(source, line_number,
                       absl::StrCat("the token has ", token.size(), " characters; allowed: ",
                                    kMinTokenBytes, " to ", kMaxTokenBytes));
    }
    for (char c : token) {
      if (!ValidTokenChar(c)) {
        return LineError(source, line_number,
                         "the token has a character that is not printable ASCII");
      }
    }
    if (tenant.size() > kMaxTenantBytes) {
      return LineError(source, line_number,
                       absl::StrCat("the tenant has ", tenant.size(), " characters; allowed: 1 to ",
                                    kMaxTenantBytes));
    }
    for (char c : tenant) {
      if (!ValidTenantChar(c)) {
        return LineError(source, line_number,
                         "the tenant may only contain letters, digits and . _ : @ -");
      }
    }
    TokenEntry entry{Digest(std::string_view(token.data(), token.size())), std::string(tenant)};
    std::string key(entry.digest.begin(), entry.digest.end());
    if (!seen.insert(std::move(key)).second) {
      return LineError(source, line_number, "this token already appeared on an earlier line");
    }
    table.push_back(std::move(entry));
  }
  if (table.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(AsAbsl(source),
                     " has no tokens; every call would be refused. Add lines of "
                     "`TOKEN TENANT`"));
  }
  return table;
}

TokenAuthenticator::TokenAuthenticator(std::string path, std::vector<TokenEntry> table)
    : path_(std::move(path)),
      table_(std::make_shared<const std::vector<TokenEntry>>(std::move(table))) {}

absl::StatusOr<std::unique_ptr<TokenAuthenticator>> TokenAuthenticator::FromFile(std::string path) {
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) return text.status();
  absl::StatusOr<std::vector<TokenEntry>> table =
      ParseTokenTable(*text, absl::StrCat("auth tokens file ", path));
  if (!table.ok()) return table.status();
  return std::unique_ptr<TokenAuthenticator>(
      new TokenAuthenticator(std::move(path), *std::move(table)));
}

absl::Status TokenAuthenticator::Reload() {
  absl::StatusOr<std::string> text = ReadFile(path_);
  if (!text.ok()) return text.status();
  absl::StatusOr<std::vector<TokenEntry>> table =
      ParseTokenTable(*text, absl::StrCat("auth tokens file ", path_));
  if (!table.ok()) return table.status();
  auto fresh = std::make_shared<const std::vector<TokenEntry>>(*std::move(table));
  std::lock_guard<std::mutex> lock(mu_);
  table_ = std::move(fresh);
  return absl::OkStatus();
}

size_t TokenAuthenticator::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return table_->size();
}

absl::StatusOr<std::string> TokenAuthenticator::Authenticate(
    std::optional<std::string_view> authorization) const {
  if (!authorization.has_value() || authorization->empty()) {
    return absl::UnauthenticatedError(
        "this server requires a bearer token: send metadata `authorization: Bearer TOKEN`");
  }
  absl::string_view value = absl::StripAsciiWhitespace(AsAbsl(*authorization));
  constexpr absl::string_view kScheme = "bearer ";
  if (value.size() <= kScheme.size() ||
      !absl::EqualsIgnoreCase(value.substr(0, kScheme.size()), kScheme)) {
    return absl::UnauthenticatedError(
        "the authorization metadata is not of the form `Bearer TOKEN`");
  }
  const absl::string_view token = absl::StripLeadingAsciiWhitespace(value.substr(kScheme.size()));
  // Comparing fixed-size digests with CRYPTO_memcmp over the whole table takes the same time
  // whichever token matches and wherever a wrong one differs.
  const std::array<uint8_t, 32> digest = Digest(std::string_view(token.data(), token.size()));
  std::shared_ptr<const std::vector<TokenEntry>> table;
  {
    std::lock_guard<std::mutex> lock(mu_);
    table = table_;
  }
  const TokenEntry* match = nullptr;
  for (const TokenEntry& entry : *table) {
    const bool equal = CRYPTO_memcmp(entry.digest.data(), digest.data(), digest.size()) == 0;
    if (equal) match = &entry;
  }
  if (match == nullptr) return absl::UnauthenticatedError("the bearer token is not valid");
  return match->tenant;
}

}  // namespace mamba::server
