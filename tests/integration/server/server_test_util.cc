#include "tests/integration/server/server_test_util.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"

extern char** environ;

namespace mamba::server::testing {

ServerOptions TinyServerOptions() {
  ServerOptions o;
  o.host = "127.0.0.1";
  o.port = 0;
  o.metrics_port = -1;
  o.http_port = -1;
  o.limits.max_prompt_tokens = 2048;
  o.limits.max_new_tokens = kLongGeneration;
  o.drain_timeout = absl::Seconds(5);
  o.engine.model = "synthetic:tiny";
  o.engine.backend.kind = "cpu";
  o.engine.seed = 1;
  // One CPU thread: these tests are about the service, and the machines that run them are small.
  o.engine.backend.cpu_threads = 1;
  return o;
}

std::shared_ptr<grpc::Channel> Connect(const std::string& address) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
}

StreamResult Generate(v1::Generation::Stub& stub, const v1::GenerateRequest& request,
                      grpc::ClientContext* context) {
  grpc::ClientContext own;
  if (context == nullptr) {
    own.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    context = &own;
  }
  StreamResult result;
  std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader =
      stub.Generate(context, request);
  v1::GenerateResponse response;
  while (reader->Read(&response)) {
    result.token_ids.insert(result.token_ids.end(), response.token_ids().begin(),
                            response.token_ids().end());
    result.text += response.text();
    result.logprobs.insert(result.logprobs.end(), response.logprobs().begin(),
                           response.logprobs().end());
    if (response.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
      result.finish_reason = response.finish_reason();
      result.usage = response.usage();
    }
    result.responses.push_back(response);
  }
  result.status = reader->Finish();
  return result;
}

v1::GenerateRequest GreedyRequest(const std::vector<int32_t>& ids, int max_tokens,
                                  const std::string& session_id) {
  v1::GenerateRequest r;
  r.mutable_token_ids()->mutable_ids()->Add(ids.begin(), ids.end());
  r.mutable_stopping()->set_max_tokens(max_tokens);
  r.mutable_stopping()->set_ignore_eos(true);
  r.set_session_id(session_id);
  return r;
}

absl::StatusOr<EngineRun> RunOnEngine(Engine& engine, GenerationRequest request) {
  struct Signal {
    std::mutex mu;
    std::condition_variable cv;
    bool ready = false;
  };
  auto signal = std::make_shared<Signal>();
  absl::StatusOr<std::shared_ptr<GenerationStream>> stream =
      engine.Submit(std::move(request), [signal] {
        std::lock_guard<std::mutex> lock(signal->mu);
        signal->ready = true;
        signal->cv.notify_all();
      });
  if (!stream.ok()) return stream.status();
  EngineRun run;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (true) {
    GenerationChunk chunk;
    if ((*stream)->Read(&chunk)) {
      run.token_ids.insert(run.token_ids.end(), chunk.token_ids.begin(), chunk.token_ids.end());
      run.text += chunk.text;
      run.logprobs.insert(run.logprobs.end(), chunk.logprobs.begin(), chunk.logprobs.end());
      if (chunk.finished) {
        run.result = chunk.result;
        return run;
      }
      continue;
    }
    std::unique_lock<std::mutex> lock(signal->mu);
    if (!signal->cv.wait_until(lock, deadline, [&] { return signal->ready; })) {
      (*stream)->Cancel();
      return absl::DeadlineExceededError("the engine did not finish within 120 s");
    }
    signal->ready = false;
  }
}

std::string HealthStatus(const std::shared_ptr<grpc::Channel>& channel,
                         const std::string& service) {
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  grpc::Status status = stub->Check(&context, request, &response);
  if (!status.ok()) {
    return absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code()));
  }
  return grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status());
}

RawResult RawCall(const std::shared_ptr<grpc::Channel>& channel, const std::string& method,
                  const std::string& request, absl::Duration timeout) {
  RawResult result;
  grpc::GenericStub stub(channel);
  grpc::CompletionQueue cq;
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
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
      std::vector<grpc::Slice> slices;
      (void)in.Dump(&slices);
      std::string bytes;
      for (const grpc::Slice& s : slices) {
        bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
      }
      result.responses.push_back(std::move(bytes));
    }
  }
  call->Finish(&result.status, reinterpret_cast<void*>(5));
  step(5);
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  return result;
}

namespace {

absl::StatusOr<std::string> ParseAddress(const std::string& line, const std::string& key) {
  for (absl::string_view field : absl::StrSplit(line, ' ')) {
    if (absl::StartsWith(field, key + "=")) {
      std::string address(field.substr(key.size() + 1));
      // Connect through loopback when the server bound every interface.
      if (absl::StartsWith(address, "0.0.0.0:")) address = "127.0.0.1" + address.substr(7);
      return address;
    }
  }
  return absl::NotFoundError(absl::StrCat("no ", key, "= in '", line, "'"));
}

struct Spawned {
  int pid = -1;
  int out_fd = -1;
  int err_fd = -1;  // -1 when stderr is inherited
};

absl::StatusOr<Spawned> Spawn(const std::vector<std::string>& argv, bool capture_stderr) {
  int out_pipe[2];
  int err_pipe[2] = {-1, -1};
  if (pipe(out_pipe) != 0) return absl::InternalError("pipe failed");
  if (capture_stderr && pipe(err_pipe) != 0) return absl::InternalError("pipe failed");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], 1);
  posix_spawn_file_actions_addclose(&actions, out_pipe[0]);
  posix_spawn_file_actions_addclose(&actions, out_pipe[1]);
  if (capture_stderr) {
    posix_spawn_file_actions_adddup2(&actions, err_pipe[1], 2);
    posix_spawn_file_actions_addclose(&actions, err_pipe[0]);
    posix_spawn_file_actions_addclose(&actions, err_pipe[1]);
  }
  // The child starts with no signals blocked and default dispositions, whatever this test's
  // threads have set up.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t empty, all;
  sigemptyset(&empty);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &empty);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  Spawned s;
  const int rc = posix_spawn(&s.pid, args[0], &actions, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  close(out_pipe[1]);
  if (capture_stderr) close(err_pipe[1]);
  if (rc != 0) {
    close(out_pipe[0]);
    if (capture_stderr) close(err_pipe[0]);
    return absl::InternalError(absl::StrCat("could not start ", argv[0], ": error ", rc));
  }
  s.out_fd = out_pipe[0];
  s.err_fd = err_pipe[0];
  return s;
}

