// The figures `mamba-client load` reports: per-request records, latency distributions, goodput
// under service-level objectives, and the report in three renderings (text, JSON, CSV).
//
// Definitions (those of vLLM's serving benchmark, made precise):
//  - TTFT: from sending the request to the first response that carries a token.
//  - ITL (inter-token latency): gaps between consecutive token arrivals. A response carrying k
//    tokens that arrives g seconds after the previous token-carrying response contributes k
//    samples of g/k; the first response contributes none.
//  - TPOT (time per output token): per request, (e2e - ttft) / (tokens - 1); requests with fewer
//    than 2 tokens have none.
//  - E2E: from sending the request to the response that carries the finish reason.
//  - Percentiles interpolate linearly between order statistics, as numpy's default: for sorted
//    x[0..n-1], p-th percentile = x[i] + f * (x[i+1] - x[i]) with h = (n-1) * p/100, i = floor(h),
//    f = h - i.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace mamba::client::load {

// The p-th percentile (0 <= p <= 100) of `sorted` (ascending, non-empty), interpolated linearly.
double Percentile(const std::vector<double>& sorted, double p);

// mean, p50, p90, p95, p99 and max of a sample; all zero (count 0) when it is empty.
struct Distribution {
  int64_t count = 0;
  double mean = 0, p50 = 0, p90 = 0, p95 = 0, p99 = 0, max = 0;
};
// Summarizes `values` (any order; sorted in place).
Distribution Summarize(std::vector<double>& values);

// What one request did, as the runner saw it. Times are seconds from the start of the phase.
struct RequestRecord {
  int status_code = 0;     // the gRPC status code of the stream
  bool finished = false;   // a response carried a finish reason
  int finish_reason = 0;   // mambaserve.v1.FinishReason of that response
  double send_s = 0;
  double first_token_s = -1;  // -1: no token arrived
  double end_s = 0;           // the finish response's arrival, or the stream's end when none
  int64_t tokens_received = 0;
  int32_t usage_prompt_tokens = 0;  // from the final response's usage
  int32_t usage_generated_tokens = 0;
  int64_t usage_cached_tokens = 0;
  int32_t turn = -1;        // sessions mode: 0 for a session's first turn; -1 otherwise
  double last_token_s = -1;  // the latest token-carrying response's arrival
  std::vector<float> itl_s;  // this request's ITL samples (see above)

  // OK, and the stream carried a finish reason.
  bool Succeeded() const { return status_code == 0 && finished; }
};

// Accounts for a response carrying `tokens` tokens that arrived at `now_s`: the first token's
// time, the ITL samples, the count. Responses without tokens are not token arrivals.
void RecordTokenArrival(RequestRecord* record, double now_s, int tokens);

// Service-level objectives: a request is "good" when it succeeded and meets every one set.
struct Slo {
  std::optional<double> ttft_ms;
  std::optional<double> tpot_ms;
  std::optional<double> e2e_ms;
  bool empty() const { return !ttft_ms && !tpot_ms && !e2e_ms; }
  std::string ToString() const;  // "ttft_ms:500,tpot_ms:50"; "" when empty
};
// "ttft_ms:500,tpot_ms:50,e2e_ms:2000" (any subset; "" = none).
absl::StatusOr<Slo> ParseSlo(std::string_view spec);
// Whether `r` succeeded and meets every objective of `slo`.
bool MeetsSlo(const RequestRecord& r, const Slo& slo);

// How a point loaded the server.
struct PointSetup {
  std::string label;      // "concurrency=16", "rate=4", "sessions=8"
  std::string mode;       // closed | open | sessions | chat
  int32_t concurrency = 0;  // closed loop; the cap of an open loop (0 = none)
  double rate = 0;          // open loop: target requests/s
  double burstiness = 1;
  int32_t sessions = 0;     // sessions mode; conversations in chat mode
  int32_t turns = 0;
  double think_time_ms = 0;
};

// What the runner measured besides the records.
struct PhaseMeasurements {
  double duration_s = 0;        // first send to last completion
  double last_send_s = 0;       // open loop: the achieved rate is sends / last_send_s
  double cpu_user_s = 0;        // this process, over the phase (getrusage)
  double cpu_system_s = 0;
  int64_t max_in_flight = 0;
  int32_t channels = 0;
  // Sessions mode.
  int64_t sessions_created = 0;
  int64_t sessions_closed = 0;
  int64_t session_ids_chosen_by_server = 0;  // the server did not adopt our id
  std::map<std::string, int64_t> session_create_failed;  // by gRPC code name
  std::map<std::string, int64_t> session_close_failed;
};

// Every figure of one point.
struct PointReport {
  PointSetup setup;
  int64_t sent = 0, succeeded = 0, failed = 0;
  std::map<std::string, int64_t> failed_by_code;   // gRPC code name (INCOMPLETE: OK, no finish)
  std::map<std::string, int64_t> finish_reasons;   // length | stop | eos | cancelled
  double duration_s = 0;
  double request_throughput = 0;       // succeeded / duration
  double output_token_throughput = 0;  // output tokens of succeeded requests / duration
  double total_token_throughput = 0;   // (prompt + output) tokens of succeeded requests / duration
  double achieved_rate = 0;            // open loop: sent / time of the last send
  int64_t prompt_tokens = 0;           // usage.prompt_tokens of succeeded requests
  int64_t output_tokens = 0;           // tokens received by succeeded requests
  int64_t tokens_received = 0;         // by every request, failed ones included
  int64_t usage_mismatches = 0;        // succeeded requests whose usage differs from the count
  Distribution ttft_ms, itl_ms, tpot_ms, e2e_ms;
  Slo slo;
  int64_t good_requests = 0;
  double goodput = 0;                  // good requests / duration
  // Sessions and chat modes (a warm turn is any turn after a conversation's first).
  Distribution cold_ttft_ms, warm_ttft_ms;
  int64_t resumed_tokens = 0;          // sum of usage.cached_tokens of succeeded requests
  int64_t warm_turns = 0;              // succeeded warm turns
  double warm_prefill_tokens = 0;      // mean usage.prompt_tokens of a warm turn (prefilled)
  double warm_cached_tokens = 0;       // mean usage.cached_tokens of a warm turn (reused)
  double warm_hit_rate = 0;            // share of warm turns that reused a state (cached > 0)
  PhaseMeasurements measured;
  double cpu_us_per_token = 0;         // (user + system CPU) / tokens received
};

// Computes a point's report from its records (moved from; the ITL samples are consumed).
PointReport BuildPointReport(const PointSetup& setup, std::vector<RequestRecord> records,
                             const PhaseMeasurements& measured, const Slo& slo);

// The detailed text report of one point (several lines, ends with a newline).
std::string RenderText(const PointReport& report);
// One row per point for sweeps: the header line, then RenderSweepRow per point.
std::string RenderSweepHeader();
std::string RenderSweepRow(const PointReport& report);

// The JSON of one point (every figure).
nlohmann::json PointJson(const PointReport& report);
// The whole report: {"config": ..., "server": ..., "points": [...]}.
nlohmann::json ReportJson(const nlohmann::json& config, const nlohmann::json& server,
                          const std::vector<PointReport>& points);
// CSV: a header line and one line per point, same columns in the same order.
std::string CsvHeader();
std::string CsvRow(const PointReport& report);

}  // namespace mamba::client::load
