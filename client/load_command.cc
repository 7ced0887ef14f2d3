// mamba-client load: the load tester. Reads its flags, checks the target, asks the server for the
// model's vocabulary, builds the workload, runs the warmup and each sweep point (load_runner),
// and reports (load_stats): text on stdout (or JSON with --json), --json_out and --csv files,
// and a live progress line on stderr when stderr is a terminal.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "client/client_call.h"
#include "client/flag_values.h"
#include "client/load_runner.h"
#include "client/load_stats.h"
#include "client/load_workload.h"
#include "client/subcommands.h"
#include "common/status_macros.h"
#include "mambaserve/v1/models.grpc.pb.h"

// Shared with `generate` (defined in generate_command.cc).
ABSL_DECLARE_FLAG(int32_t, max_tokens);
ABSL_DECLARE_FLAG(double, temperature);
ABSL_DECLARE_FLAG(int32_t, top_k);
ABSL_DECLARE_FLAG(double, top_p);
ABSL_DECLARE_FLAG(double, min_p);
ABSL_DECLARE_FLAG(double, repetition_penalty);
ABSL_DECLARE_FLAG(int64_t, seed);
ABSL_DECLARE_FLAG(std::string, stop);
ABSL_DECLARE_FLAG(std::string, stop_token_ids);
ABSL_DECLARE_FLAG(bool, ignore_eos);

ABSL_FLAG(int32_t, concurrency, 0,
          "Closed loop: requests in flight (default 1). With --rate: the most in flight "
          "(0 = no cap)");
ABSL_FLAG(double, rate, 0, "Open loop: arrivals per second (Poisson; see --burstiness)");
ABSL_FLAG(double, burstiness, 1.0,
          "Open loop: shape of the gamma-distributed gaps (1 = Poisson, < 1 burstier)");
ABSL_FLAG(int64_t, requests, 0, "Requests to send (0 = bounded by --duration only)");
ABSL_FLAG(double, duration, 0, "Seconds after which no new request starts (0 = no bound)");
ABSL_FLAG(int32_t, warmup, 0, "Requests sent before measuring, not counted");
ABSL_FLAG(std::string, prompt_tokens, "128",
          "Synthetic prompt length: N, uniform:A:B or normal:MEAN:STD tokens");
ABSL_FLAG(std::string, output_tokens, "",
          "Tokens to generate per request: N, uniform:A:B or normal:MEAN:STD (default 128, "
          "or --max_tokens)");
ABSL_FLAG(bool, prompt_text, false,
          "Synthetic prompts as random words (about --prompt_tokens tokens) instead of ids");
ABSL_FLAG(std::string, prompts, "",
          "JSONL file of prompts, one {\"prompt\": \"...\", \"max_tokens\": N} per line");
ABSL_FLAG(bool, honor_eos, false,
          "Synthetic load: stop at the end-of-text token (by default it is ignored, so that "
          "output lengths are what --output_tokens asks)");
ABSL_FLAG(int32_t, sessions, 0, "Sessions mode: this many sessions at once");
ABSL_FLAG(int32_t, chat, 0,
          "Chat mode: this many stateless conversations at once; every turn resends the whole "
          "history (system prompt, earlier inputs and outputs) and a new input, as OpenAI-style "
          "clients do (token-id prompts only)");
ABSL_FLAG(int32_t, system_prompt_tokens, 0,
          "Sessions and chat modes: a system prompt of this many tokens, the same for every "
          "conversation, in front of its first input");
ABSL_FLAG(int32_t, turns, 4, "Sessions and chat modes: turns per conversation");
ABSL_FLAG(double, think_time_ms, 0, "Sessions mode: pause between a session's turns");
ABSL_FLAG(bool, allow_remote, false, "Allow a non-loopback --addr");
ABSL_FLAG(std::string, slo, "ttft_ms:500,tpot_ms:50",
          "Objectives of goodput: ttft_ms, tpot_ms, e2e_ms (e.g. ttft_ms:500,tpot_ms:50); "
          "empty = no goodput");
