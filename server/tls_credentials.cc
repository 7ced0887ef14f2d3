#include "server/tls_credentials.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"

namespace mamba::server {
namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using KeyPtr = std::unique_ptr<EVP_PKEY, KeyFree>;

absl::StatusOr<std::string> ReadPem(const char* flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    const std::string message =
        absl::StrCat("--", flag, "=", path,
                     " cannot be read: ", err != 0 ? std::strerror(err) : "cannot be opened");
    if (err == ENOENT) return absl::NotFoundError(message);
    return absl::FailedPreconditionError(message);
  }
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

BioPtr MemoryBio(const std::string& pem) {
  return BioPtr(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

// The certificates in `pem`, in order; INVALID_ARGUMENT when there is none.
absl::StatusOr<std::vector<X509Ptr>> ParseCertificates(const char* flag, const std::string& path,
                                                       const std::string& pem) {
  std::vector<X509Ptr> certs;
  BioPtr bio = MemoryBio(pem);
  while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    certs.emplace_back(cert);
  }
  ERR_clear_error();  // the read past the last certificate leaves an error behind
  if (certs.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--", flag, "=", path, " holds no PEM certificate (-----BEGIN CERTIFICATE-----)"));
  }
  return certs;
}

}  // namespace

absl::Status CheckTlsFileCombination(const TlsFiles& files) {
  if (files.cert_file.empty() != files.key_file.empty()) {
    return absl::InvalidArgumentError(
        "--tls_cert and --tls_key come together: give both (TLS) or neither (plaintext)");
  }
  if (!files.client_ca_file.empty() && files.cert_file.empty()) {
    return absl::InvalidArgumentError(
        "--tls_client_ca needs --tls_cert and --tls_key: client certificates are only checked "
        "over TLS");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentialsFor(
    const TlsFiles& files) {
  absl::Status combination = CheckTlsFileCombination(files);
  if (!combination.ok()) return combination;
  if (!files.enabled()) return grpc::InsecureServerCredentials();

  absl::StatusOr<std::string> cert_pem = ReadPem("tls_cert", files.cert_file);
  if (!cert_pem.ok()) return cert_pem.status();
  absl::StatusOr<std::string> key_pem = ReadPem("tls_key", files.key_file);
  if (!key_pem.ok()) return key_pem.status();
  absl::StatusOr<std::vector<X509Ptr>> certs =
      ParseCertificates("tls_cert", files.cert_file, *cert_pem);
  if (!certs.ok()) return certs.status();
  BioPtr key_bio = MemoryBio(*key_pem);
  KeyPtr key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
  ERR_clear_error();
  if (key == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tls_key=", files.key_file,
                     " holds no unencrypted PEM private key (-----BEGIN PRIVATE KEY-----)"));
  }
  if (X509_check_private_key(certs->front().get(), key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        absl::StrCat("--tls_key=", files.key_file,
                     " does not match the certificate in --tls_cert=", files.cert_file));
  }

  grpc::SslServerCredentialsOptions options;
  options.pem_key_cert_pairs.push_back({*std::move(key_pem), *std::move(cert_pem)});
  if (!files.client_ca_file.empty()) {
    absl::StatusOr<std::string> ca_pem = ReadPem("tls_client_ca", files.client_ca_file);
    if (!ca_pem.ok()) return ca_pem.status();
    absl::StatusOr<std::vector<X509Ptr>> cas =
        ParseCertificates("tls_client_ca", files.client_ca_file, *ca_pem);
    if (!cas.ok()) return cas.status();
    options.pem_root_certs = *std::move(ca_pem);
    options.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  } else {
    options.client_certificate_request = GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE;
  }
  return grpc::SslServerCredentials(options);
}

absl::StatusOr<http::HttpTlsOptions> HttpTlsFromFiles(const TlsFiles& files) {
  http::HttpTlsOptions out;
  if (!files.enabled()) return out;
  // The gRPC credentials ran every check on these files already; read them as they are.
  absl::StatusOr<std::string> cert = ReadPem("tls_cert", files.cert_file);
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key = ReadPem("tls_key", files.key_file);
  if (!key.ok()) return key.status();
  out.cert_chain_pem = *std::move(cert);
  out.private_key_pem = *std::move(key);
  if (!files.client_ca_file.empty()) {
    absl::StatusOr<std::string> ca = ReadPem("tls_client_ca", files.client_ca_file);
    if (!ca.ok()) return ca.status();
    out.client_ca_pem = *std::move(ca);
  }
  return out;
}

}  // namespace mamba::server
