// mamba-serve: the gRPC server for Mamba language models.
//
// Prints exactly one line to stdout once the model is loaded and the server is ready:
//   mamba-serve listening grpc=HOST:PORT metrics=HOST:PORT http=HOST:PORT
// (metrics=off with --metrics_port=-1, http=off with --http_port=-1).
// Everything else (JSON log lines) goes to stderr. SIGTERM or SIGINT drains and exits with 0;
// SIGHUP re-reads --auth_tokens_file. Exit codes: 2 for bad flags, 1 when the server cannot start
// (port, TLS or tokens file, model).
#include <signal.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "common/command_line.h"
#include "engine/engine.h"
#include "google/protobuf/stubs/logging.h"
#include "server/mamba_server.h"
#include "server/metrics/request_log.h"

// Defaults come from the options structs, where each is written once.
namespace {
const mamba::EngineOptions kEngineDefaults;
const mamba::server::ServerOptions kServerDefaults;
}  // namespace

// Model and device.
ABSL_FLAG(std::string, model, "",
          "Checkpoint folder (config.json + model.safetensors) or synthetic:NAME (tiny, 130m, "
          "370m, 790m, 1.4b, 2.8b); empty = the embedded default model");
ABSL_FLAG(std::string, tokenizer, "",
          "tokenizer.json; empty = the one beside the model (byte-level when there is none)");
ABSL_FLAG(std::string, backend, kEngineDefaults.backend.kind,
          "auto | cpu | cuda (auto: cuda when a GPU is usable)");
ABSL_FLAG(int32_t, device, kEngineDefaults.backend.device, "GPU index (cuda backend)");
ABSL_FLAG(std::string, dtype, kEngineDefaults.dtype, "Weight dtype: auto | f32 | f16 | bf16");
ABSL_FLAG(std::string, state_dtype, kEngineDefaults.backend.state_dtype,
          "Recurrent state dtype: f32 | bf16 (cuda only)");
ABSL_FLAG(double, gpu_memory_fraction, kEngineDefaults.backend.gpu_memory_fraction,
          "Fraction of the GPU memory left after the weights that state slots may use, in (0, 1]");
ABSL_FLAG(int32_t, num_slots, kEngineDefaults.backend.num_slots,
          "State slots; 0 = the backend's choice (from memory on cuda)");
ABSL_FLAG(int32_t, cpu_threads, kEngineDefaults.backend.cpu_threads,
          "CPU backend threads; 0 = all cores");
ABSL_FLAG(uint64_t, seed, kEngineDefaults.seed,
          "Seed of synthetic weights; with --deterministic also of default sampling seeds");
ABSL_FLAG(bool, deterministic, kEngineDefaults.backend.deterministic,
          "Batch-invariant kernels (cuda) and reproducible default sampling seeds");

// Network.
ABSL_FLAG(std::string, host, kServerDefaults.host, "Interface the gRPC port binds ('::' for IPv6)");
ABSL_FLAG(int32_t, port, kServerDefaults.port, "gRPC port; 0 picks a free one");
ABSL_FLAG(std::string, metrics_host, "", "Interface of the metrics port; empty = --host");
ABSL_FLAG(int32_t, metrics_port, kServerDefaults.metrics_port,
          "HTTP port of /metrics, /healthz and /readyz; 0 picks a free one, -1 serves none");
ABSL_FLAG(std::string, http_host, "", "Interface of the OpenAI-compatible HTTP API; empty = --host");
ABSL_FLAG(int32_t, http_port, kServerDefaults.http_port,
          "Port of the OpenAI-compatible HTTP API (/v1/completions, /v1/chat/completions, "
          "/v1/models); 0 picks a free one, -1 serves none");
ABSL_FLAG(int32_t, http_threads, kServerDefaults.http_threads,
          "Threads of the HTTP API's server (socket writes of every streamed event, handlers)");
ABSL_FLAG(std::string, served_model_name, "",
          "Model id the HTTP API lists and requests name; empty = the model's name");
