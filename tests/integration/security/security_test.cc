// Security of the service, against an in-process server on synthetic:tiny: the tokens file
// format, bearer-token authentication (health and reflection stay open), tenant ownership of
// sessions and per-tenant limits, and TLS with and without client certificates.
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "gtest/gtest.h"
#include "server/token_auth.h"
#include "tests/integration/security/security_fixtures.h"
#include "tests/integration/server/server_test_util.h"

namespace mamba::server::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// ---------------------------------------------------------------------------------------------
// The tokens file.

TEST(TokenTableTest, ParsesPairsSkippingCommentsAndBlankLines) {
  auto table = ParseTokenTable(AlphaBravoTokensFile(), "tokens");
  ASSERT_TRUE(table.ok()) << table.status();
  ASSERT_EQ(table->size(), 2u);
  EXPECT_EQ((*table)[0].tenant, "alpha");
  EXPECT_EQ((*table)[1].tenant, "bravo");
}

TEST(TokenTableTest, RejectsMalformedFilesNamingTheLine) {
  struct Case {
    std::string text;
    const char* message;  // null: the file is valid
  };
  const Case cases[] = {
      {"# ok\nonlyonefield-token\n", "tokens line 2: expected 2 fields, found 1"},
      {"aaaaaaaaaa t1\nbbbbbbbbbb t2 extra\n", "tokens line 2: expected 2 fields, found 3"},
      {"short t1\n", "tokens line 1: the token has 5 characters; allowed: 8 to 4096"},
      {"aaaaaaaaaa t1\n\naaaaaaaaaa t2\n", "tokens line 3: this token already appeared"},
      {"aaaaaaaaaa bad/tenant\n", "tokens line 1: the tenant may only contain"},
      {"aaaaaaaa\x01 t1\n", "tokens line 1: the token has a character that is not printable"},
      {std::string(300, 'x') + " t\n", nullptr},  // long but valid
      {"# nothing\n\n", "tokens has no tokens"},
      {"", "tokens has no tokens"},
  };
  for (const Case& c : cases) {
    auto table = ParseTokenTable(c.text, "tokens");
    if (c.message == nullptr) {
      EXPECT_TRUE(table.ok()) << table.status();
      continue;
    }
    ASSERT_FALSE(table.ok()) << c.text;
    EXPECT_EQ(table.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(table.status().message()), HasSubstr(c.message));
  }
}

TEST(TokenTableTest, NeverPutsATokenIntoAnError) {
  auto table = ParseTokenTable("secret-token-value t1\nsecret-token-value t2\n", "tokens");
  ASSERT_FALSE(table.ok());
  EXPECT_THAT(std::string(table.status().message()), Not(HasSubstr("secret-token-value")));
}

TEST(TokenAuthenticatorTest, AuthenticatesAndReloadsKeepingTheOldTableOnError) {
  ScratchDir scratch;
  const std::string& dir = scratch.path();
  const std::string path = dir + "/tokens";
  ASSERT_TRUE(WriteFile(path, AlphaBravoTokensFile()));
  auto auth = TokenAuthenticator::FromFile(path);
  ASSERT_TRUE(auth.ok()) << auth.status();
  TokenAuthenticator& a = **auth;

  EXPECT_EQ(a.Authenticate(std::nullopt).status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(*a.Authenticate(absl::StrCat("Bearer ", kAlphaToken)), "alpha");
  EXPECT_EQ(*a.Authenticate(absl::StrCat("bearer ", kBravoToken)), "bravo");
  auto wrong = a.Authenticate("Bearer alpha-secret-token-0009");
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(std::string(wrong.status().message()), Not(HasSubstr("alpha-secret")));
  EXPECT_EQ(a.Authenticate(kAlphaToken).status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(a.Authenticate("Bearer").status().code(), absl::StatusCode::kUnauthenticated);

  ASSERT_TRUE(WriteFile(path, "this line is malformed\n"));
  absl::Status reload = a.Reload();
  EXPECT_EQ(reload.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(reload.message()), HasSubstr("line 1"));
  EXPECT_EQ(*a.Authenticate(absl::StrCat("Bearer ", kAlphaToken)), "alpha");  // old table

  ASSERT_TRUE(WriteFile(path, "charlie-secret-token-3 charlie\n"));
  ASSERT_TRUE(a.Reload().ok());
  EXPECT_EQ(a.size(), 1u);
  EXPECT_EQ(*a.Authenticate("Bearer charlie-secret-token-3"), "charlie");
  EXPECT_EQ(a.Authenticate(absl::StrCat("Bearer ", kAlphaToken)).status().code(),
            absl::StatusCode::kUnauthenticated);

  auto missing = TokenAuthenticator::FromFile(dir + "/absent");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr(dir + "/absent"));
}

// ---------------------------------------------------------------------------------------------
// A server with authentication and per-tenant limits.

constexpr int kTenantMaxSessions = 3;
constexpr int kTenantMaxRunning = 2;

std::unique_ptr<grpc::ClientContext> Context(const std::string& token) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  if (!token.empty()) context->AddMetadata("authorization", absl::StrCat("Bearer ", token));
  return context;
}

class AuthServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = scratch_.path();
    ASSERT_FALSE(dir_.empty());
    ASSERT_TRUE(WriteFile(dir_ + "/tokens", AlphaBravoTokensFile()));
    ServerOptions options = TinyServerOptions();
    options.auth_tokens_file = dir_ + "/tokens";
    options.engine.sessions.tenant_max_sessions = kTenantMaxSessions;
    options.engine.scheduler.tenant_max_running = kTenantMaxRunning;
    auto server = MambaServer::Start(std::move(options));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    ASSERT_TRUE(server_->LoadModel().ok());
    channel_ = Connect(server_->address());
    generation_ = v1::Generation::NewStub(channel_);
    sessions_ = v1::Sessions::NewStub(channel_);
    models_ = v1::Models::NewStub(channel_);
  }

  grpc::Status CreateSession(const std::string& token, std::string* id) {
    v1::CreateSessionRequest request;
    request.mutable_token_ids()->add_ids(5);
    request.mutable_token_ids()->add_ids(6);
    v1::Session session;
    grpc::Status status = sessions_->CreateSession(Context(token).get(), request, &session);
    if (id != nullptr) *id = session.session_id();
    return status;
  }

  ScratchDir scratch_;
  std::string dir_;
  std::unique_ptr<MambaServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Generation::Stub> generation_;
  std::unique_ptr<v1::Sessions::Stub> sessions_;
  std::unique_ptr<v1::Models::Stub> models_;
};

TEST_F(AuthServerTest, EveryServiceRefusesCallsWithoutAValidToken) {
  for (const std::string token : {"", "not-a-known-token-at-all"}) {
    SCOPED_TRACE(token);
    const grpc::StatusCode want = grpc::StatusCode::UNAUTHENTICATED;
    v1::ModelInfo info;
    grpc::Status s = models_->GetModelInfo(Context(token).get(), {}, &info);
    EXPECT_EQ(s.error_code(), want);
    EXPECT_THAT(s.error_message(), Not(HasSubstr(token.empty() ? "\x01" : token)));
    v1::TokenizeRequest tokenize;
    tokenize.set_text("hi");
    v1::TokenizeResponse tokens;
    EXPECT_EQ(models_->Tokenize(Context(token).get(), tokenize, &tokens).error_code(), want);
    v1::ListSessionsResponse list;
    EXPECT_EQ(sessions_->ListSessions(Context(token).get(), {}, &list).error_code(), want);
    EXPECT_EQ(CreateSession(token, nullptr).error_code(), want);
    StreamResult stream = Generate(*generation_, GreedyRequest({1, 2}, 3), Context(token).get());
    EXPECT_EQ(stream.status.error_code(), want);
    EXPECT_TRUE(stream.responses.empty());
  }
  // Nothing was created on behalf of the refused calls.
  v1::ListSessionsResponse list;
  ASSERT_TRUE(sessions_->ListSessions(Context(kAlphaToken).get(), {}, &list).ok());
  EXPECT_EQ(list.total_size(), 0);
}