ABSL_FLAG(std::string, json_out, "", "Write the whole report (every figure and the setup) as JSON");
ABSL_FLAG(std::string, csv, "", "Write one CSV row per point");
ABSL_FLAG(std::string, sweep, "",
          "Run points one after another: concurrency:1,4,16 | rate:1,2,4 | sessions:1,8");
ABSL_FLAG(int32_t, channels, 4, "gRPC channels (each its own connection)");
ABSL_FLAG(int32_t, client_threads, 1,
          "Threads that run the client's streams (each polls its own completion queue)");
ABSL_FLAG(uint64_t, workload_seed, 0, "Seed of prompts, lengths and arrival times");
ABSL_FLAG(std::string, http, "",
          "Send the streams over the OpenAI-compatible HTTP API at HOST:PORT (streaming "
          "POST /v1/completions; HTTPS with the --tls flags, --token as the bearer token) "
          "instead of gRPC; closed and open loops only. --addr still answers the model info "
          "the workload needs");

namespace mamba::client {
namespace {

namespace v1 = ::mambaserve::v1;
using load::RunPlan;
using nlohmann::json;

// Everything the flags say, validated.
struct LoadConfig {
  RunPlan base;  // the mode and bounds; a sweep varies one field per point
  load::SweepSpec sweep;
  int32_t warmup = 0;
  load::WorkloadOptions workload;
  load::Slo slo;
  int32_t channels = 4;
  int32_t client_threads = 1;
  std::string http;  // HOST:PORT of the HTTP API; empty: gRPC
  absl::Duration request_timeout;
  std::string json_out;
  std::string csv;
  json config_json;
};

absl::Status UsageError(std::string message) {
  return absl::InvalidArgumentError(std::move(message));
}

absl::StatusOr<LoadConfig> ConfigFromFlags() {
  LoadConfig c;
  const int32_t concurrency = absl::GetFlag(FLAGS_concurrency);
  const double rate = absl::GetFlag(FLAGS_rate);
  const int32_t sessions = absl::GetFlag(FLAGS_sessions);
  const int32_t chat = absl::GetFlag(FLAGS_chat);
  MAMBA_ASSIGN_OR_RETURN(c.sweep, load::ParseSweep(absl::GetFlag(FLAGS_sweep)));
  using Kind = load::SweepSpec::Kind;
  const Kind sweep = c.sweep.kind;
  if (rate < 0 || concurrency < 0 || sessions < 0 || chat < 0) {
    return UsageError("--rate, --concurrency, --sessions and --chat must be >= 0");
  }
  if (chat > 0 && (sessions > 0 || rate > 0 || concurrency > 0 || sweep != Kind::kNone)) {
    return UsageError(
        "chat mode (--chat) runs its conversations alone: no --sessions, --rate, --concurrency "
        "or --sweep");
  }
  if (sweep == Kind::kConcurrency && concurrency > 0) {
    return UsageError("set --concurrency or --sweep=concurrency:..., not both");
  }
  if (sweep == Kind::kRate && rate > 0) return UsageError("set --rate or --sweep=rate:..., not both");
  if (sweep == Kind::kSessions && sessions > 0) {
    return UsageError("set --sessions or --sweep=sessions:..., not both");
  }
  const bool open = rate > 0 || sweep == Kind::kRate;
  const bool sessions_mode = sessions > 0 || sweep == Kind::kSessions;
  if (open && sessions_mode) {
    return UsageError("sessions mode (--sessions) and an open loop (--rate) do not mix");
  }
  if (sessions_mode && (concurrency > 0 || sweep == Kind::kConcurrency)) {
    return UsageError("sessions mode runs --sessions at once; --concurrency does not apply");
  }

  RunPlan& p = c.base;
  p.mode = chat > 0         ? RunPlan::Mode::kChat
           : sessions_mode ? RunPlan::Mode::kSessions
                           : (open ? RunPlan::Mode::kOpen : RunPlan::Mode::kClosed);
  p.concurrency = p.mode == RunPlan::Mode::kClosed ? std::max(concurrency, 1) : concurrency;
  p.rate = rate;
  p.burstiness = absl::GetFlag(FLAGS_burstiness);
  p.sessions = chat > 0 ? chat : sessions;
  p.turns = absl::GetFlag(FLAGS_turns);
  const int32_t system_tokens = absl::GetFlag(FLAGS_system_prompt_tokens);
  if (system_tokens < 0 || system_tokens > (1 << 20)) {
    return UsageError(absl::StrCat("--system_prompt_tokens=", system_tokens,
                                   " is out of range; allowed: 0 to 1048576"));
  }
  if (system_tokens > 0 && p.mode != RunPlan::Mode::kSessions && p.mode != RunPlan::Mode::kChat) {
    return UsageError("--system_prompt_tokens applies to sessions and chat modes only");
  }
  // Made once the vocabulary is known (ConfigFromFlags runs before the server is asked).
  p.system_prompt.assign(static_cast<size_t>(system_tokens), 0);
  const double think_ms = absl::GetFlag(FLAGS_think_time_ms);
  if (!(think_ms >= 0) || !std::isfinite(think_ms)) {
    return UsageError(absl::StrCat("--think_time_ms=", think_ms, " is out of range; allowed: >= 0"));
  }
  p.think_time = absl::Microseconds(static_cast<int64_t>(think_ms * 1e3));
  p.max_requests = absl::GetFlag(FLAGS_requests);
  const double duration = absl::GetFlag(FLAGS_duration);
  if (!(duration >= 0) || !std::isfinite(duration)) {
    return UsageError(absl::StrCat("--duration=", duration, " is out of range; allowed: seconds >= 0"));
  }
  p.duration = absl::Microseconds(static_cast<int64_t>(duration * 1e6));
  p.seed = absl::GetFlag(FLAGS_workload_seed);
  // Validate the plan with each sweep value in place (and the plain plan without a sweep).
  for (double v : c.sweep.values.empty() ? std::vector<double>{0} : c.sweep.values) {
    RunPlan point = p;
    if (sweep == Kind::kConcurrency) point.concurrency = static_cast<int32_t>(v);
    if (sweep == Kind::kRate) point.rate = v;
    if (sweep == Kind::kSessions) point.sessions = static_cast<int32_t>(v);
    absl::Status valid = load::ValidatePlan(point);
    if (!valid.ok()) return valid;
  }
  c.warmup = absl::GetFlag(FLAGS_warmup);
  if (c.warmup < 0) return UsageError(absl::StrCat("--warmup=", c.warmup, " must be >= 0"));

  // The workload.
  load::WorkloadOptions& w = c.workload;
  MAMBA_ASSIGN_OR_RETURN(w.prompt_tokens,
                    load::LengthDistribution::Parse(absl::GetFlag(FLAGS_prompt_tokens),
                                                    "prompt_tokens"));
  const std::string output_spec = absl::GetFlag(FLAGS_output_tokens);
  const int32_t max_tokens = absl::GetFlag(FLAGS_max_tokens);
  if (!output_spec.empty() && max_tokens != -1) {
    return UsageError("set --output_tokens or --max_tokens, not both");
  }
  if (max_tokens != -1 && max_tokens < 1) {
    return UsageError(absl::StrCat("--max_tokens=", max_tokens, " is out of range; allowed: >= 1"));
  }
  if (!output_spec.empty()) {
    MAMBA_ASSIGN_OR_RETURN(w.output_tokens,
                      load::LengthDistribution::Parse(output_spec, "output_tokens"));
  } else {
    w.output_tokens = load::LengthDistribution::Fixed(max_tokens == -1 ? 128 : max_tokens);
  }
  const std::string prompts_file = absl::GetFlag(FLAGS_prompts);
  if (!prompts_file.empty() && absl::GetFlag(FLAGS_prompt_text)) {
    return UsageError("set --prompts=FILE or --prompt_text, not both");
  }
  if (!prompts_file.empty()) {
    w.source = load::WorkloadOptions::PromptSource::kFile;
    MAMBA_ASSIGN_OR_RETURN(w.file_prompts, load::ReadPromptsFile(prompts_file));
  } else if (absl::GetFlag(FLAGS_prompt_text)) {
    w.source = load::WorkloadOptions::PromptSource::kWords;
  }
  w.seed = absl::GetFlag(FLAGS_workload_seed);
  const bool honor_eos = absl::GetFlag(FLAGS_honor_eos);
  const bool ignore_eos = absl::GetFlag(FLAGS_ignore_eos);
  if (honor_eos && ignore_eos) return UsageError("set --honor_eos or --ignore_eos, not both");
  const bool synthetic = w.source != load::WorkloadOptions::PromptSource::kFile;
  const bool effective_ignore_eos = synthetic ? !honor_eos : ignore_eos;

  v1::GenerateRequest& base = w.base;
  SamplingFromFlags(base.mutable_sampling());
  v1::StoppingCriteria* stopping = base.mutable_stopping();
  MAMBA_ASSIGN_OR_RETURN(std::vector<std::string> stops,
                    ParseStringList(absl::GetFlag(FLAGS_stop), "stop"));
  for (std::string& s : stops) stopping->add_stop(std::move(s));
  MAMBA_ASSIGN_OR_RETURN(std::vector<int32_t> stop_ids,
                    ParseIdList(absl::GetFlag(FLAGS_stop_token_ids), "stop_token_ids"));
  stopping->mutable_stop_token_ids()->Add(stop_ids.begin(), stop_ids.end());
  stopping->set_ignore_eos(effective_ignore_eos);

  MAMBA_ASSIGN_OR_RETURN(c.slo, load::ParseSlo(absl::GetFlag(FLAGS_slo)));
  c.channels = absl::GetFlag(FLAGS_channels);
  if (c.channels < 1 || c.channels > 256) {
    return UsageError(absl::StrCat("--channels=", c.channels, " is out of range; allowed: 1..256"));
  }
  c.client_threads = absl::GetFlag(FLAGS_client_threads);
  if (c.client_threads < 1 || c.client_threads > 64) {
    return UsageError(
        absl::StrCat("--client_threads=", c.client_threads, " is out of range; allowed: 1..64"));
  }
  const double timeout = absl::GetFlag(FLAGS_timeout_seconds);
  c.request_timeout = timeout > 0 ? absl::Microseconds(static_cast<int64_t>(timeout * 1e6))
                                  : absl::ZeroDuration();
  c.json_out = absl::GetFlag(FLAGS_json_out);
  c.csv = absl::GetFlag(FLAGS_csv);
  c.http = absl::GetFlag(FLAGS_http);
  if (!c.http.empty()) MAMBA_RETURN_IF_ERROR(load::CheckHttpMode(p.mode));

  if ((p.mode == RunPlan::Mode::kChat || !p.system_prompt.empty()) &&
      w.source != load::WorkloadOptions::PromptSource::kTokenIds) {
    return UsageError(
        "chat mode and --system_prompt_tokens build token-id inputs; drop --prompts and "
        "--prompt_text");
  }
  const char* source_name = w.source == load::WorkloadOptions::PromptSource::kFile ? "file"
                            : w.source == load::WorkloadOptions::PromptSource::kWords
                                ? "words"
                                : "token_ids";
  c.config_json = {
      {"addr", absl::GetFlag(FLAGS_addr)},
      {"protocol", c.http.empty() ? "grpc" : "http"},
      {"http", c.http},
      {"mode", p.mode == RunPlan::Mode::kClosed   ? "closed"
               : p.mode == RunPlan::Mode::kOpen   ? "open"
               : p.mode == RunPlan::Mode::kChat   ? "chat"
                                                  : "sessions"},
      {"chat", chat},
      {"system_prompt_tokens", system_tokens},
      {"concurrency", concurrency},
      {"rate", rate},
      {"burstiness", p.burstiness},
      {"sessions", sessions},
      {"turns", p.turns},
      {"think_time_ms", think_ms},
      {"requests", p.max_requests},
      {"duration_s", duration},
      {"warmup", c.warmup},
      {"sweep", absl::GetFlag(FLAGS_sweep)},
      {"prompt_source", source_name},
      {"prompt_tokens", w.prompt_tokens.ToString()},
      {"output_tokens", w.output_tokens.ToString()},
      {"prompts_file", prompts_file},
      {"ignore_eos", effective_ignore_eos},
      {"temperature", absl::GetFlag(FLAGS_temperature)},
      {"top_k", absl::GetFlag(FLAGS_top_k)},
      {"top_p", absl::GetFlag(FLAGS_top_p)},
      {"min_p", absl::GetFlag(FLAGS_min_p)},
      {"repetition_penalty", absl::GetFlag(FLAGS_repetition_penalty)},
      {"seed", absl::GetFlag(FLAGS_seed)},
      {"slo", c.slo.ToString()},
      {"channels", c.channels},
      {"client_threads", c.client_threads},
      {"timeout_seconds", timeout},
      {"workload_seed", w.seed},
  };
  return c;
}

// The points to run: one per sweep value, or the base plan alone.
std::vector<std::pair<load::PointSetup, RunPlan>> Points(const LoadConfig& c) {
  using Kind = load::SweepSpec::Kind;
  std::vector<std::pair<load::PointSetup, RunPlan>> points;
  auto add = [&](RunPlan plan) {
    load::PointSetup s;
    switch (plan.mode) {
      case RunPlan::Mode::kClosed:
        s.mode = "closed";
        s.label = absl::StrCat("concurrency=", plan.concurrency);
        break;
      case RunPlan::Mode::kOpen:
        s.mode = "open";
        s.label = absl::StrCat("rate=", plan.rate);
        break;
      case RunPlan::Mode::kSessions:
        s.mode = "sessions";
        s.label = absl::StrCat("sessions=", plan.sessions);
        break;
      case RunPlan::Mode::kChat:
        s.mode = "chat";
        s.label = absl::StrCat("chat=", plan.sessions);
        break;
    }
    s.concurrency = plan.concurrency;
    s.rate = plan.rate;
    s.burstiness = plan.burstiness;
    s.sessions = plan.sessions;
    const bool conversations =
        plan.mode == RunPlan::Mode::kSessions || plan.mode == RunPlan::Mode::kChat;
    s.turns = conversations ? plan.turns : 0;
    s.think_time_ms = absl::ToDoubleMilliseconds(plan.think_time);
    points.emplace_back(s, plan);
  };
  if (c.sweep.kind == Kind::kNone) {
    add(c.base);
    return points;
  }
  for (double v : c.sweep.values) {
    RunPlan plan = c.base;
    if (c.sweep.kind == Kind::kConcurrency) plan.concurrency = static_cast<int32_t>(v);
    if (c.sweep.kind == Kind::kRate) plan.rate = v;
    if (c.sweep.kind == Kind::kSessions) plan.sessions = static_cast<int32_t>(v);
    add(plan);
  }
  return points;
}

// A one-line progress display on stderr, redrawn a few times a second while a phase runs.
// Started only when stderr is a terminal.
class ProgressLine {
 public:
  ProgressLine(std::string label, const load::LiveCounters& live, int64_t total,
               absl::Duration duration)
      : label_(std::move(label)), live_(live), total_(total), duration_(duration) {
    thread_ = std::thread([this] { Loop(); });
  }
  ~ProgressLine() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_one();
    thread_.join();
    std::fputs("\r\033[K", stderr);
    std::fflush(stderr);
  }
  ProgressLine(const ProgressLine&) = delete;
  ProgressLine& operator=(const ProgressLine&) = delete;