ABSL_FLAG(std::string, chat_template, "",
          "Jinja chat template file for /v1/chat/completions; empty = the chat_template of the "
          "model's tokenizer_config.json");
ABSL_FLAG(int32_t, max_receive_message_bytes, kServerDefaults.max_receive_message_bytes,
          "Largest request accepted, in bytes (ImportSession carries a whole session state)");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate chain of the gRPC port; with --tls_key turns TLS on (both or neither)");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA bundle; when set (needs --tls_cert/--tls_key) clients must present a "
          "certificate it signed");
ABSL_FLAG(std::string, auth_tokens_file, "",
          "File of `TOKEN TENANT` lines; when set every mambaserve.v1 call needs "
          "`authorization: Bearer TOKEN` (health and reflection stay open). Re-read on SIGHUP");
ABSL_FLAG(std::string, session_key_file, kEngineDefaults.sessions.key_file,
          "File of session keys, one per line (`openssl rand -hex 32`): the first signs "
          "exported sessions, every one verifies imports. Replicas that exchange sessions share "
          "it; empty = a random key of this process (its exports import only here)");
ABSL_FLAG(bool, prefix_cache, kEngineDefaults.prefix_cache.enabled,
          "Reuse states for stateless requests: a request resumes from the longest cached prefix "
          "of its input (outputs are unchanged)");
ABSL_FLAG(double, prefix_cache_gb, kEngineDefaults.prefix_cache.device_gb,
          "State memory (GB) the prefix cache may keep in spare device slots (sessions and "
          "requests take slots first)");
ABSL_FLAG(double, prefix_cache_host_gb, kEngineDefaults.prefix_cache.host_gb,
          "Host memory (GB) for prefix cache entries moved off the device");
ABSL_FLAG(int32_t, prefix_cache_interval, kEngineDefaults.prefix_cache.interval,
          "Checkpoint long prompts every this many tokens for the prefix cache (0: none)");
ABSL_FLAG(int32_t, stream_threads, kServerDefaults.stream_threads,
          "Threads that send generated tokens to clients; 0 = the default (1: measured fastest, "
          "more contend with the scheduler thread)");
ABSL_FLAG(int32_t, prompt_threads, kServerDefaults.prompt_threads,
          "Threads that tokenize long text prompts (over 16 KiB), so that they do not hold the "
          "threads that receive calls");

// Requests and sessions.
ABSL_FLAG(int32_t, max_prompt_tokens, kServerDefaults.limits.max_prompt_tokens,
          "Most input tokens one request may carry");
ABSL_FLAG(int32_t, max_new_tokens, kServerDefaults.limits.max_new_tokens,
          "Largest max_tokens a request may ask for");
ABSL_FLAG(int32_t, max_sessions, kEngineDefaults.sessions.max_sessions,
          "Most sessions alive at once");
ABSL_FLAG(int32_t, session_ttl_seconds,
          static_cast<int32_t>(absl::ToInt64Seconds(kEngineDefaults.sessions.default_ttl)),
          "Idle time after which a session expires (default)");
ABSL_FLAG(int32_t, tenant_max_sessions, kEngineDefaults.sessions.tenant_max_sessions,
          "Most sessions one tenant may hold at once; 0 = no per-tenant limit");
ABSL_FLAG(int32_t, tenant_max_running, kEngineDefaults.scheduler.tenant_max_running,
          "Most requests one tenant may have queued or running at once; 0 = no per-tenant limit");
ABSL_FLAG(double, host_state_memory_gb, kEngineDefaults.sessions.host_state_memory_gb,
          "Host memory for idle sessions moved off the GPU, in GB; past it the oldest are dropped");

// Scheduler.
ABSL_FLAG(int32_t, max_running, kEngineDefaults.scheduler.max_running,
          "Sequences advanced together in one step (<= slots)");