TEST_F(AuthServerTest, ValidTokensWorkAndHealthAndReflectionStayOpen) {
  v1::ModelInfo info;
  EXPECT_TRUE(models_->GetModelInfo(Context(kAlphaToken).get(), {}, &info).ok());
  StreamResult stream =
      Generate(*generation_, GreedyRequest({1, 2}, 3), Context(kBravoToken).get());
  EXPECT_TRUE(stream.status.ok()) << stream.status.error_message();
  EXPECT_EQ(stream.token_ids.size(), 3u);

  EXPECT_EQ(HealthStatus(channel_, ""), "SERVING");
  EXPECT_EQ(HealthStatus(channel_, "readiness"), "SERVING");
  // ServerReflectionInfo with list_services (field 7 = "") answers without a token.
  const std::string list_services("\x3a\x00", 2);
  MetadataCallResult reflection =
      CallWithMetadata(channel_, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                       list_services, {});
  EXPECT_TRUE(reflection.status.ok()) << reflection.status.error_message();
  EXPECT_EQ(reflection.responses, 1);
}

TEST_F(AuthServerTest, AnotherTenantsSessionIsNotFoundEverywhere) {
  std::string id;
  ASSERT_TRUE(CreateSession(kAlphaToken, &id).ok());
  // What an unknown id gets, for comparison: the owner's session must look exactly like it.
  const std::string unknown = "0123456789abcdef0123456789abcdef";
  v1::GetSessionRequest get_unknown;
  get_unknown.set_session_id(unknown);
  v1::Session session;
  grpc::Status unknown_status =
      sessions_->GetSession(Context(kBravoToken).get(), get_unknown, &session);
  ASSERT_EQ(unknown_status.error_code(), grpc::StatusCode::NOT_FOUND);
  auto as_unknown = [&](const grpc::Status& s) {
    EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
    std::string message = s.error_message();
    const size_t at = message.find(id);
    if (at != std::string::npos) message.replace(at, id.size(), unknown);
    EXPECT_EQ(message, unknown_status.error_message());
  };

  v1::GetSessionRequest get;
  get.set_session_id(id);
  as_unknown(sessions_->GetSession(Context(kBravoToken).get(), get, &session));
  v1::ForkSessionRequest fork;
  fork.set_session_id(id);
  as_unknown(sessions_->ForkSession(Context(kBravoToken).get(), fork, &session));
  v1::ExportSessionRequest export_request;
  export_request.set_session_id(id);
  v1::ExportSessionResponse exported;
  as_unknown(sessions_->ExportSession(Context(kBravoToken).get(), export_request, &exported));
  v1::CloseSessionRequest close;
  close.set_session_id(id);
  v1::CloseSessionResponse closed;
  as_unknown(sessions_->CloseSession(Context(kBravoToken).get(), close, &closed));
  StreamResult resumed =
      Generate(*generation_, GreedyRequest({7}, 2, id), Context(kBravoToken).get());
  as_unknown(resumed.status);

  // ListSessions shows each tenant only its own.
  v1::ListSessionsResponse list;
  ASSERT_TRUE(sessions_->ListSessions(Context(kBravoToken).get(), {}, &list).ok());
  EXPECT_EQ(list.sessions_size(), 0);
  EXPECT_EQ(list.total_size(), 0);
  ASSERT_TRUE(sessions_->ListSessions(Context(kAlphaToken).get(), {}, &list).ok());
  ASSERT_EQ(list.sessions_size(), 1);
  EXPECT_EQ(list.sessions(0).session_id(), id);

  // The owner's session went through all that untouched.
  ASSERT_TRUE(sessions_->GetSession(Context(kAlphaToken).get(), get, &session).ok());
  EXPECT_EQ(session.tokens(), 2);
  StreamResult own = Generate(*generation_, GreedyRequest({7}, 2, id), Context(kAlphaToken).get());
  EXPECT_TRUE(own.status.ok()) << own.status.error_message();

  // An import belongs to the importer: alpha exports, bravo imports, the copy is bravo's only.
  ASSERT_TRUE(sessions_->ExportSession(Context(kAlphaToken).get(), export_request, &exported).ok());
  v1::ImportSessionRequest import;
  import.set_state(exported.state());
  v1::Session imported;
  ASSERT_TRUE(sessions_->ImportSession(Context(kBravoToken).get(), import, &imported).ok());
  v1::GetSessionRequest get_imported;
  get_imported.set_session_id(imported.session_id());
  EXPECT_TRUE(sessions_->GetSession(Context(kBravoToken).get(), get_imported, &session).ok());
  EXPECT_EQ(sessions_->GetSession(Context(kAlphaToken).get(), get_imported, &session).error_code(),
            grpc::StatusCode::NOT_FOUND);
  ASSERT_TRUE(sessions_->CloseSession(Context(kAlphaToken).get(), close, &closed).ok());
}

