// Security through the real binaries: mamba-serve's startup errors for TLS and tokens flags
// (exit 2 for flag combinations, 1 for files), the tokens file re-read on SIGHUP, and
// mamba-client's --token and TLS flags (over gRPC and, for `load --http`, over HTTPS).
#include <signal.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/security/security_fixtures.h"
#include "tests/integration/server/server_test_util.h"

namespace mamba::server::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

const std::string kServe = std::string(MAMBA_BIN_DIR) + "/mamba-serve";
const std::string kClient = std::string(MAMBA_BIN_DIR) + "/mamba-client";

std::vector<std::string> TinyArgs(std::initializer_list<std::string> more) {
  std::vector<std::string> args = {"--model=synthetic:tiny", "--backend=cpu", "--cpu_threads=1",
                                   "--host=127.0.0.1",       "--port=0",      "--metrics_port=-1", "--http_port=-1",
                                   "--log_level=warning"};
  args.insert(args.end(), more.begin(), more.end());
  return args;
}

ProgramResult Client(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {kClient};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunProgram(argv, absl::Seconds(60));
}

TEST(SecurityProcessTest, BadSecurityFlagsAreStartupErrors) {
  ScratchDir scratch;
  const std::string& dir = scratch.path();
  ASSERT_FALSE(dir.empty());
  ASSERT_TRUE(WriteFile(dir + "/cert.pem", "not a certificate\n"));
  ASSERT_TRUE(WriteFile(dir + "/malformed-tokens", "# header\nvalid-token-0001 alpha\nbroken\n"));
  ASSERT_TRUE(
      WriteFile(dir + "/duplicate-tokens", "valid-token-0001 alpha\nvalid-token-0001 bravo\n"));
  struct Case {
    std::vector<std::string> flags;
    int exit_code;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"--tls_cert=" + dir + "/cert.pem"}, 2, "--tls_cert and --tls_key come together"},
      {{"--tls_key=" + dir + "/cert.pem"}, 2, "--tls_cert and --tls_key come together"},
      {{"--tls_client_ca=" + dir + "/cert.pem"}, 2, "--tls_client_ca needs --tls_cert"},
      {{"--tenant_max_sessions=-1"}, 2, "--tenant_max_sessions=-1 is out of range"},
      {{"--tenant_max_running=-3"}, 2, "--tenant_max_running=-3 is out of range"},
      {{"--tls_cert=" + dir + "/absent.pem", "--tls_key=" + dir + "/cert.pem"},
       1,
       "--tls_cert=" + dir + "/absent.pem cannot be read"},
      {{"--tls_cert=" + dir + "/cert.pem", "--tls_key=" + dir + "/cert.pem"},
       1,
       "--tls_cert=" + dir + "/cert.pem holds no PEM certificate"},
      {{"--auth_tokens_file=" + dir + "/absent-tokens"},
       1,
       "auth tokens file " + dir + "/absent-tokens cannot be read"},
      {{"--auth_tokens_file=" + dir + "/malformed-tokens"},
       1,
       "malformed-tokens line 3: expected 2 fields, found 1"},
      {{"--auth_tokens_file=" + dir + "/duplicate-tokens"},
       1,
       "duplicate-tokens line 2: this token already appeared"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> argv = {kServe};
    for (const std::string& a : TinyArgs({})) argv.push_back(a);
    argv.insert(argv.end(), c.flags.begin(), c.flags.end());
    ProgramResult r = RunProgram(argv, absl::Seconds(60));
    EXPECT_EQ(r.exit_code, c.exit_code) << c.message << "\n" << r.err;
    EXPECT_THAT(r.err, HasSubstr(c.message));
    EXPECT_EQ(r.out, "");  // never the listening line
    EXPECT_THAT(r.err, Not(HasSubstr("valid-token-0001")));
  }
}

