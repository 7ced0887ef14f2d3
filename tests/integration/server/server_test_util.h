// Helpers for the service's integration tests: an in-process server on loopback, a real
// mamba-serve process, and small clients (streams, raw bytes, health checks).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/engine.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "mambaserve/v1/generation.grpc.pb.h"
#include "mambaserve/v1/models.grpc.pb.h"
#include "mambaserve/v1/sessions.grpc.pb.h"
#include "server/mamba_server.h"

namespace mamba::server::testing {

namespace v1 = ::mambaserve::v1;

// A generation that does not end by itself while a test runs (synthetic:tiny produces thousands
// of tokens a second): tests that cancel, drain or time out use it. The test servers allow it.
inline constexpr int kLongGeneration = 1000000;

// synthetic:tiny on the CPU backend, loopback, any free port, no metrics endpoint,
// --max_new_tokens=kLongGeneration.
ServerOptions TinyServerOptions();

// Everything one Generate stream carried.
struct StreamResult {
  grpc::Status status;
  std::vector<v1::GenerateResponse> responses;
  std::vector<int32_t> token_ids;
  std::string text;
  std::vector<v1::TokenLogprobs> logprobs;
  v1::FinishReason finish_reason = v1::FINISH_REASON_UNSPECIFIED;
  v1::Usage usage;
};

std::shared_ptr<grpc::Channel> Connect(const std::string& address);

// Runs a Generate call to the end (with `context` if given, else a 60 s deadline).
StreamResult Generate(v1::Generation::Stub& stub, const v1::GenerateRequest& request,
                      grpc::ClientContext* context = nullptr);

// A greedy request over token ids.
v1::GenerateRequest GreedyRequest(const std::vector<int32_t>& ids, int max_tokens,
                                  const std::string& session_id = "");

// Runs `request` directly on `engine` (no gRPC) and returns what it produced.
struct EngineRun {
  std::vector<int32_t> token_ids;
  std::string text;
  std::vector<TokenLogprobs> logprobs;
  GenerationResult result;
};
absl::StatusOr<EngineRun> RunOnEngine(Engine& engine, GenerationRequest request);

// Health check of `service`; the status name ("SERVING", ...) or the call's error code name.
std::string HealthStatus(const std::shared_ptr<grpc::Channel>& channel, const std::string& service);

// A raw call with `request` bytes to `method` ("/package.Service/Method"); collects the response
// messages' bytes and the status. Works for unary and streaming methods alike.
struct RawResult {
  grpc::Status status;
  std::vector<std::string> responses;
};
RawResult RawCall(const std::shared_ptr<grpc::Channel>& channel, const std::string& method,
                  const std::string& request, absl::Duration timeout = absl::Seconds(30));

// A mamba-serve process started with `args`, whose listening line has been read.
class ServerProcess {
 public:
  // Starts MAMBA_BIN_DIR/mamba-serve and waits (up to `timeout`) for its listening line.
  static absl::StatusOr<std::unique_ptr<ServerProcess>> Start(
      const std::vector<std::string>& args, absl::Duration timeout = absl::Seconds(60));
  ~ServerProcess();  // kills it if it is still running
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  const std::string& grpc_address() const { return grpc_address_; }
  const std::string& metrics_address() const { return metrics_address_; }
  // The HTTP API's "HOST:PORT" ("off" when started with --http_port=-1). Start adds
  // --http_port=0 unless `args` name a port.
  const std::string& http_address() const { return http_address_; }
  const std::string& listening_line() const { return line_; }
  int pid() const { return pid_; }
  void Signal(int sig);
  // Waits for the exit; the exit code, or -signal when killed, or an error on timeout.
  absl::StatusOr<int> Wait(absl::Duration timeout);
  // What the process wrote to stdout after the listening line (read at Wait).
  const std::string& rest_of_stdout() const { return rest_; }

 private:
  ServerProcess() = default;
  int pid_ = -1;
  int stdout_fd_ = -1;
  bool exited_ = false;
  std::string line_;
  std::string rest_;
  std::string grpc_address_;
  std::string metrics_address_;
  std::string http_address_;
};

// Runs a program to completion, capturing stdout and stderr.
struct ProgramResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};
ProgramResult RunProgram(const std::vector<std::string>& argv,
                         absl::Duration timeout = absl::Seconds(60));

}  // namespace mamba::server::testing