TEST_F(AuthServerTest, PerTenantLimitsAreResourceExhaustedForThatTenantOnly) {
  for (int i = 0; i < kTenantMaxSessions; ++i)
    ASSERT_TRUE(CreateSession(kAlphaToken, nullptr).ok());
  grpc::Status over = CreateSession(kAlphaToken, nullptr);
  EXPECT_EQ(over.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << over.error_message();
  EXPECT_TRUE(CreateSession(kBravoToken, nullptr).ok());

  // Two endless streams fill alpha's running limit; a third is refused, bravo's is not.
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>>> readers;
  for (int i = 0; i < kTenantMaxRunning; ++i) {
    contexts.push_back(Context(kAlphaToken));
    readers.push_back(
        generation_->Generate(contexts.back().get(), GreedyRequest({1, 2}, kLongGeneration)));
    v1::GenerateResponse first;
    ASSERT_TRUE(readers.back()->Read(&first));
  }
  StreamResult third = Generate(*generation_, GreedyRequest({1}, 2), Context(kAlphaToken).get());
  EXPECT_EQ(third.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << third.status.error_message();
  StreamResult other = Generate(*generation_, GreedyRequest({1}, 2), Context(kBravoToken).get());
  EXPECT_TRUE(other.status.ok()) << other.status.error_message();
  for (auto& context : contexts) context->TryCancel();
  for (auto& reader : readers) {
    v1::GenerateResponse rest;
    while (reader->Read(&rest)) {
    }
    reader->Finish();
  }
}

// ---------------------------------------------------------------------------------------------
// TLS.

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(scratch_.path().empty());
    auto pki = MakeTestPki(scratch_.path());
    ASSERT_TRUE(pki.ok()) << pki.status();
    pki_ = *std::move(pki);
  }

  std::unique_ptr<MambaServer> StartTls(bool require_client_cert) {
    ServerOptions options = TinyServerOptions();
    options.tls.cert_file = pki_.server_cert;
    options.tls.key_file = pki_.server_key;
    if (require_client_cert) options.tls.client_ca_file = pki_.ca_cert;
    auto server = MambaServer::Start(std::move(options));
    EXPECT_TRUE(server.ok()) << server.status();
    if (!server.ok()) return nullptr;
    EXPECT_TRUE((*server)->LoadModel().ok());
    return *std::move(server);
  }

  // A TLS channel to `address` trusting the test CA, with a client certificate when given.
  std::shared_ptr<grpc::Channel> TlsChannel(const std::string& address, const std::string& cert,
                                            const std::string& key) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = ReadWholeFile(pki_.ca_cert);
    if (!cert.empty()) {
      ssl.pem_cert_chain = ReadWholeFile(cert);
      ssl.pem_private_key = ReadWholeFile(key);
    }
    grpc::ChannelArguments args;
    return grpc::CreateCustomChannel(address, grpc::SslCredentials(ssl), args);
  }

  // The code of a GetModelInfo call on `channel` (5 s deadline).
  grpc::StatusCode ModelInfoCode(const std::shared_ptr<grpc::Channel>& channel) {
    auto stub = v1::Models::NewStub(channel);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::ModelInfo info;
    return stub->GetModelInfo(&context, {}, &info).error_code();
  }

  ScratchDir scratch_;
  TestPki pki_;
};

