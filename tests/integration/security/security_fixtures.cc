#include "tests/integration/security/security_fixtures.h"

#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "grpcpp/client_context.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/support/byte_buffer.h"
#include "gtest/gtest.h"
#include "tests/integration/server/server_test_util.h"

namespace mamba::server::testing {
namespace {

// The openssl binary on PATH ("" when there is none).
std::string FindOpenssl() {
  const char* path = std::getenv("PATH");
  for (absl::string_view dir : absl::StrSplit(path != nullptr ? path : "/usr/bin:/bin", ':')) {
    if (dir.empty()) continue;
    std::string candidate = absl::StrCat(dir, "/openssl");
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

absl::Status Openssl(const std::string& openssl, std::vector<std::string> args) {
  args.insert(args.begin(), openssl);
  ProgramResult r = RunProgram(args, absl::Seconds(60));
  if (r.exit_code != 0) {
    return absl::InternalError(
        absl::StrCat("openssl ", args[1], " failed (exit ", r.exit_code, "): ", r.err));
  }
  return absl::OkStatus();
}

// A key and a certificate for `cn` signed by `ca` (cert and key paths), with `extensions`.
absl::Status IssueCertificate(const std::string& openssl, const std::string& dir,
                              const std::string& name, const std::string& cn,
                              const std::string& ca_cert, const std::string& ca_key,
                              const std::string& extensions) {
  const std::string key = absl::StrCat(dir, "/", name, ".key");
  const std::string csr = absl::StrCat(dir, "/", name, ".csr");
  const std::string crt = absl::StrCat(dir, "/", name, ".crt");
  const std::string ext = absl::StrCat(dir, "/", name, ".ext");
  if (!WriteFile(ext, extensions)) return absl::InternalError("cannot write " + ext);
  absl::Status s =
      Openssl(openssl, {"req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", key, "-out", csr, "-subj", absl::StrCat("/CN=", cn)});
  if (!s.ok()) return s;
  return Openssl(openssl,
                 {"x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial",
                  "-out", crt, "-days", "2", "-sha256", "-extfile", ext});
}

absl::Status MakeCa(const std::string& openssl, const std::string& dir, const std::string& name) {
  return Openssl(openssl,
                 {"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                  "-nodes", "-keyout", absl::StrCat(dir, "/", name, ".key"), "-out",
                  absl::StrCat(dir, "/", name, ".crt"), "-days", "2", "-subj",
                  absl::StrCat("/CN=mamba-serve test ", name)});
}

}  // namespace

ScratchDir::ScratchDir() {
  std::string pattern = ::testing::TempDir();
  if (pattern.empty() || pattern.back() != '/') pattern += '/';
  pattern += "mamba_security_XXXXXX";
  std::vector<char> buffer(pattern.begin(), pattern.end());
  buffer.push_back('\0');
  const char* made = mkdtemp(buffer.data());
  if (made != nullptr) path_ = made;
}

ScratchDir::~ScratchDir() {
  if (path_.empty()) return;
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

bool WriteFile(const std::string& path, const std::string& content) {
  // Write then rename, so that a server re-reading the file never sees half of it.
  const std::string staging = path + ".new";
  {
    std::ofstream out(staging, std::ios::binary | std::ios::trunc);
    if (!out) return false;
    out << content;
    if (!out) return false;
  }
  return std::rename(staging.c_str(), path.c_str()) == 0;
}

std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string AlphaBravoTokensFile() {
  return absl::StrCat("# test tokens\n", kAlphaToken, " alpha\n\n   ", kBravoToken, "\tbravo  \n");
}

absl::StatusOr<TestPki> MakeTestPki(const std::string& dir) {
  const std::string openssl = FindOpenssl();
  if (openssl.empty()) {
    return absl::FailedPreconditionError(
        "the openssl command-line tool is not on PATH (scripts/setup.sh installs it)");
  }
  absl::Status s = MakeCa(openssl, dir, "ca");
  if (s.ok()) s = MakeCa(openssl, dir, "rogue-ca");
  if (s.ok()) {
    s = IssueCertificate(openssl, dir, "server", "localhost", dir + "/ca.crt", dir + "/ca.key",
                         "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                         "extendedKeyUsage=serverAuth\n");
  }
  if (s.ok()) {
    s = IssueCertificate(openssl, dir, "client", "tenant-client", dir + "/ca.crt", dir + "/ca.key",
                         "extendedKeyUsage=clientAuth\n");
  }
  if (s.ok()) {
    s = IssueCertificate(openssl, dir, "rogue-client", "rogue-client", dir + "/rogue-ca.crt",
                         dir + "/rogue-ca.key", "extendedKeyUsage=clientAuth\n");
  }
  if (!s.ok()) return s;
  TestPki pki;
  pki.ca_cert = dir + "/ca.crt";
  pki.server_cert = dir + "/server.crt";
  pki.server_key = dir + "/server.key";
  pki.client_cert = dir + "/client.crt";
  pki.client_key = dir + "/client.key";
  pki.rogue_client_cert = dir + "/rogue-client.crt";
  pki.rogue_client_key = dir + "/rogue-client.key";
  return pki;
}

std::multimap<std::string, std::string> Bearer(const std::string& token) {
  return {{"authorization", absl::StrCat("Bearer ", token)}};
}

MetadataCallResult CallWithMetadata(const std::shared_ptr<grpc::Channel>& channel,
                                    const std::string& method, const std::string& request,
                                    const std::multimap<std::string, std::string>& metadata,
                                    absl::Duration timeout) {
  MetadataCallResult result;
  grpc::GenericStub stub(channel);
  grpc::CompletionQueue cq;
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  for (const auto& [key, value] : metadata) context.AddMetadata(key, value);
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call =
      stub.PrepareCall(&context, method, &cq);
  void* tag;
  bool ok;
  auto step = [&](intptr_t expected) {
    cq.Next(&tag, &ok);
    return reinterpret_cast<intptr_t>(tag) == expected && ok;
  };
  call->StartCall(reinterpret_cast<void*>(1));
  if (step(1)) {
    grpc::Slice slice(request);
    grpc::ByteBuffer out(&slice, 1);
    call->Write(out, reinterpret_cast<void*>(2));
    if (step(2)) {
      call->WritesDone(reinterpret_cast<void*>(3));
      step(3);
    }
    while (true) {
      grpc::ByteBuffer in;
      call->Read(&in, reinterpret_cast<void*>(4));
      if (!step(4)) break;
      ++result.responses;
    }
  }
  call->Finish(&result.status, reinterpret_cast<void*>(5));
  step(5);
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  return result;
}

}  // namespace mamba::server::testing