ABSL_FLAG(int32_t, max_queue, kEngineDefaults.scheduler.max_queue,
          "Requests waiting for admission; beyond: RESOURCE_EXHAUSTED");
ABSL_FLAG(int32_t, max_prefill_tokens_per_step,
          kEngineDefaults.scheduler.max_prefill_tokens_per_step,
          "Prompt tokens processed per step, so long prompts never stall running streams");
ABSL_FLAG(int32_t, max_unread_tokens, kEngineDefaults.scheduler.max_unread_tokens,
          "A stream whose client is further behind than this is paused until it catches up");

// Lifecycle and logs.
ABSL_FLAG(int32_t, drain_seconds,
          static_cast<int32_t>(absl::ToInt64Seconds(kServerDefaults.drain_timeout)),
          "On SIGTERM/SIGINT, how long running streams may continue before they are cancelled");
ABSL_FLAG(std::string, log_level, "info", "debug | info | warning | error");

namespace {

using mamba::server::MambaServer;
using mamba::server::ServerOptions;

mamba::metrics::Logger& Logger() { return mamba::metrics::DefaultLogger(); }

absl::Status OneOf(const std::string& flag, const std::string& value,
                   const std::vector<std::string>& allowed) {
  for (const std::string& a : allowed) {
    if (value == a) return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--", flag, "=", value, " is not allowed; use ", absl::StrJoin(allowed, " | ")));
}

absl::Status AtLeast(const std::string& flag, int64_t value, int64_t min) {
  if (value >= min) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("--", flag, "=", value, " is out of range; allowed: >= ", min));
}

// More threads than any machine has cores for is a typo, and would fail to start anyway.
constexpr int64_t kMaxThreads = 1024;

absl::Status InRange(const std::string& flag, int64_t value, int64_t min, int64_t max) {
  if (value >= min && value <= max) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("--", flag, "=", value,
                                                 " is out of range; allowed: ", min, " to ", max));
}

