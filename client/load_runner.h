// The machinery of `mamba-client load`: drives many concurrent Generate streams with gRPC's
// asynchronous API and records what each request did. No thread per stream: a few threads poll
// completion queues and run every stream's next step inline (no hand-off between threads per
// message, which is what keeps the client's CPU cost per token low), and one timer thread paces
// open-loop arrivals and session think times.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/load_http.h"
#include "client/load_stats.h"
#include "client/load_workload.h"
#include "grpcpp/channel.h"

namespace mamba::client::load {

// How one phase (a warmup, or one sweep point) loads the server.
struct RunPlan {
  enum class Mode {
    kClosed,    // `concurrency` requests in flight; each ending starts the next
    kOpen,      // arrivals at `rate` (gamma gaps with shape `burstiness`), at most
                // `concurrency` in flight when it is > 0 (later arrivals wait for a free place)
    kSessions,  // `sessions` sessions at once, each `turns` turns in sequence with
                // `think_time` between them, then closed
    kChat,      // `sessions` stateless conversations at once: each of `turns` turns resends
                // the whole history (system prompt, earlier inputs and outputs) plus its new
                // input, as OpenAI-style chat clients do
  };
  Mode mode = Mode::kClosed;
  int32_t concurrency = 1;
  double rate = 0;
  double burstiness = 1;
  int32_t sessions = 0;
  int32_t turns = 1;
  absl::Duration think_time = absl::ZeroDuration();
  // Sessions and chat: token ids in front of every conversation's first input (a system prompt
  // shared by all of them). Chat marks its end for the server's prefix cache.
  std::vector<int32_t> system_prompt;
  // Bounds: no request starts after `max_requests` have started (0 = no bound) or once
  // `duration` has passed since the phase began (zero = no bound). Started requests finish.
  int64_t max_requests = 0;
  absl::Duration duration = absl::ZeroDuration();
  uint64_t seed = 0;  // of the arrival process and the session ids' order
};

// Where the load goes.
struct LoadTarget {
  // Requests and sessions are spread round-robin over these (a session stays on one).
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  absl::Duration request_timeout = absl::ZeroDuration();  // per call; zero = none
  // Threads polling completion queues (each its own queue; calls are spread over them).
  int32_t poll_threads = 1;
  // When set, Generate streams go over the OpenAI-compatible HTTP API through this client
  // (closed and open loops only); `channels` still carry everything else.
  HttpLoadClient* http = nullptr;
};

// Counters a progress display may read while a phase runs.
struct LiveCounters {
  std::atomic<int64_t> sent{0};
  std::atomic<int64_t> done{0};
  std::atomic<int64_t> failed{0};
  std::atomic<int64_t> tokens{0};
};

struct PhaseResult {
  std::vector<RequestRecord> records;
  PhaseMeasurements measured;
};

// Validates the plan (what is allowed is in the error).
absl::Status ValidatePlan(const RunPlan& plan);
// OK when a plan of `mode` can run over HTTP (LoadTarget::http): closed and open loops.
absl::Status CheckHttpMode(RunPlan::Mode mode);

// Runs one phase and blocks until every request and session call it started has ended. Failed
// calls (RESOURCE_EXHAUSTED included) are recorded, not fatal. `live` may be null.
absl::StatusOr<PhaseResult> RunPhase(const RunPlan& plan, const LoadTarget& target,
                                     Workload& workload, LiveCounters* live);

// A channel to `address` of its own (its own TCP connection: channels are not pooled), with no
// message size limits.
std::shared_ptr<grpc::Channel> OpenLoadChannel(const std::string& address, int index);

// OK when every address `target` (a gRPC target: HOST:PORT, [V6]:PORT, dns:///HOST:PORT,
// ipv4:/ipv6: lists, unix:PATH) resolves to is a loopback address; an error naming the offending
// address otherwise, or when it cannot be resolved. Messages name the flag `flag` (--addr).
absl::Status CheckLoopbackTarget(std::string_view target, std::string_view flag = "addr");

// 32 lowercase hex digits from the system's CSPRNG: a client-chosen session id.
std::string RandomSessionId();

}  // namespace mamba::client::load