 private:
  void Loop() {
    using Clock = std::chrono::steady_clock;
    const Clock::time_point start = Clock::now();
    Clock::time_point last = start;
    int64_t last_tokens = 0;
    double rate = 0;
    std::unique_lock<std::mutex> lock(mu_);
    while (!cv_.wait_for(lock, std::chrono::milliseconds(250), [this] { return stop_; })) {
      const Clock::time_point now = Clock::now();
      const int64_t tokens = live_.tokens.load(std::memory_order_relaxed);
      const double dt = std::chrono::duration<double>(now - last).count();
      if (dt > 0) rate = 0.5 * rate + 0.5 * static_cast<double>(tokens - last_tokens) / dt;
      last = now;
      last_tokens = tokens;
      const int64_t done = live_.done.load(std::memory_order_relaxed);
      const double elapsed = std::chrono::duration<double>(now - start).count();
      double fraction = 0;
      std::string count = absl::StrCat(done);
      if (total_ > 0) {
        fraction = static_cast<double>(done) / static_cast<double>(total_);
        count = absl::StrCat(done, "/", total_);
      }
      if (duration_ > absl::ZeroDuration()) {
        fraction = std::max(fraction, elapsed / absl::ToDoubleSeconds(duration_));
      }
      constexpr int kWidth = 24;
      const int filled = std::clamp(static_cast<int>(fraction * kWidth), 0, kWidth);
      const std::string bar = std::string(static_cast<size_t>(filled), '#') +
                              std::string(static_cast<size_t>(kWidth - filled), '.');
      const std::string line = absl::StrFormat(
          "\r\033[K%s [%s] %s done, %d in flight, %.0f tok/s, %d errors, %.1fs", label_, bar,
          count, live_.sent.load(std::memory_order_relaxed) - done, rate,
          live_.failed.load(std::memory_order_relaxed), elapsed);
      std::fputs(line.c_str(), stderr);
      std::fflush(stderr);
    }
  }