absl::Status FirstError(std::initializer_list<absl::Status> statuses) {
  for (const absl::Status& s : statuses) {
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

// Far above any machine's memory, far below where a byte count overflows.
constexpr double kMaxHostStateMemoryGb = 1 << 20;  // also the prefix cache's budgets

absl::StatusOr<ServerOptions> OptionsFromFlags() {
  ServerOptions o;
  o.host = absl::GetFlag(FLAGS_host);
  o.port = absl::GetFlag(FLAGS_port);
  o.metrics_host = absl::GetFlag(FLAGS_metrics_host);
  o.metrics_port = absl::GetFlag(FLAGS_metrics_port);
  o.http_host = absl::GetFlag(FLAGS_http_host);
  o.http_port = absl::GetFlag(FLAGS_http_port);
  o.http_threads = absl::GetFlag(FLAGS_http_threads);
  o.served_model_name = absl::GetFlag(FLAGS_served_model_name);
  o.chat_template_file = absl::GetFlag(FLAGS_chat_template);
  o.max_receive_message_bytes = absl::GetFlag(FLAGS_max_receive_message_bytes);
  o.stream_threads = absl::GetFlag(FLAGS_stream_threads);
  o.prompt_threads = absl::GetFlag(FLAGS_prompt_threads);
  o.limits.max_prompt_tokens = absl::GetFlag(FLAGS_max_prompt_tokens);
  o.limits.max_new_tokens = absl::GetFlag(FLAGS_max_new_tokens);
  o.drain_timeout = absl::Seconds(absl::GetFlag(FLAGS_drain_seconds));
  o.deterministic_seeds = absl::GetFlag(FLAGS_deterministic);
  o.tls.cert_file = absl::GetFlag(FLAGS_tls_cert);
  o.tls.key_file = absl::GetFlag(FLAGS_tls_key);
  o.tls.client_ca_file = absl::GetFlag(FLAGS_tls_client_ca);
  o.auth_tokens_file = absl::GetFlag(FLAGS_auth_tokens_file);

  mamba::EngineOptions& e = o.engine;
  e.model = absl::GetFlag(FLAGS_model);
  e.tokenizer = absl::GetFlag(FLAGS_tokenizer);
  e.dtype = absl::GetFlag(FLAGS_dtype);
  e.seed = absl::GetFlag(FLAGS_seed);
  mamba::backend::BackendOptions& b = e.backend;
  b.kind = absl::GetFlag(FLAGS_backend);
  b.device = absl::GetFlag(FLAGS_device);
  b.state_dtype = absl::GetFlag(FLAGS_state_dtype);
  b.gpu_memory_fraction = absl::GetFlag(FLAGS_gpu_memory_fraction);
  b.cpu_threads = absl::GetFlag(FLAGS_cpu_threads);
  b.num_slots = absl::GetFlag(FLAGS_num_slots);
  b.deterministic = absl::GetFlag(FLAGS_deterministic);
  mamba::scheduler::SchedulerOptions& sc = e.scheduler;
  sc.max_running = absl::GetFlag(FLAGS_max_running);
  sc.max_queue = absl::GetFlag(FLAGS_max_queue);
  sc.max_prefill_tokens_per_step = absl::GetFlag(FLAGS_max_prefill_tokens_per_step);
  sc.max_unread_tokens = absl::GetFlag(FLAGS_max_unread_tokens);
  sc.tenant_max_running = absl::GetFlag(FLAGS_tenant_max_running);
  mamba::sessions::SessionOptions& se = e.sessions;
  se.max_sessions = absl::GetFlag(FLAGS_max_sessions);
  se.default_ttl = absl::Seconds(absl::GetFlag(FLAGS_session_ttl_seconds));
  se.host_state_memory_gb = absl::GetFlag(FLAGS_host_state_memory_gb);
  se.tenant_max_sessions = absl::GetFlag(FLAGS_tenant_max_sessions);
  se.key_file = absl::GetFlag(FLAGS_session_key_file);
  mamba::prefix_cache::PrefixCacheOptions& pc = e.prefix_cache;
  pc.enabled = absl::GetFlag(FLAGS_prefix_cache);
  pc.device_gb = absl::GetFlag(FLAGS_prefix_cache_gb);
  pc.host_gb = absl::GetFlag(FLAGS_prefix_cache_host_gb);
  pc.interval = absl::GetFlag(FLAGS_prefix_cache_interval);

  absl::Status valid = FirstError({
      OneOf("backend", b.kind, {"auto", "cpu", "cuda"}),
      OneOf("dtype", e.dtype, {"auto", "f32", "f16", "bf16"}),
      OneOf("state_dtype", b.state_dtype, {"f32", "bf16"}),
      AtLeast("device", b.device, 0),
      AtLeast("num_slots", b.num_slots, 0),
      InRange("cpu_threads", b.cpu_threads, 0, kMaxThreads),
      AtLeast("max_running", sc.max_running, 1),
      // 0 would refuse every request of an idle server: a queue holds at least the next one.
      AtLeast("max_queue", sc.max_queue, 1),
      AtLeast("max_prefill_tokens_per_step", sc.max_prefill_tokens_per_step, 1),
      AtLeast("max_unread_tokens", sc.max_unread_tokens, 1),
      AtLeast("max_sessions", se.max_sessions, 0),
      AtLeast("session_ttl_seconds", absl::GetFlag(FLAGS_session_ttl_seconds), 1),
      AtLeast("max_prompt_tokens", o.limits.max_prompt_tokens, 1),
      AtLeast("max_new_tokens", o.limits.max_new_tokens, 1),
      AtLeast("drain_seconds", absl::GetFlag(FLAGS_drain_seconds), 0),
      InRange("stream_threads", o.stream_threads, 0, kMaxThreads),
      InRange("prompt_threads", o.prompt_threads, 1, kMaxThreads),
      AtLeast("port", o.port, 0),
      AtLeast("metrics_port", o.metrics_port, -1),
      AtLeast("http_port", o.http_port, -1),
      InRange("http_threads", o.http_threads, 1, kMaxThreads),
      AtLeast("max_receive_message_bytes", o.max_receive_message_bytes, 1024),
      AtLeast("tenant_max_sessions", se.tenant_max_sessions, 0),
      AtLeast("tenant_max_running", sc.tenant_max_running, 0),
      AtLeast("prefix_cache_interval", pc.interval, 0),
      mamba::server::CheckTlsFileCombination(o.tls),
  });
  if (!valid.ok()) return valid;
  if (!(b.gpu_memory_fraction > 0.0 && b.gpu_memory_fraction <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("--gpu_memory_fraction=", b.gpu_memory_fraction,
                                                   " is out of range; allowed: (0, 1]"));
  }
  // Written as negated ranges so that NaN is refused too; inf and 1e300 are out of range, not a
  // budget that overflows into a negative one.
  for (const auto& [flag, gb] : {std::pair{"host_state_memory_gb", se.host_state_memory_gb},
                                  std::pair{"prefix_cache_gb", pc.device_gb},
                                  std::pair{"prefix_cache_host_gb", pc.host_gb}}) {
    if (!(gb >= 0.0 && gb <= kMaxHostStateMemoryGb)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", flag, "=", gb, " is out of range; allowed: 0 to ",
                       static_cast<int64_t>(kMaxHostStateMemoryGb), " (GB)"));
    }
  }
  if (o.port > 65535 || o.metrics_port > 65535 || o.http_port > 65535) {
    return absl::InvalidArgumentError("ports must be at most 65535");
  }
  return o;
}