// Reads what is available on `fd` into `out`; false at end of file.
bool ReadSome(int fd, std::string* out) {
  char buf[4096];
  const ssize_t n = read(fd, buf, sizeof buf);
  if (n <= 0) return false;
  out->append(buf, static_cast<size_t>(n));
  return true;
}

int DecodeWaitStatus(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return -WTERMSIG(status);
  return -1000;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ServerProcess>> ServerProcess::Start(
    const std::vector<std::string>& args, absl::Duration timeout) {
  std::vector<std::string> argv = {std::string(MAMBA_BIN_DIR) + "/mamba-serve"};
  argv.insert(argv.end(), args.begin(), args.end());
  // The HTTP API's default port (8000) would collide between tests running side by side.
  if (std::none_of(args.begin(), args.end(),
                   [](const std::string& a) { return absl::StartsWith(a, "--http_port"); })) {
    argv.push_back("--http_port=0");
  }
  absl::StatusOr<Spawned> spawned = Spawn(argv, /*capture_stderr=*/false);
  if (!spawned.ok()) return spawned.status();
  std::unique_ptr<ServerProcess> p(new ServerProcess());
  p->pid_ = spawned->pid;
  p->stdout_fd_ = spawned->out_fd;
  const absl::Time deadline = absl::Now() + timeout;
  std::string buffer;
  while (buffer.find('\n') == std::string::npos) {
    const int wait_ms =
        static_cast<int>(std::max<int64_t>(0, absl::ToInt64Milliseconds(deadline - absl::Now())));
    pollfd pfd = {p->stdout_fd_, POLLIN, 0};
    if (wait_ms == 0 || poll(&pfd, 1, wait_ms) <= 0) {
      return absl::DeadlineExceededError("mamba-serve printed no listening line in time");
    }
    if (!ReadSome(p->stdout_fd_, &buffer)) {
      return absl::InternalError(
          absl::StrCat("mamba-serve exited before listening; stdout: '", buffer, "'"));
    }
  }
  const size_t nl = buffer.find('\n');
  p->line_ = buffer.substr(0, nl);
  p->rest_ = buffer.substr(nl + 1);
  if (!absl::StartsWith(p->line_, "mamba-serve listening ")) {
    return absl::InternalError(absl::StrCat("unexpected first line: '", p->line_, "'"));
  }
  absl::StatusOr<std::string> grpc = ParseAddress(p->line_, "grpc");
  if (!grpc.ok()) return grpc.status();
  absl::StatusOr<std::string> metrics = ParseAddress(p->line_, "metrics");
  if (!metrics.ok()) return metrics.status();
  absl::StatusOr<std::string> http = ParseAddress(p->line_, "http");
  if (!http.ok()) return http.status();
  p->grpc_address_ = *grpc;
  p->metrics_address_ = *metrics;
  p->http_address_ = *http;
  return p;
}

ServerProcess::~ServerProcess() {
  if (!exited_ && pid_ > 0) {
    kill(pid_, SIGKILL);
    int status;
    waitpid(pid_, &status, 0);
  }
  if (stdout_fd_ >= 0) close(stdout_fd_);
}

void ServerProcess::Signal(int sig) {
  if (!exited_) kill(pid_, sig);
}

absl::StatusOr<int> ServerProcess::Wait(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    int status;
    const pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exited_ = true;
      while (ReadSome(stdout_fd_, &rest_)) {
      }
      return DecodeWaitStatus(status);
    }
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError("mamba-serve did not exit in time");
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
}

ProgramResult RunProgram(const std::vector<std::string>& argv, absl::Duration timeout) {
  ProgramResult result;
  absl::StatusOr<Spawned> spawned = Spawn(argv, /*capture_stderr=*/true);
  if (!spawned.ok()) {
    result.err = std::string(spawned.status().message());
    return result;
  }
  const absl::Time deadline = absl::Now() + timeout;
  bool out_open = true, err_open = true;
  while (out_open || err_open) {
    pollfd fds[2] = {{out_open ? spawned->out_fd : -1, POLLIN, 0},
                     {err_open ? spawned->err_fd : -1, POLLIN, 0}};
    const int wait_ms =
        static_cast<int>(std::max<int64_t>(0, absl::ToInt64Milliseconds(deadline - absl::Now())));
    if (wait_ms == 0 || poll(fds, 2, wait_ms) <= 0) {
      kill(spawned->pid, SIGKILL);
      result.err += "\n[killed: timeout]";
      break;
    }
    if (out_open && (fds[0].revents & (POLLIN | POLLHUP))) {
      out_open = ReadSome(spawned->out_fd, &result.out);
    }
    if (err_open && (fds[1].revents & (POLLIN | POLLHUP))) {
      err_open = ReadSome(spawned->err_fd, &result.err);
    }
  }
  close(spawned->out_fd);
  close(spawned->err_fd);
  int status;
  waitpid(spawned->pid, &status, 0);
  result.exit_code = DecodeWaitStatus(status);
  return result;
}

}  // namespace mamba::server::testing