  std::string label_;
  const load::LiveCounters& live_;
  int64_t total_;
  absl::Duration duration_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

// Runs one phase with a progress line when stderr is a terminal.
absl::StatusOr<load::PhaseResult> RunWithProgress(const std::string& label, const RunPlan& plan,
                                                  const load::LoadTarget& target,
                                                  load::Workload& workload) {
  load::LiveCounters live;
  std::unique_ptr<ProgressLine> progress;
  if (isatty(STDERR_FILENO)) {
    int64_t total = plan.max_requests;
    if (plan.mode == RunPlan::Mode::kSessions || plan.mode == RunPlan::Mode::kChat) {
      const int64_t all = static_cast<int64_t>(plan.sessions) * plan.turns;
      total = total > 0 ? std::min(total, all) : all;
    }
    progress = std::make_unique<ProgressLine>(label, live, total, plan.duration);
  }
  return load::RunPhase(plan, target, workload, &live);
}

// How many tokens a random word is on average, with the server's tokenizer.
absl::StatusOr<double> TokensPerWord(v1::Models::Stub& models, uint64_t seed) {
  constexpr int kWords = 2000;
  std::mt19937_64 rng(seed ^ 0x9e3779b97f4a7c15ULL);
  v1::TokenizeRequest request;
  request.set_text(load::RandomWords(kWords, rng));
  v1::TokenizeResponse response;
  std::unique_ptr<grpc::ClientContext> context = NewContext();
  context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  grpc::Status status = models.Tokenize(context.get(), request, &response);
  if (!status.ok()) {
    return absl::UnavailableError(
        absl::StrCat("Tokenize (to size --prompt_text prompts) failed: ", status.error_message()));
  }
  return std::max(1e-3, static_cast<double>(response.token_ids_size()) / kWords);
}

bool WriteFile(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
  out.close();
  if (out.fail()) {
    std::fprintf(stderr, "mamba-client: cannot write '%s'\n", path.c_str());
    return false;
  }
  return true;
}

}  // namespace

int RunLoad(const Args& args) {
  if (!args.empty()) return ReportUsageError(absl::StrCat("load: unexpected argument '", args[0], "'"));
  // gRPC locks absl::Mutex several times per received message; Debian's Abseil is built with
  // its debug-mode deadlock detection on, which records every acquisition in a lock graph. A
  // load generator must not spend its CPU there.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  absl::StatusOr<LoadConfig> parsed = ConfigFromFlags();
  if (!parsed.ok()) return ReportUsageError(std::string(parsed.status().message()));
  LoadConfig& config = *parsed;
  const std::string addr = absl::GetFlag(FLAGS_addr);
  if (!absl::GetFlag(FLAGS_allow_remote)) {
    absl::Status local = load::CheckLoopbackTarget(addr);
    if (!local.ok()) return ReportUsageError(std::string(local.message()));
  }

  std::unique_ptr<load::HttpLoadClient> http;
  if (!config.http.empty()) {
    if (!absl::GetFlag(FLAGS_allow_remote)) {
      absl::Status local = load::CheckLoopbackTarget(config.http, "http");
      if (!local.ok()) return ReportUsageError(std::string(local.message()));
    }
    load::HttpTargetOptions options;
    options.address = config.http;
    options.bearer_token = absl::GetFlag(FLAGS_token);
    options.threads = config.client_threads;
    // The same TLS flags as the gRPC channel (main() has checked their combination).
    options.tls_ca = absl::GetFlag(FLAGS_tls_ca);
    options.tls_cert = absl::GetFlag(FLAGS_tls_cert);
    options.tls_key = absl::GetFlag(FLAGS_tls_key);
    options.tls_server_name = absl::GetFlag(FLAGS_tls_server_name);
    options.tls = TlsFromFlags();
    absl::StatusOr<std::unique_ptr<load::HttpLoadClient>> created =
        load::HttpLoadClient::Create(options);
    if (!created.ok()) {
      if (created.status().code() == absl::StatusCode::kInvalidArgument) {
        return ReportUsageError(std::string(created.status().message()));
      }
      return ReportFailure(grpc::Status(static_cast<grpc::StatusCode>(created.status().code()),
                                        std::string(created.status().message())));
    }
    http = std::move(*created);
  }

  load::LoadTarget target;
  target.http = http.get();
  target.request_timeout = config.request_timeout;
  target.poll_threads = config.client_threads;
  for (int i = 0; i < config.channels; ++i) target.channels.push_back(load::OpenLoadChannel(addr, i));
  const auto connect_deadline = std::chrono::system_clock::now() + std::chrono::seconds(10);
  for (const auto& channel : target.channels) {
    if (!channel->WaitForConnected(connect_deadline)) {
      return ReportFailure(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                        absl::StrCat("cannot connect to ", addr, " within 10 s")));
    }
  }

