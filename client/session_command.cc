// mamba-client session create|get|fork|close|list|export|import: manage sessions. --json prints
// each session as an object with "session_id"; plain mode prints the id (create, fork, import),
// the fields (get), or one line per session (list).
#include <sys/random.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "client/client_call.h"
#include "client/flag_values.h"
#include "client/subcommands.h"
#include "mambaserve/v1/sessions.grpc.pb.h"

ABSL_FLAG(int32_t, page_size, 0,
          "session list: sessions per page (1..1000); 0 = the server's default");
ABSL_FLAG(std::string, page_token, "", "session list: the next_page_token of a previous page");
ABSL_FLAG(std::string, out, "", "session export: file to write the state to");
ABSL_FLAG(std::string, in, "", "session import: file with a state from session export");

namespace mamba::client {
namespace {

namespace v1 = ::mambaserve::v1;
using nlohmann::json;

std::string Rfc3339(const google::protobuf::Timestamp& t) {
  const absl::Time time = absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", time, absl::UTCTimeZone());
}

const char* TierName(v1::StateTier tier) {
  switch (tier) {
    case v1::STATE_TIER_GPU:
      return "gpu";
    case v1::STATE_TIER_HOST:
      return "host";
    default:
      return "unspecified";
  }
}

json SessionJson(const v1::Session& s) {
  return {{"session_id", s.session_id()},
          {"tokens", s.tokens()},
          {"create_time", Rfc3339(s.create_time())},
          {"last_use_time", Rfc3339(s.last_use_time())},
          {"expire_time", Rfc3339(s.expire_time())},
          {"ttl_seconds", s.ttl_seconds()},
          {"tier", TierName(s.tier())},
          {"busy", s.busy()}};
}

void PrintSessionFields(const v1::Session& s) {
  std::printf(
      "session_id: %s\ntokens: %lld\ncreate_time: %s\nlast_use_time: %s\n"
      "expire_time: %s\nttl_seconds: %u\ntier: %s\nbusy: %s\n",
      s.session_id().c_str(), static_cast<long long>(s.tokens()), Rfc3339(s.create_time()).c_str(),
      Rfc3339(s.last_use_time()).c_str(), Rfc3339(s.expire_time()).c_str(), s.ttl_seconds(),
      TierName(s.tier()), s.busy() ? "true" : "false");
}

// create and fork print the new id alone in plain mode, so that scripts can capture it.
int PrintNewSession(const v1::Session& s) {
  if (JsonOutput()) {
    PrintJson(SessionJson(s));
  } else {
    std::printf("%s\n", s.session_id().c_str());
  }
  return kExitOk;
}

std::string RequiredSession(const char* action, int* exit_code) {
  const std::string id = absl::GetFlag(FLAGS_session);
  if (id.empty())
    *exit_code = ReportUsageError(absl::StrCat("session ", action, " needs --session=ID"));
  return id;
}

// A new session id drawn here, so that a session-affinity proxy can route the creation to the
// replica that will own the session: 128 bits from the kernel's CSPRNG, 32 lowercase hex digits.
absl::StatusOr<std::string> NewSessionId() {
  unsigned char bytes[16];
  size_t got = 0;
  while (got < sizeof bytes) {
    const ssize_t n = getrandom(bytes + got, sizeof bytes - got, 0);
    if (n < 0) return absl::UnavailableError("could not read random bytes for a session id");
    got += static_cast<size_t>(n);
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id;
  for (unsigned char b : bytes) {
    id.push_back(kHex[b >> 4]);
    id.push_back(kHex[b & 15]);
  }
  return id;
}

// --session, or a freshly drawn id.
absl::StatusOr<std::string> IdForNewSession() {
  const std::string chosen = absl::GetFlag(FLAGS_session);
  if (!chosen.empty()) return chosen;
  return NewSessionId();
}

int Create(v1::Sessions::Stub& stub) {
  v1::CreateSessionRequest request;
  absl::StatusOr<std::string> id = IdForNewSession();
  if (!id.ok()) return ReportUsageError(std::string(id.status().message()));
  request.set_session_id(*id);
  absl::StatusOr<PromptInput> input = PromptFromFlags();
  if (!input.ok()) return ReportUsageError(std::string(input.status().message()));
  if (input->kind == PromptInput::Kind::kText) request.set_text(input->text);
  if (input->kind == PromptInput::Kind::kIds) {
    request.mutable_token_ids()->mutable_ids()->Add(input->ids.begin(), input->ids.end());
  }
  request.set_ttl_seconds(absl::GetFlag(FLAGS_ttl_seconds));
  v1::Session session;
  auto context = NewContext(request.session_id());
  grpc::Status status = stub.CreateSession(context.get(), request, &session);
  if (!status.ok()) return ReportFailure(status);
  return PrintNewSession(session);
}

int Get(v1::Sessions::Stub& stub) {
  int exit_code = kExitOk;
  v1::GetSessionRequest request;
  request.set_session_id(RequiredSession("get", &exit_code));
  if (exit_code != kExitOk) return exit_code;
  v1::Session session;
  auto context = NewContext(request.session_id());
  grpc::Status status = stub.GetSession(context.get(), request, &session);
  if (!status.ok()) return ReportFailure(status);
  if (JsonOutput()) {
    PrintJson(SessionJson(session));
  } else {
    PrintSessionFields(session);
  }
  return kExitOk;
}

int Fork(v1::Sessions::Stub& stub) {
  int exit_code = kExitOk;
  v1::ForkSessionRequest request;
  request.set_session_id(RequiredSession("fork", &exit_code));
  if (exit_code != kExitOk) return exit_code;
  request.set_ttl_seconds(absl::GetFlag(FLAGS_ttl_seconds));
  v1::Session session;
  auto context = NewContext(request.session_id());
  grpc::Status status = stub.ForkSession(context.get(), request, &session);
  if (!status.ok()) return ReportFailure(status);
  return PrintNewSession(session);
}

int Close(v1::Sessions::Stub& stub) {
  int exit_code = kExitOk;
  v1::CloseSessionRequest request;
  request.set_session_id(RequiredSession("close", &exit_code));
  if (exit_code != kExitOk) return exit_code;
  v1::CloseSessionResponse response;
  auto context = NewContext(request.session_id());
  grpc::Status status = stub.CloseSession(context.get(), request, &response);
  if (!status.ok()) return ReportFailure(status);
  if (JsonOutput()) {
    PrintJson({{"session_id", request.session_id()}, {"closed", true}});
  } else {
    std::printf("closed %s\n", request.session_id().c_str());
  }
  return kExitOk;
}

int List(v1::Sessions::Stub& stub) {
  v1::ListSessionsRequest request;
  request.set_page_size(absl::GetFlag(FLAGS_page_size));
  request.set_page_token(absl::GetFlag(FLAGS_page_token));
  v1::ListSessionsResponse response;
  auto context = NewContext();
  grpc::Status status = stub.ListSessions(context.get(), request, &response);
  if (!status.ok()) return ReportFailure(status);
  if (JsonOutput()) {
    json sessions = json::array();
    for (const v1::Session& s : response.sessions()) sessions.push_back(SessionJson(s));
    PrintJson({{"sessions", std::move(sessions)},
               {"next_page_token", response.next_page_token()},
               {"total_size", response.total_size()}});
  } else {
    for (const v1::Session& s : response.sessions()) {
      std::printf("%s tokens=%lld tier=%s busy=%s expires=%s\n", s.session_id().c_str(),
                  static_cast<long long>(s.tokens()), TierName(s.tier()),
                  s.busy() ? "true" : "false", Rfc3339(s.expire_time()).c_str());
    }
    if (!response.next_page_token().empty()) {
      std::printf("next_page_token: %s\n", response.next_page_token().c_str());
    }
  }
  return kExitOk;
}

int Export(v1::Sessions::Stub& stub) {
  int exit_code = kExitOk;
  v1::ExportSessionRequest request;
  request.set_session_id(RequiredSession("export", &exit_code));
  if (exit_code != kExitOk) return exit_code;
  const std::string path = absl::GetFlag(FLAGS_out);
  if (path.empty()) return ReportUsageError("session export needs --out=FILE");
  v1::ExportSessionResponse response;
  auto context = NewContext(request.session_id());
  grpc::Status status = stub.ExportSession(context.get(), request, &response);
  if (!status.ok()) return ReportFailure(status);
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  file.write(response.state().data(), static_cast<std::streamsize>(response.state().size()));
  file.close();
  if (!file) return ReportUsageError(absl::StrCat("could not write ", path));
  if (JsonOutput()) {
    PrintJson({{"session_id", request.session_id()},
               {"model_identity", response.model_identity()},
               {"tokens", response.tokens()},
               {"bytes", response.state().size()},
               {"out", path}});
  } else {
    std::printf("exported %s (%zu bytes, %lld tokens) to %s\n", request.session_id().c_str(),
                response.state().size(), static_cast<long long>(response.tokens()), path.c_str());
  }
  return kExitOk;
}

int Import(v1::Sessions::Stub& stub) {
  const std::string path = absl::GetFlag(FLAGS_in);
  if (path.empty()) return ReportUsageError("session import needs --in=FILE");
  std::ifstream file(path, std::ios::binary);
  if (!file) return ReportUsageError(absl::StrCat("could not read ", path));
  std::stringstream bytes;
  bytes << file.rdbuf();
  v1::ImportSessionRequest request;
  request.set_state(bytes.str());
  request.set_ttl_seconds(absl::GetFlag(FLAGS_ttl_seconds));
  // Without --session the server picks a new id (and a proxy, any replica).
  request.set_session_id(absl::GetFlag(FLAGS_session));
  v1::Session session;
  auto context = NewContext(request.session_id());
  grpc::Status status = stub.ImportSession(context.get(), request, &session);
  if (!status.ok()) return ReportFailure(status);
  return PrintNewSession(session);
}

}  // namespace

int RunSession(const Args& args) {
  constexpr char kActions[] = "create | get | fork | close | list | export | import";
  if (args.size() != 1) {
    return ReportUsageError(absl::StrCat("session needs one action: ", kActions));
  }
  auto stub = v1::Sessions::NewStub(OpenChannel());
  const std::string& action = args[0];
  if (action == "create") return Create(*stub);
  if (action == "get") return Get(*stub);
  if (action == "fork") return Fork(*stub);
  if (action == "close") return Close(*stub);
  if (action == "list") return List(*stub);
  if (action == "export") return Export(*stub);
  if (action == "import") return Import(*stub);
  return ReportUsageError(absl::StrCat("unknown session action '", action, "'; use ", kActions));
}

}  // namespace mamba::client
