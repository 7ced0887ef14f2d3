// The real binaries: mamba-serve's listening line, flags, signals and exit codes, and
// mamba-client's output shapes and errors (the public contract the README documents).
#include <signal.h>

#include <regex>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/generic/async_generic_service.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/server/server_test_util.h"

namespace mamba::server::testing {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

const std::vector<std::string> kTinyArgs = {"--model=synthetic:tiny",
                                            "--backend=cpu",
                                            "--cpu_threads=1",
                                            "--host=127.0.0.1",
                                            "--port=0",
                                            "--metrics_port=0",
                                            "--log_level=warning",
                                            absl::StrCat("--max_new_tokens=", kLongGeneration)};

std::vector<std::string> With(std::vector<std::string> args,
                              std::initializer_list<std::string> more) {
  args.insert(args.end(), more.begin(), more.end());
  return args;
}

TEST(ServeProcessTest, PrintsOneListeningLineAndDrainsOnSigterm) {
  auto process = ServerProcess::Start(With(kTinyArgs, {"--drain_seconds=1"}));
  ASSERT_TRUE(process.ok()) << process.status();
  ServerProcess& p = **process;
  EXPECT_TRUE(std::regex_match(
      p.listening_line(),
      std::regex(R"(mamba-serve listening grpc=127\.0\.0\.1:\d+ metrics=127\.0\.0\.1:\d+ )"
                 R"(http=127\.0\.0\.1:\d+)")))
      << p.listening_line();
  auto channel = Connect(p.grpc_address());
  EXPECT_EQ(HealthStatus(channel, "readiness"), "SERVING");
  auto generation = v1::Generation::NewStub(channel);

  grpc::ClientContext context;
  auto reader = generation->Generate(&context, GreedyRequest({1, 2, 3}, kLongGeneration));
  v1::GenerateResponse response;
  ASSERT_TRUE(reader->Read(&response));
  p.Signal(SIGTERM);
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_EQ(HealthStatus(channel, "readiness"), "NOT_SERVING");
  StreamResult refused = Generate(*generation, GreedyRequest({1}, 2));
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(refused.status.error_message(), HasSubstr("shutting down"));

  v1::GenerateResponse last;
  while (reader->Read(&response)) last = response;
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_EQ(last.finish_reason(), v1::FINISH_REASON_CANCELLED);

  absl::StatusOr<int> exit_code = p.Wait(absl::Seconds(30));
  ASSERT_TRUE(exit_code.ok()) << exit_code.status();
  EXPECT_EQ(*exit_code, 0);
  EXPECT_EQ(p.rest_of_stdout(), "");  // exactly one line on stdout
}

TEST(ServeProcessTest, SigintWhenIdleExitsCleanly) {
  auto process = ServerProcess::Start(kTinyArgs);
  ASSERT_TRUE(process.ok()) << process.status();
  const absl::Time start = absl::Now();
  (*process)->Signal(SIGINT);
  absl::StatusOr<int> exit_code = (*process)->Wait(absl::Seconds(30));
  ASSERT_TRUE(exit_code.ok()) << exit_code.status();
  EXPECT_EQ(*exit_code, 0);
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
}

TEST(ServeProcessTest, BadFlagsAreRejectedWithTheAllowedValues) {
  const std::string serve = std::string(MAMBA_BIN_DIR) + "/mamba-serve";
  ProgramResult backend = RunProgram({serve, "--backend=tpu"});
  EXPECT_EQ(backend.exit_code, 2);
  EXPECT_THAT(backend.err, HasSubstr("--backend=tpu"));
  EXPECT_THAT(backend.err, HasSubstr("auto | cpu | cuda"));
  ProgramResult port = RunProgram({serve, "--port=70000"});
  EXPECT_EQ(port.exit_code, 2);
  EXPECT_THAT(port.err, HasSubstr("65535"));
  ProgramResult level = RunProgram({serve, "--log_level=loud"});
  EXPECT_EQ(level.exit_code, 2);
  // Every usage error exits 2 with a line naming the flag: unknown flags, values that do not
  // parse, and numbers out of range (inf, NaN, 0 where a queue needs room).
  for (const auto& [arg, message] : std::vector<std::pair<std::string, std::string>>{
           {"--no_such_flag=1", "unknown flag --no_such_flag"},
           {"--port=abc", "--port=abc"},
           {"--max_running=99999999999", "--max_running"},
           {"--host_state_memory_gb=inf", "--host_state_memory_gb=inf"},
           {"--host_state_memory_gb=nan", "--host_state_memory_gb=nan"},
           {"--host_state_memory_gb=1e300", "out of range"},
           {"--gpu_memory_fraction=nan", "--gpu_memory_fraction"},
           {"--max_queue=0", "--max_queue=0"},
           {"--prompt_threads=0", "allowed: 1 to 1024"},
           {"--stream_threads=1000000", "allowed: 0 to 1024"},
           {"--cpu_threads=-1", "--cpu_threads=-1"}}) {
    SCOPED_TRACE(arg);
    ProgramResult bad = RunProgram({serve, arg});
    EXPECT_EQ(bad.exit_code, 2);
    EXPECT_THAT(bad.err, HasSubstr(message));
  }
  // --help lists the server's own flags with their defaults and help, not Abseil's.
  ProgramResult help = RunProgram({serve, "--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_THAT(help.out, HasSubstr("--max_running=256"));
  EXPECT_THAT(help.out, HasSubstr("--session_key_file="));
  EXPECT_THAT(help.out, HasSubstr("Sequences advanced together"));
  EXPECT_THAT(help.out, Not(HasSubstr("No flags matched")));
  EXPECT_THAT(help.out, Not(HasSubstr("--flagfile")));
  ProgramResult model = RunProgram(
      {serve, "--model=synthetic:nope", "--port=0", "--metrics_port=-1", "--host=127.0.0.1"});
  EXPECT_EQ(model.exit_code, 1);
  EXPECT_THAT(model.err, HasSubstr("could not load the model"));
  EXPECT_EQ(model.out, "");  // never claims to listen
}

TEST(ServeProcessTest, WithoutMetricsAndHttpPortsTheLineSaysOff) {
  auto process =
      ServerProcess::Start({"--model=synthetic:tiny", "--backend=cpu", "--host=127.0.0.1",
                            "--port=0", "--metrics_port=-1", "--http_port=-1",
                            "--drain_seconds=0"});
  ASSERT_TRUE(process.ok()) << process.status();
  EXPECT_TRUE(
      std::regex_match((*process)->listening_line(),
                       std::regex(R"(mamba-serve listening grpc=127\.0\.0\.1:\d+ metrics=off http=off)")))
      << (*process)->listening_line();
}

TEST(ServeProcessTest, PortInUseFails) {
  auto first = ServerProcess::Start(kTinyArgs);
  ASSERT_TRUE(first.ok()) << first.status();
  const std::string port = (*first)->grpc_address().substr((*first)->grpc_address().find(':') + 1);
  ProgramResult second =
      RunProgram({std::string(MAMBA_BIN_DIR) + "/mamba-serve", "--model=synthetic:tiny",
                  "--host=127.0.0.1", "--port=" + port, "--metrics_port=0"});
  EXPECT_EQ(second.exit_code, 1);
  EXPECT_THAT(second.err, HasSubstr("could not listen"));
}

class ClientCliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto process = ServerProcess::Start(kTinyArgs);
    ASSERT_TRUE(process.ok()) << process.status();
    server_ = process->release();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }

  static ProgramResult Client(std::vector<std::string> args) {
    std::vector<std::string> argv = {std::string(MAMBA_BIN_DIR) + "/mamba-client"};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back("--addr=" + server_->grpc_address());
    return RunProgram(argv);
  }

  static std::vector<json> JsonLines(const std::string& out) {
    std::vector<json> lines;
    for (absl::string_view line : absl::StrSplit(out, '\n', absl::SkipEmpty())) {
      lines.push_back(json::parse(std::string(line)));
    }
    return lines;
  }

  static ServerProcess* server_;
};

ServerProcess* ClientCliTest::server_ = nullptr;

TEST_F(ClientCliTest, GeneratePlainStreamsText) {
  ProgramResult r = Client({"generate", "--prompt=Hello", "--max_tokens=8"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(r.out.empty());
  EXPECT_THAT(r.err, HasSubstr("finish_reason=length"));
}

TEST_F(ClientCliTest, GenerateJsonLinesAndSummary) {
  ProgramResult r =
      Client({"generate", "--prompt_ids=72,105", "--max_tokens=5", "--logprobs=2", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<json> lines = JsonLines(r.out);
  ASSERT_GE(lines.size(), 2u);
  std::vector<int> streamed;
  for (size_t i = 0; i + 1 < lines.size(); ++i) {
    ASSERT_TRUE(lines[i].contains("token_ids"));
    ASSERT_TRUE(lines[i].contains("text"));
    for (int id : lines[i]["token_ids"]) streamed.push_back(id);
  }
  const json& summary = lines.back();
  EXPECT_EQ(summary["token_ids"].get<std::vector<int>>(), streamed);
  EXPECT_EQ(summary["finish_reason"], "length");
  EXPECT_EQ(summary["usage"]["generated_tokens"], 5);
  EXPECT_EQ(summary["usage"]["prompt_tokens"], 2);
  EXPECT_EQ(summary["usage"]["cached_tokens"], 0);
  EXPECT_TRUE(summary["text"].is_string());
  ASSERT_EQ(summary["logprobs"].size(), 5u);
  const json& lp = summary["logprobs"][0];
  EXPECT_EQ(lp["token_id"], streamed[0]);
  EXPECT_TRUE(lp["logprob"].is_number());
  ASSERT_EQ(lp["top"].size(), 2u);
  EXPECT_TRUE(lp["top"][0].contains("token_id"));
  EXPECT_TRUE(lp["top"][0].contains("logprob"));

  // Without --logprobs the summary has no logprobs.
  ProgramResult plain = Client({"generate", "--prompt=x", "--max_tokens=2", "--json"});
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  EXPECT_FALSE(JsonLines(plain.out).back().contains("logprobs"));
}

TEST_F(ClientCliTest, SessionSubcommands) {
  ProgramResult created = Client({"session", "create", "--prompt=abc", "--json"});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  const json session = JsonLines(created.out).at(0);
  const std::string id = session["session_id"];
  EXPECT_EQ(id.size(), 32u);
  EXPECT_EQ(session["tokens"], 3);

  ProgramResult turn =
      Client({"generate", "--session=" + id, "--prompt=d", "--max_tokens=4", "--json"});
  ASSERT_EQ(turn.exit_code, 0) << turn.err;
  EXPECT_EQ(JsonLines(turn.out).back()["usage"]["cached_tokens"], 3);

  ProgramResult got = Client({"session", "get", "--session=" + id, "--json"});
  ASSERT_EQ(got.exit_code, 0) << got.err;
  EXPECT_EQ(JsonLines(got.out).at(0)["session_id"], id);
  EXPECT_EQ(JsonLines(got.out).at(0)["tokens"], 8);

  ProgramResult forked = Client({"session", "fork", "--session=" + id, "--json"});
  ASSERT_EQ(forked.exit_code, 0) << forked.err;
  const std::string child = JsonLines(forked.out).at(0)["session_id"];
  EXPECT_NE(child, id);

  ProgramResult listed = Client({"session", "list", "--json"});
  ASSERT_EQ(listed.exit_code, 0) << listed.err;
  std::set<std::string> ids;
  const json listing = JsonLines(listed.out).at(0);
  for (const json& s : listing["sessions"]) {
    ids.insert(s["session_id"].get<std::string>());
  }
  EXPECT_TRUE(ids.count(id) && ids.count(child)) << listed.out;

  // Plain create prints the id alone, for scripts.
  ProgramResult plain = Client({"session", "create"});
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  EXPECT_TRUE(std::regex_match(plain.out, std::regex("[0-9a-f]{32}\n"))) << plain.out;

  ProgramResult closed = Client({"session", "close", "--session=" + id, "--json"});
  ASSERT_EQ(closed.exit_code, 0) << closed.err;
  EXPECT_EQ(JsonLines(closed.out).at(0)["session_id"], id);
  ProgramResult gone = Client({"session", "get", "--session=" + id});
  EXPECT_EQ(gone.exit_code, 1);
  EXPECT_THAT(gone.err, StartsWith("NOT_FOUND: "));

  ProgramResult usage = Client({"session", "rename"});
  EXPECT_EQ(usage.exit_code, 2);
  EXPECT_THAT(usage.err, HasSubstr("create | get | fork | close | list | export | import"));

  // A chosen id on create.
  const std::string chosen = "abcdefabcdefabcdefabcdefabcdef01";
  ProgramResult with_id = Client({"session", "create", "--session=" + chosen});
  ASSERT_EQ(with_id.exit_code, 0) << with_id.err;
  EXPECT_EQ(with_id.out, chosen + "\n");
}

TEST_F(ClientCliTest, SessionExportAndImport) {
  ProgramResult created = Client({"session", "create", "--prompt=hello"});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  const std::string id = created.out.substr(0, 32);
  const std::string file = ::testing::TempDir() + "/session_" + id + ".state";
  ProgramResult exported =
      Client({"session", "export", "--session=" + id, "--out=" + file, "--json"});
  ASSERT_EQ(exported.exit_code, 0) << exported.err;
  const json summary = JsonLines(exported.out).at(0);
  EXPECT_EQ(summary["session_id"], id);
  EXPECT_EQ(summary["tokens"], 5);
  EXPECT_GT(summary["bytes"].get<int64_t>(), 0);

  ProgramResult imported = Client({"session", "import", "--in=" + file, "--json"});
  ASSERT_EQ(imported.exit_code, 0) << imported.err;
  const std::string copy = JsonLines(imported.out).at(0)["session_id"];
  EXPECT_NE(copy, id);
  EXPECT_EQ(JsonLines(imported.out).at(0)["tokens"], 5);

  // Both continue identically.
  ProgramResult a =
      Client({"generate", "--session=" + id, "--prompt=!", "--max_tokens=6", "--json"});
  ProgramResult b =
      Client({"generate", "--session=" + copy, "--prompt=!", "--max_tokens=6", "--json"});
  ASSERT_EQ(a.exit_code, 0) << a.err;
  ASSERT_EQ(b.exit_code, 0) << b.err;
  EXPECT_EQ(JsonLines(a.out).back()["token_ids"], JsonLines(b.out).back()["token_ids"]);

  ProgramResult missing = Client({"session", "import", "--in=" + file + ".missing"});
  EXPECT_EQ(missing.exit_code, 2);
}

TEST_F(ClientCliTest, TokenizeDetokenizeInfoHealth) {
  ProgramResult tokens = Client({"tokenize", "--text=hé", "--json"});
  ASSERT_EQ(tokens.exit_code, 0) << tokens.err;
  EXPECT_EQ(JsonLines(tokens.out).at(0), json::parse(R"({"ids": [104, 195, 169]})"));
  ProgramResult plain_tokens = Client({"tokenize", "--text=hé"});
  EXPECT_EQ(plain_tokens.out, "104,195,169\n");

  ProgramResult text = Client({"detokenize", "--ids=104,195,169", "--json"});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_EQ(JsonLines(text.out).at(0), json::parse(R"({"text": "hé"})"));

  ProgramResult info = Client({"info", "--json"});
  ASSERT_EQ(info.exit_code, 0) << info.err;
  const json model = JsonLines(info.out).at(0);
  EXPECT_EQ(model["architecture"], "mamba");
  EXPECT_EQ(model["vocab_size"], 257);
  EXPECT_EQ(model["backend"], "cpu");

  ProgramResult health = Client({"health"});
  EXPECT_EQ(health.exit_code, 0);
  EXPECT_EQ(health.out, "SERVING\n");
  ProgramResult readiness = Client({"health", "--service=readiness", "--json"});
  EXPECT_EQ(JsonLines(readiness.out).at(0)["status"], "SERVING");
  ProgramResult unknown = Client({"health", "--service=nope"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_THAT(unknown.err, StartsWith("NOT_FOUND"));
}

TEST_F(ClientCliTest, FailedCallsPrintTheCodeNameAndExitNonZero) {
  ProgramResult bad = Client({"generate", "--prompt=x", "--temperature=-2"});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_THAT(bad.err, StartsWith("INVALID_ARGUMENT: "));
  EXPECT_THAT(bad.err, HasSubstr("temperature"));
  ProgramResult zero = Client({"generate", "--prompt=x", "--max_tokens=0"});
  EXPECT_EQ(zero.exit_code, 1);
  EXPECT_THAT(zero.err, StartsWith("INVALID_ARGUMENT: "));
  ProgramResult missing = Client({"generate"});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_THAT(missing.err, HasSubstr("--prompt"));
  ProgramResult unknown = Client({"frobnicate"});
  EXPECT_EQ(unknown.exit_code, 2);
  ProgramResult flag = Client({"info", "--no_such_flag"});
  EXPECT_EQ(flag.exit_code, 2);
  EXPECT_THAT(flag.err, HasSubstr("unknown flag --no_such_flag"));
  ProgramResult value = Client({"generate", "--prompt=x", "--max_tokens=lots"});
  EXPECT_EQ(value.exit_code, 2);
  EXPECT_THAT(value.err, HasSubstr("--max_tokens=lots"));
  ProgramResult help = RunProgram({std::string(MAMBA_BIN_DIR) + "/mamba-client", "--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_THAT(help.out, HasSubstr("--addr="));
  EXPECT_THAT(help.out, HasSubstr("generate"));
  ProgramResult unreachable = RunProgram({std::string(MAMBA_BIN_DIR) + "/mamba-client", "info",
                                          "--addr=127.0.0.1:1", "--timeout_seconds=5"});
  EXPECT_EQ(unreachable.exit_code, 1);
  EXPECT_THAT(unreachable.err, StartsWith("UNAVAILABLE"));
  ProgramResult deadline =
      Client({"generate", "--prompt=x", absl::StrCat("--max_tokens=", kLongGeneration),
              "--timeout_seconds=0.3"});
  EXPECT_EQ(deadline.exit_code, 1);
  EXPECT_THAT(deadline.err, HasSubstr("DEADLINE_EXCEEDED"));
}

// The client sends the session id as metadata too, for session-affinity proxies. A generic
// server records what arrives and refuses every call.
class MetadataRecorder {
 public:
  MetadataRecorder() {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterCallbackGenericService(&service_);
    server_ = builder.BuildAndStart();
  }
  ~MetadataRecorder() { server_->Shutdown(); }
  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }
  std::vector<std::string> session_ids() {
    absl::MutexLock lock(&service_.mu);
    return service_.session_ids;
  }

 private:
  struct Service : grpc::CallbackGenericService {
    grpc::ServerGenericBidiReactor* CreateReactor(
        grpc::GenericCallbackServerContext* context) override {
      {
        absl::MutexLock lock(&mu);
        auto it = context->client_metadata().find("x-session-id");
        session_ids.push_back(it == context->client_metadata().end()
                                  ? ""
                                  : std::string(it->second.data(), it->second.size()));
      }
      struct Refuse : grpc::ServerGenericBidiReactor {
        Refuse() { Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "recorder")); }
        void OnDone() override { delete this; }
      };
      return new Refuse();
    }
    absl::Mutex mu;
    std::vector<std::string> session_ids;
  };
  Service service_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

TEST(ClientMetadataTest, SessionIdTravelsAsMetadata) {
  MetadataRecorder recorder;
  const std::string client = std::string(MAMBA_BIN_DIR) + "/mamba-client";
  const std::string id = "0123456789abcdef0123456789abcdef";
  const std::string addr = "--addr=" + recorder.address();
  EXPECT_EQ(RunProgram({client, "generate", "--prompt=x", "--session=" + id, addr}).exit_code, 1);
  EXPECT_EQ(RunProgram({client, "session", "get", "--session=" + id, addr}).exit_code, 1);
  EXPECT_EQ(RunProgram({client, "session", "fork", "--session=" + id, addr}).exit_code, 1);
  EXPECT_EQ(RunProgram({client, "session", "close", "--session=" + id, addr}).exit_code, 1);
  ProgramResult stateless = RunProgram({client, "generate", "--prompt=x", addr});
  EXPECT_THAT(stateless.err, StartsWith("UNIMPLEMENTED: recorder"));
  // A new session's id is drawn by the client, so that the proxy can route its creation.
  EXPECT_EQ(RunProgram({client, "session", "create", addr}).exit_code, 1);
  EXPECT_EQ(RunProgram({client, "session", "create", addr}).exit_code, 1);
  const std::vector<std::string> seen = recorder.session_ids();
  ASSERT_EQ(seen.size(), 7u);
  EXPECT_EQ(std::vector<std::string>(seen.begin(), seen.begin() + 5),
            (std::vector<std::string>{id, id, id, id, ""}));
  EXPECT_TRUE(std::regex_match(seen[5], std::regex("[0-9a-f]{32}"))) << seen[5];
  EXPECT_TRUE(std::regex_match(seen[6], std::regex("[0-9a-f]{32}"))) << seen[6];
  EXPECT_NE(seen[5], seen[6]);
}

}  // namespace
}  // namespace mamba::server::testing