TEST_F(TlsTest, TlsServerServesTlsClientsAndRefusesPlaintext) {
  auto server = StartTls(/*require_client_cert=*/false);
  ASSERT_NE(server, nullptr);
  EXPECT_TRUE(server->tls_enabled());
  EXPECT_EQ(ModelInfoCode(TlsChannel(server->address(), "", "")), grpc::StatusCode::OK);
  EXPECT_EQ(HealthStatus(TlsChannel(server->address(), "", ""), "readiness"), "SERVING");
  EXPECT_EQ(ModelInfoCode(Connect(server->address())), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsTest, ClientCertificatesAreRequiredAndVerifiedWithAClientCa) {
  auto server = StartTls(/*require_client_cert=*/true);
  ASSERT_NE(server, nullptr);
  const std::string address = server->address();
  EXPECT_EQ(ModelInfoCode(TlsChannel(address, pki_.client_cert, pki_.client_key)),
            grpc::StatusCode::OK);
  EXPECT_EQ(ModelInfoCode(TlsChannel(address, "", "")), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(ModelInfoCode(TlsChannel(address, pki_.rogue_client_cert, pki_.rogue_client_key)),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(ModelInfoCode(Connect(address)), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsTest, BadTlsFilesAreStartupErrorsNamingTheFlagAndFile) {
  struct Case {
    TlsFiles files;
    absl::StatusCode code;
    std::string message;
  };
  ScratchDir scratch;
  const std::string& dir = scratch.path();
  ASSERT_TRUE(WriteFile(dir + "/junk.pem", "not a certificate\n"));
  const std::vector<Case> cases = {
      {{pki_.server_cert, "", ""}, absl::StatusCode::kInvalidArgument, "--tls_key come together"},
      {{"", pki_.server_key, ""}, absl::StatusCode::kInvalidArgument, "--tls_key come together"},
      {{"", "", pki_.ca_cert}, absl::StatusCode::kInvalidArgument, "--tls_client_ca needs"},
      {{dir + "/absent.crt", pki_.server_key, ""},
       absl::StatusCode::kNotFound,
       "--tls_cert=" + dir + "/absent.crt cannot be read"},
      {{dir + "/junk.pem", pki_.server_key, ""},
       absl::StatusCode::kInvalidArgument,
       "--tls_cert=" + dir + "/junk.pem holds no PEM certificate"},
      {{pki_.server_cert, dir + "/junk.pem", ""},
       absl::StatusCode::kInvalidArgument,
       "--tls_key=" + dir + "/junk.pem holds no unencrypted PEM private key"},
      {{pki_.server_cert, pki_.client_key, ""},
       absl::StatusCode::kInvalidArgument,
       "does not match the certificate"},
      {{pki_.server_cert, pki_.server_key, dir + "/junk.pem"},
       absl::StatusCode::kInvalidArgument,
       "--tls_client_ca=" + dir + "/junk.pem holds no PEM certificate"},
  };
  for (const Case& c : cases) {
    ServerOptions options = TinyServerOptions();
    options.tls = c.files;
    auto server = MambaServer::Start(std::move(options));
    ASSERT_FALSE(server.ok()) << c.message;
    EXPECT_EQ(server.status().code(), c.code) << server.status();
    EXPECT_THAT(std::string(server.status().message()), HasSubstr(c.message));
  }
}

}  // namespace
}  // namespace mamba::server::testing