// protobuf reports a string field with invalid UTF-8 at parse time; the service already answers
// such requests with INVALID_ARGUMENT, so these reports are debug noise, not errors.
void ProtobufLogHandler(google::protobuf::LogLevel level, const char* filename, int line,
                        const std::string& message) {
  const bool noise = message.find("invalid UTF-8") != std::string::npos;
  const mamba::metrics::LogLevel ours =
      noise ? mamba::metrics::LogLevel::kDebug
            : (level >= google::protobuf::LOGLEVEL_ERROR ? mamba::metrics::LogLevel::kError
                                                         : mamba::metrics::LogLevel::kWarning);
  Logger().Log(ours, "protobuf", {{"file", filename}, {"line", line}, {"message", message}});
}

// Receives SIGTERM/SIGINT/SIGHUP synchronously (they are blocked in every thread), so no work
// happens in a signal handler. The first SIGTERM/SIGINT starts the drain; a second one exits at
// once. SIGHUP runs the reload action (when one is set) and nothing else.
class SignalWatcher {
 public:
  explicit SignalWatcher(const sigset_t& signals) : signals_(signals) {
    thread_ = std::thread([this] { Run(); });
  }
  ~SignalWatcher() {
    done_.store(true);
    thread_.join();
  }

  // While true, a signal exits the process at once (nothing has been served yet).
  void set_exit_immediately(bool v) { exit_immediately_.store(v); }
  // What SIGHUP does (runs on the watcher thread). Returns once no earlier action is running, so
  // after set_reload(nullptr) what the old action used may go away.
  void set_reload(std::function<void()> reload) {
    std::lock_guard<std::mutex> lock(reload_mu_);
    reload_ = std::move(reload);
  }