TEST(SecurityProcessTest, SighupReloadsTheTokensFile) {
  ScratchDir scratch;
  const std::string& dir = scratch.path();
  ASSERT_FALSE(dir.empty());
  const std::string tokens = dir + "/tokens";
  ASSERT_TRUE(WriteFile(tokens, AlphaBravoTokensFile()));
  auto process = ServerProcess::Start(TinyArgs({"--auth_tokens_file=" + tokens}));
  ASSERT_TRUE(process.ok()) << process.status();
  ServerProcess& p = **process;
  const std::string addr = "--addr=" + p.grpc_address();

  ProgramResult none = Client({"info", addr});
  EXPECT_EQ(none.exit_code, 1);
  EXPECT_THAT(none.err, HasSubstr("UNAUTHENTICATED: this server requires a bearer token"));
  ProgramResult wrong = Client({"info", addr, "--token=charlie-secret-token-3"});
  EXPECT_EQ(wrong.exit_code, 1);
  EXPECT_THAT(wrong.err, HasSubstr("UNAUTHENTICATED"));
  EXPECT_THAT(wrong.err, Not(HasSubstr("charlie-secret-token-3")));
  EXPECT_EQ(Client({"info", addr, absl::StrCat("--token=", kAlphaToken)}).exit_code, 0);
  // Probes need no token.
  ProgramResult health = Client({"health", addr, "--service=readiness"});
  EXPECT_EQ(health.exit_code, 0) << health.err;

  // The new file replaces alpha and bravo with charlie.
  ASSERT_TRUE(WriteFile(tokens, "charlie-secret-token-3 charlie\n"));
  p.Signal(SIGHUP);
  const std::string charlie = "--token=charlie-secret-token-3";
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (Client({"info", addr, charlie}).exit_code != 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_EQ(Client({"info", addr, charlie}).exit_code, 0);
  ProgramResult old = Client({"info", addr, absl::StrCat("--token=", kAlphaToken)});
  EXPECT_EQ(old.exit_code, 1);
  EXPECT_THAT(old.err, HasSubstr("UNAUTHENTICATED"));

  // A bad file on reload keeps the tokens in use; the server keeps running.
  ASSERT_TRUE(WriteFile(tokens, "this file is broken\n"));
  p.Signal(SIGHUP);
  absl::SleepFor(absl::Milliseconds(500));
  EXPECT_EQ(Client({"info", addr, charlie}).exit_code, 0);
  ProgramResult session =
      Client({"session", "create", "--prompt_ids=1,2", addr, charlie, "--json"});
  EXPECT_EQ(session.exit_code, 0) << session.err;

  p.Signal(SIGTERM);
  absl::StatusOr<int> exit_code = p.Wait(absl::Seconds(30));
  ASSERT_TRUE(exit_code.ok()) << exit_code.status();
  EXPECT_EQ(*exit_code, 0);
}

TEST(SecurityProcessTest, ClientTlsFlagsReachAnMtlsServer) {
  ScratchDir scratch;
  const std::string& dir = scratch.path();
  ASSERT_FALSE(dir.empty());
  auto pki = MakeTestPki(dir);
  ASSERT_TRUE(pki.ok()) << pki.status();
  auto process = ServerProcess::Start(
      TinyArgs({"--tls_cert=" + pki->server_cert, "--tls_key=" + pki->server_key,
                "--tls_client_ca=" + pki->ca_cert}));
  ASSERT_TRUE(process.ok()) << process.status();
  const std::string addr = "--addr=" + (*process)->grpc_address();
  const std::string ca = "--tls_ca=" + pki->ca_cert;
  const std::string cert = "--tls_cert=" + pki->client_cert;
  const std::string key = "--tls_key=" + pki->client_key;

  ProgramResult ok = Client({"info", addr, ca, cert, key, "--tls_server_name=localhost"});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  ProgramResult by_ip = Client({"info", addr, ca, cert, key});
  EXPECT_EQ(by_ip.exit_code, 0) << by_ip.err;  // the certificate names 127.0.0.1 too
  ProgramResult health = Client({"health", addr, ca, cert, key});
  EXPECT_EQ(health.exit_code, 0) << health.err;

  const std::string timeout = "--timeout_seconds=5";
  EXPECT_EQ(Client({"info", addr, ca, timeout}).exit_code, 1);  // no client certificate
  EXPECT_EQ(Client({"info", addr, timeout}).exit_code, 1);      // plaintext
  ProgramResult wrong_name =
      Client({"info", addr, ca, cert, key, timeout, "--tls_server_name=elsewhere.example"});
  EXPECT_EQ(wrong_name.exit_code, 1);
  ProgramResult rogue = Client({"info", addr, ca, "--tls_cert=" + pki->rogue_client_cert,
                                "--tls_key=" + pki->rogue_client_key, timeout});
  EXPECT_EQ(rogue.exit_code, 1);

  ProgramResult half = Client({"info", addr, ca, cert});
  EXPECT_EQ(half.exit_code, 2);
  EXPECT_THAT(half.err, HasSubstr("--tls_cert and --tls_key come together"));
  ProgramResult missing = Client({"info", addr, "--tls_ca=" + dir + "/absent.pem"});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_THAT(missing.err, HasSubstr("--tls_ca=" + dir + "/absent.pem cannot be read"));
  ProgramResult bad_token = Client({"info", addr, ca, cert, key, "--token=has space"});
  EXPECT_EQ(bad_token.exit_code, 2);
  EXPECT_THAT(bad_token.err, HasSubstr("--token may only contain printable ASCII"));
}

TEST(SecurityProcessTest, LoadOverHttpsUsesTheTlsFlagsAndTheToken) {
  ScratchDir scratch;
  const std::string& dir = scratch.path();
  ASSERT_FALSE(dir.empty());
  auto pki = MakeTestPki(dir);
  ASSERT_TRUE(pki.ok()) << pki.status();
  const std::string tokens = dir + "/tokens";
  ASSERT_TRUE(WriteFile(tokens, AlphaBravoTokensFile()));
  // Mutual TLS and bearer tokens on both ports (the HTTP API shares the gRPC port's settings).
  auto process = ServerProcess::Start(
      TinyArgs({"--http_port=0", "--tls_cert=" + pki->server_cert,
                "--tls_key=" + pki->server_key, "--tls_client_ca=" + pki->ca_cert,
                "--auth_tokens_file=" + tokens}));
  ASSERT_TRUE(process.ok()) << process.status();
  const std::vector<std::string> base = {
      "load", "--addr=" + (*process)->grpc_address(), "--http=" + (*process)->http_address(),
      "--tls_ca=" + pki->ca_cert, "--token=" + std::string(kAlphaToken), "--concurrency=4",
      "--requests=24", "--prompt_tokens=4", "--output_tokens=4", "--timeout_seconds=30"};

  std::vector<std::string> args = base;
  args.insert(args.end(), {"--tls_cert=" + pki->client_cert, "--tls_key=" + pki->client_key});
  ProgramResult ok = Client(args);
  ASSERT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_THAT(ok.out, HasSubstr("sent 24, succeeded 24, failed 0"));

  // Without a client certificate the HTTPS handshake is refused before any load.
  ProgramResult no_cert = Client(base);
  EXPECT_EQ(no_cert.exit_code, 1);
  EXPECT_THAT(no_cert.err, HasSubstr("--http=" + (*process)->http_address()));
  // A server name the certificate does not carry.
  args.push_back("--tls_server_name=elsewhere.example");
  ProgramResult wrong_name = Client(args);
  EXPECT_EQ(wrong_name.exit_code, 1);
  EXPECT_THAT(wrong_name.err, HasSubstr("TLS handshake failed"));
}

}  // namespace
}  // namespace mamba::server::testing