  auto models = v1::Models::NewStub(target.channels[0]);
  v1::ModelInfo info;
  {
    std::unique_ptr<grpc::ClientContext> context = NewContext();
    context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    grpc::Status status = models->GetModelInfo(context.get(), v1::GetModelInfoRequest(), &info);
    if (!status.ok()) return ReportFailure(status);
  }
  load::WorkloadOptions& w = config.workload;
  w.vocab_size = info.tokenizer_vocab_size() > 0
                     ? std::min(info.vocab_size(), info.tokenizer_vocab_size())
                     : info.vocab_size();
  if (!config.base.system_prompt.empty()) {
    // One system prompt for every conversation, from the workload seed.
    std::mt19937_64 rng(w.seed ^ 0x5f3759dfULL);
    for (int32_t& id : config.base.system_prompt) {
      id = static_cast<int32_t>(rng() % static_cast<uint64_t>(std::max(w.vocab_size, 1)));
    }
  }
  if (w.source == load::WorkloadOptions::PromptSource::kWords) {
    absl::StatusOr<double> ratio = TokensPerWord(*models, w.seed);
    if (!ratio.ok()) return ReportFailure(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                                       std::string(ratio.status().message())));
    w.tokens_per_word = *ratio;
  }
  absl::StatusOr<std::unique_ptr<load::Workload>> workload = load::Workload::Create(w);
  if (!workload.ok()) return ReportUsageError(std::string(workload.status().message()));
  const json server = {{"model", info.name()},
                       {"backend", info.backend()},
                       {"device", info.device()},
                       {"weight_dtype", info.weight_dtype()},
                       {"state_dtype", info.state_dtype()},
                       {"vocab_size", info.vocab_size()},
                       {"num_state_slots", info.num_state_slots()},
                       {"model_identity", info.model_identity()}};

  const std::vector<std::pair<load::PointSetup, RunPlan>> points = Points(config);
  if (config.warmup > 0) {
    RunPlan warmup;
    warmup.mode = RunPlan::Mode::kClosed;
    const RunPlan& first = points.front().second;
    const int32_t width = first.mode == RunPlan::Mode::kClosed     ? first.concurrency
                          : first.mode == RunPlan::Mode::kSessions ? first.sessions
                          : first.concurrency > 0                  ? first.concurrency
                                                                   : 16;
    warmup.concurrency = std::clamp(width, 1, config.warmup);
    warmup.max_requests = config.warmup;
    absl::StatusOr<load::PhaseResult> done =
        RunWithProgress("warmup", warmup, target, **workload);
    if (!done.ok()) return ReportUsageError(std::string(done.status().message()));
  }

  const bool as_json = JsonOutput();
  const bool sweep = points.size() > 1;
  if (sweep && !as_json) {
    std::fputs(load::RenderSweepHeader().c_str(), stdout);
    std::fflush(stdout);
  }
  std::vector<load::PointReport> reports;
  for (const auto& [setup, plan] : points) {
    absl::StatusOr<load::PhaseResult> result = RunWithProgress(setup.label, plan, target, **workload);
    if (!result.ok()) return ReportUsageError(std::string(result.status().message()));
    reports.push_back(load::BuildPointReport(setup, std::move(result->records), result->measured,
                                             config.slo));
    if (!as_json) {
      const std::string text =
          sweep ? load::RenderSweepRow(reports.back()) : load::RenderText(reports.back());
      std::fputs(text.c_str(), stdout);
      std::fflush(stdout);
    }
  }

  const json report = load::ReportJson(config.config_json, server, reports);
  if (as_json) PrintJson(report);
  bool written = true;
  if (!config.json_out.empty()) {
    written &= WriteFile(config.json_out,
                         report.dump(2, ' ', false, json::error_handler_t::replace) + "\n");
  }
  if (!config.csv.empty()) {
    std::string csv = load::CsvHeader();
    for (const load::PointReport& r : reports) csv += load::CsvRow(r);
    written &= WriteFile(config.csv, csv);
  }
  if (!written) return kExitCallFailed;
  // Failures are data, but a run in which nothing succeeded is a failed run.
  int64_t succeeded = 0;
  for (const load::PointReport& r : reports) succeeded += r.succeeded;
  if (succeeded == 0) {
    std::fprintf(stderr, "mamba-client: no request succeeded\n");
    return kExitCallFailed;
  }
  return kExitOk;
}

}  // namespace mamba::client