  void Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return signalled_; });
  }

 private:
  void Run() {
    const timespec poll = {0, 200 * 1000 * 1000};
    int received = 0;
    while (!done_.load()) {
      siginfo_t info;
      const int sig = sigtimedwait(&signals_, &info, &poll);
      if (sig < 0) continue;  // timeout or EINTR
      if (sig == SIGHUP) {
        std::lock_guard<std::mutex> lock(reload_mu_);
        if (reload_) {
          reload_();
        } else {
          Logger().Info("SIGHUP ignored: nothing to reload");
        }
        continue;
      }
      ++received;
      if (exit_immediately_.load() || received > 1) {
        Logger().Info("signal received: exiting now", {{"signal", strsignal(sig)}});
        std::fflush(stdout);
        std::_Exit(received > 1 ? 1 : 0);
      }
      Logger().Info("signal received: draining", {{"signal", strsignal(sig)}});
      {
        std::lock_guard<std::mutex> lock(mu_);
        signalled_ = true;
      }
      cv_.notify_all();
    }
  }

  const sigset_t signals_;
  std::atomic<bool> done_{false};
  std::atomic<bool> exit_immediately_{true};
  std::mutex mu_;
  std::condition_variable cv_;
  bool signalled_ = false;
  std::mutex reload_mu_;
  std::function<void()> reload_;  // guarded by reload_mu_; runs under it
  std::thread thread_;
};

}  // namespace

int main(int argc, char** argv) {
  // Block the shutdown signals before any thread starts, so every thread inherits the mask and
  // only the watcher receives them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  const mamba::common::CommandLineSpec spec{
      "mamba-serve",
      "Serves a Mamba language model over gRPC (mambaserve.v1).\n"
      "Usage: mamba-serve [--flags]   e.g. mamba-serve --model=synthetic:tiny --port=0",
      {"server/main.cc"}};
  std::vector<char*> rest = mamba::common::ParseCommandLineOrExit(argc, argv, spec);
  if (rest.size() > 1) {
    std::fprintf(stderr, "mamba-serve: unexpected argument '%s' (flags look like --name=value)\n",
                 rest[1]);
    return 2;
  }
  absl::StatusOr<mamba::metrics::LogLevel> level =
      mamba::metrics::ParseLogLevel(absl::GetFlag(FLAGS_log_level));
  if (!level.ok()) {
    std::fprintf(stderr, "mamba-serve: --log_level: %s\n",
                 std::string(level.status().message()).c_str());
    return 2;
  }
  Logger().set_level(*level);
  google::protobuf::SetLogHandler(&ProtobufLogHandler);

  absl::StatusOr<ServerOptions> options = OptionsFromFlags();
  if (!options.ok()) {
    std::fprintf(stderr, "mamba-serve: %s\n", std::string(options.status().message()).c_str());
    return 2;
  }

  SignalWatcher watcher(signals);
  absl::StatusOr<std::unique_ptr<MambaServer>> server = MambaServer::Start(*std::move(options));
  if (!server.ok()) {
    Logger().Error("could not start", {{"error", std::string(server.status().message())}});
    return 1;
  }
  // Tokens may change while the model loads; SIGHUP works from here on.
  if (!absl::GetFlag(FLAGS_auth_tokens_file).empty()) {
    MambaServer* running = server->get();
    watcher.set_reload([running] {
      absl::Status reloaded = running->ReloadAuthTokens();
      if (reloaded.ok()) {
        Logger().Info("auth tokens reloaded", {{"file", running->options().auth_tokens_file}});
      } else {
        Logger().Error("auth tokens not reloaded; the previous tokens stay in use",
                       {{"error", std::string(reloaded.message())}});
      }
    });
  }
  absl::Status loaded = (*server)->LoadModel();
  if (!loaded.ok()) {
    Logger().Error("could not load the model", {{"error", std::string(loaded.message())}});
    watcher.set_reload(nullptr);
    (*server)->Shutdown();
    return 1;
  }
  watcher.set_exit_immediately(false);
  const std::string metrics_address = (*server)->metrics_address();
  const std::string http_address = (*server)->http_address();
  std::printf("mamba-serve listening grpc=%s metrics=%s http=%s\n", (*server)->address().c_str(),
              metrics_address.empty() ? "off" : metrics_address.c_str(),
              http_address.empty() ? "off" : http_address.c_str());
  std::fflush(stdout);

  watcher.Wait();
  watcher.set_reload(nullptr);
  (*server)->Shutdown();
  server->reset();
  Logger().Info("stopped");
  return 0;
}
