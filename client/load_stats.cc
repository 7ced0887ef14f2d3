#include "client/load_stats.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "mambaserve/v1/generation.pb.h"

namespace mamba::client::load {
namespace {

namespace v1 = ::mambaserve::v1;
using nlohmann::json;

const char* FinishReasonName(int reason) {
  switch (reason) {
    case v1::FINISH_REASON_LENGTH: return "length";
    case v1::FINISH_REASON_STOP: return "stop";
    case v1::FINISH_REASON_EOS: return "eos";
    case v1::FINISH_REASON_CANCELLED: return "cancelled";
    default: return "unspecified";
  }
}

std::string CodeName(int code) {
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

double Safe(double numerator, double denominator) {
  return denominator > 0 ? numerator / denominator : 0;
}

std::vector<double> Ms(const std::vector<double>& seconds) {
  std::vector<double> out(seconds.size());
  std::transform(seconds.begin(), seconds.end(), out.begin(), [](double s) { return s * 1e3; });
  return out;
}

json DistributionJson(const Distribution& d) {
  return {{"count", d.count}, {"mean", d.mean}, {"p50", d.p50}, {"p90", d.p90},
          {"p95", d.p95},     {"p99", d.p99},   {"max", d.max}};
}

json CountsJson(const std::map<std::string, int64_t>& counts) {
  json out = json::object();
  for (const auto& [name, n] : counts) out[name] = n;
  return out;
}

std::string CountsText(const std::map<std::string, int64_t>& counts) {
  std::vector<std::string> parts;
  for (const auto& [name, n] : counts) parts.push_back(absl::StrCat(name, " ", n));
  return absl::StrJoin(parts, ", ");
}

std::string LatencyRow(const char* name, const Distribution& d) {
  return absl::StrFormat("  %-10s %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f %8d\n", name, d.mean, d.p50,
                         d.p90, d.p95, d.p99, d.max, d.count);
}

}  // namespace

double Percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  const double h = (static_cast<double>(sorted.size()) - 1) * std::clamp(p, 0.0, 100.0) / 100.0;
  const auto i = static_cast<size_t>(std::floor(h));
  if (i + 1 >= sorted.size()) return sorted.back();
  return sorted[i] + (h - static_cast<double>(i)) * (sorted[i + 1] - sorted[i]);
}

Distribution Summarize(std::vector<double>& values) {
  Distribution d;
  if (values.empty()) return d;
  std::sort(values.begin(), values.end());
  d.count = static_cast<int64_t>(values.size());
  d.mean = std::accumulate(values.begin(), values.end(), 0.0) / static_cast<double>(d.count);
  d.p50 = Percentile(values, 50);
  d.p90 = Percentile(values, 90);
  d.p95 = Percentile(values, 95);
  d.p99 = Percentile(values, 99);
  d.max = values.back();
  return d;
}

void RecordTokenArrival(RequestRecord* r, double now_s, int tokens) {
  if (tokens <= 0) return;
  if (r->first_token_s < 0) {
    r->first_token_s = now_s;
  } else {
    const auto gap = static_cast<float>((now_s - r->last_token_s) / tokens);
    r->itl_s.insert(r->itl_s.end(), static_cast<size_t>(tokens), gap);
  }
  r->last_token_s = now_s;
  r->tokens_received += tokens;
}

std::string Slo::ToString() const {
  std::vector<std::string> parts;
  if (ttft_ms) parts.push_back(absl::StrCat("ttft_ms:", *ttft_ms));
  if (tpot_ms) parts.push_back(absl::StrCat("tpot_ms:", *tpot_ms));
  if (e2e_ms) parts.push_back(absl::StrCat("e2e_ms:", *e2e_ms));
  return absl::StrJoin(parts, ",");
}

absl::StatusOr<Slo> ParseSlo(std::string_view spec) {
  Slo slo;
  const absl::string_view text(spec.data(), spec.size());
  if (text.empty()) return slo;
  const std::string allowed =
      "allowed: comma-separated KEY:MILLISECONDS with KEY one of ttft_ms, tpot_ms, e2e_ms "
      "(e.g. --slo=ttft_ms:500,tpot_ms:50)";
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    std::vector<absl::string_view> kv = absl::StrSplit(item, absl::MaxSplits(':', 1));
    double value;
    if (kv.size() != 2 || !absl::SimpleAtod(kv[1], &value) || !std::isfinite(value) ||
        value <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--slo: '", item, "' is not KEY:MILLISECONDS with a value > 0; ", allowed));
    }
    std::optional<double>* target = nullptr;
    if (kv[0] == "ttft_ms") target = &slo.ttft_ms;
    if (kv[0] == "tpot_ms") target = &slo.tpot_ms;
    if (kv[0] == "e2e_ms") target = &slo.e2e_ms;
    if (target == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("--slo: unknown objective '", kv[0], "'; ", allowed));
    }
    if (target->has_value()) {
      return absl::InvalidArgumentError(absl::StrCat("--slo: '", kv[0], "' is given twice"));
    }
    *target = value;
  }
  return slo;
}

bool MeetsSlo(const RequestRecord& r, const Slo& slo) {
  if (!r.Succeeded()) return false;
  const double e2e_ms = (r.end_s - r.send_s) * 1e3;
  if (slo.ttft_ms) {
    if (r.first_token_s < 0 || (r.first_token_s - r.send_s) * 1e3 > *slo.ttft_ms) return false;
  }
  if (slo.tpot_ms && r.tokens_received > 1) {
    // First token's arrival unknown (see BuildPointReport): the send time bounds it from below,
    // so the TPOT checked is an upper bound.
    const double first_s = r.first_token_s >= 0 ? r.first_token_s : r.send_s;
    const double tpot_ms = (r.end_s - first_s) * 1e3 / static_cast<double>(r.tokens_received - 1);
    if (tpot_ms > *slo.tpot_ms) return false;
  }
  if (slo.e2e_ms && e2e_ms > *slo.e2e_ms) return false;
  return true;
}

PointReport BuildPointReport(const PointSetup& setup, std::vector<RequestRecord> records,
                             const PhaseMeasurements& measured, const Slo& slo) {
  PointReport r;
  r.setup = setup;
  r.slo = slo;
  r.measured = measured;
  r.duration_s = measured.duration_s;
  std::vector<double> ttft, tpot, e2e, itl, cold, warm;
  size_t itl_count = 0;
  for (const RequestRecord& rec : records) {
    if (rec.Succeeded()) itl_count += rec.itl_s.size();
  }
  itl.reserve(itl_count);
  for (RequestRecord& rec : records) {
    ++r.sent;
    r.tokens_received += rec.tokens_received;
    if (!rec.Succeeded()) {
      ++r.failed;
      ++r.failed_by_code[rec.status_code == 0 ? std::string("INCOMPLETE")
                                              : CodeName(rec.status_code)];
      continue;
    }
    ++r.succeeded;
    ++r.finish_reasons[FinishReasonName(rec.finish_reason)];
    r.prompt_tokens += rec.usage_prompt_tokens;
    r.output_tokens += rec.tokens_received;
    r.resumed_tokens += rec.usage_cached_tokens;
    if (rec.usage_generated_tokens != rec.tokens_received) ++r.usage_mismatches;
    e2e.push_back(rec.end_s - rec.send_s);
    if (rec.first_token_s >= 0) {
      const double t = rec.first_token_s - rec.send_s;
      ttft.push_back(t);
      if (rec.turn == 0) cold.push_back(t);
      if (rec.turn > 0) warm.push_back(t);
    }
    if (rec.turn > 0) {
      ++r.warm_turns;
      r.warm_prefill_tokens += rec.usage_prompt_tokens;
      r.warm_cached_tokens += static_cast<double>(rec.usage_cached_tokens);
      if (rec.usage_cached_tokens > 0) r.warm_hit_rate += 1;
    }
    // Only when the first token's arrival was seen: an HTTP stream whose text deltas were all
    // held back (partial characters) learns its token count from the final usage alone.
    if (rec.tokens_received > 1 && rec.first_token_s >= 0) {
      tpot.push_back((rec.end_s - rec.first_token_s) /
                     static_cast<double>(rec.tokens_received - 1));
    }
    itl.insert(itl.end(), rec.itl_s.begin(), rec.itl_s.end());
    std::vector<float>().swap(rec.itl_s);
    if (!slo.empty() && MeetsSlo(rec, slo)) ++r.good_requests;
  }
  auto summarize_ms = [](const std::vector<double>& seconds) {
    std::vector<double> ms = Ms(seconds);
    return Summarize(ms);
  };
  r.ttft_ms = summarize_ms(ttft);
  r.tpot_ms = summarize_ms(tpot);
  r.e2e_ms = summarize_ms(e2e);
  r.cold_ttft_ms = summarize_ms(cold);
  r.warm_ttft_ms = summarize_ms(warm);
  const double warm_turns = static_cast<double>(r.warm_turns);
  r.warm_prefill_tokens = Safe(r.warm_prefill_tokens, warm_turns);
  r.warm_cached_tokens = Safe(r.warm_cached_tokens, warm_turns);
  r.warm_hit_rate = Safe(r.warm_hit_rate, warm_turns);
  for (double& v : itl) v *= 1e3;
  r.itl_ms = Summarize(itl);
  r.request_throughput = Safe(static_cast<double>(r.succeeded), r.duration_s);
  r.output_token_throughput = Safe(static_cast<double>(r.output_tokens), r.duration_s);
  r.total_token_throughput =
      Safe(static_cast<double>(r.prompt_tokens + r.output_tokens), r.duration_s);
  r.goodput = Safe(static_cast<double>(r.good_requests), r.duration_s);
  if (setup.mode == "open") r.achieved_rate = Safe(static_cast<double>(r.sent), measured.last_send_s);
  r.cpu_us_per_token = Safe((measured.cpu_user_s + measured.cpu_system_s) * 1e6,
                            static_cast<double>(r.tokens_received));
  return r;
}

std::string RenderText(const PointReport& r) {
  const PointSetup& s = r.setup;
  std::string out;
  const char* mode_name = s.mode == "open"       ? "open loop"
                          : s.mode == "sessions" ? "sessions"
                          : s.mode == "chat"     ? "stateless chat"
                                                 : "closed loop";
  absl::StrAppend(&out, "== mamba-client load: ", s.label, " (", mode_name, ") ==\n");
  absl::StrAppend(&out, absl::StrFormat("Requests:                sent %d, succeeded %d, failed %d",
                                        r.sent, r.succeeded, r.failed));
  if (!r.failed_by_code.empty()) absl::StrAppend(&out, " (", CountsText(r.failed_by_code), ")");
  absl::StrAppend(&out, "\n");
  if (!r.finish_reasons.empty()) {
    absl::StrAppend(&out, "Finish reasons:          ", CountsText(r.finish_reasons), "\n");
  }
  absl::StrAppend(&out, absl::StrFormat("Duration:                %.3f s\n", r.duration_s));
  if (s.mode == "open") {
    absl::StrAppend(&out, absl::StrFormat(
                              "Arrival rate:            target %.2f req/s, achieved %.2f req/s "
                              "(burstiness %g%s)\n",
                              s.rate, r.achieved_rate, s.burstiness,
                              s.concurrency > 0 ? absl::StrCat(", cap ", s.concurrency) : ""));
  }
  absl::StrAppend(&out, absl::StrFormat("Request throughput:      %.2f req/s\n",
                                        r.request_throughput));
  absl::StrAppend(&out, absl::StrFormat("Output token throughput: %.1f tok/s\n",
                                        r.output_token_throughput));
  absl::StrAppend(&out, absl::StrFormat(
                            "Total token throughput:  %.1f tok/s (prompt %d + output %d tokens)\n",
                            r.total_token_throughput, r.prompt_tokens, r.output_tokens));
  if (r.usage_mismatches > 0) {
    absl::StrAppend(&out, absl::StrFormat(
                              "WARNING: %d requests received a token count that differs from "
                              "the server's usage\n",
                              r.usage_mismatches));
  }
  if (!r.slo.empty()) {
    absl::StrAppend(&out, absl::StrFormat("Goodput (%s): %d requests (%.1f%%), %.2f req/s\n",
                                          r.slo.ToString(), r.good_requests,
                                          100.0 * Safe(static_cast<double>(r.good_requests),
                                                       static_cast<double>(r.sent)),
                                          r.goodput));
  }
  absl::StrAppend(&out, absl::StrFormat("Latency (ms)    %9s %9s %9s %9s %9s %9s %8s\n", "mean",
                                        "p50", "p90", "p95", "p99", "max", "n"));
  absl::StrAppend(&out, LatencyRow("TTFT", r.ttft_ms), LatencyRow("ITL", r.itl_ms),
                  LatencyRow("TPOT", r.tpot_ms), LatencyRow("E2E", r.e2e_ms));
  if (s.mode == "sessions" || s.mode == "chat") {
    absl::StrAppend(&out, LatencyRow("cold TTFT", r.cold_ttft_ms),
                    LatencyRow("warm TTFT", r.warm_ttft_ms));
    absl::StrAppend(&out, absl::StrFormat(
                              "Warm turns:              %d; per turn: prefilled %.1f tokens, "
                              "reused %.1f tokens; %.1f%% reused a state\n",
                              r.warm_turns, r.warm_prefill_tokens, r.warm_cached_tokens,
                              100.0 * r.warm_hit_rate));
  }
  if (s.mode == "chat") {
    absl::StrAppend(&out, absl::StrFormat("Conversations:           %d x %d turns (think %g ms), "
                                          "stateless\n",
                                          s.sessions, s.turns, s.think_time_ms));
  }
  if (s.mode == "sessions") {
    const PhaseMeasurements& m = r.measured;
    absl::StrAppend(&out, absl::StrFormat(
                              "Sessions:                %d x %d turns (think %g ms): created %d, "
                              "closed %d; resumed tokens %d\n",
                              s.sessions, s.turns, s.think_time_ms, m.sessions_created,
                              m.sessions_closed, r.resumed_tokens));
    if (!m.session_create_failed.empty()) {
      absl::StrAppend(&out, "  create failed:         ", CountsText(m.session_create_failed),
                      "\n");
    }
    if (!m.session_close_failed.empty()) {
      absl::StrAppend(&out, "  close failed:          ", CountsText(m.session_close_failed), "\n");
    }
    if (m.session_ids_chosen_by_server > 0) {
      absl::StrAppend(&out, absl::StrFormat(
                                "  %d sessions got a server-chosen id (client ids not adopted)\n",
                                m.session_ids_chosen_by_server));
    }
  }
  const PhaseMeasurements& m = r.measured;
  absl::StrAppend(&out, absl::StrFormat(
                            "Client:                  %.1f us CPU per token (user %.3f s + system "
                            "%.3f s over %d tokens), %d channels, max in flight %d\n",
                            r.cpu_us_per_token, m.cpu_user_s, m.cpu_system_s, r.tokens_received,
                            m.channels, m.max_in_flight));
  return out;
}

std::string RenderSweepHeader() {
  return absl::StrFormat("%-18s %6s %6s %5s %8s %9s %9s %8s %8s %8s %8s %8s %8s %8s %7s\n",
                         "point", "sent", "ok", "fail", "achieved", "req/s", "out_tok/s",
                         "ttft_p50", "ttft_p99", "itl_p50", "itl_p99", "tpot_p50", "e2e_p50",
                         "goodput", "us/tok");
}

std::string RenderSweepRow(const PointReport& r) {
  const std::string achieved =
      r.setup.mode == "open" ? absl::StrFormat("%.2f", r.achieved_rate) : "-";
  const std::string goodput = r.slo.empty() ? "-" : absl::StrFormat("%.2f", r.goodput);
  return absl::StrFormat(
      "%-18s %6d %6d %5d %8s %9.2f %9.1f %8.2f %8.2f %8.2f %8.2f %8.2f %8.1f %8s %7.2f\n",
      r.setup.label, r.sent, r.succeeded, r.failed, achieved, r.request_throughput,
      r.output_token_throughput, r.ttft_ms.p50, r.ttft_ms.p99, r.itl_ms.p50, r.itl_ms.p99,
      r.tpot_ms.p50, r.e2e_ms.p50, goodput, r.cpu_us_per_token);
}

json PointJson(const PointReport& r) {
  const PointSetup& s = r.setup;
  const PhaseMeasurements& m = r.measured;
  json setup = {{"label", s.label}, {"mode", s.mode}};
  if (s.mode == "closed") setup["concurrency"] = s.concurrency;
  if (s.mode == "open") {
    setup["rate"] = s.rate;
    setup["burstiness"] = s.burstiness;
    setup["max_concurrency"] = s.concurrency;
  }
  if (s.mode == "sessions") {
    setup["sessions"] = s.sessions;
    setup["turns"] = s.turns;
    setup["think_time_ms"] = s.think_time_ms;
  }
  json out = {
      {"setup", setup},
      {"requests",
       {{"sent", r.sent},
        {"succeeded", r.succeeded},
        {"failed", r.failed},
        {"failed_by_code", CountsJson(r.failed_by_code)}}},
      {"finish_reasons", CountsJson(r.finish_reasons)},
      {"duration_s", r.duration_s},
      {"request_throughput", r.request_throughput},
      {"output_token_throughput", r.output_token_throughput},
      {"total_token_throughput", r.total_token_throughput},
      {"tokens",
       {{"prompt", r.prompt_tokens},
        {"output", r.output_tokens},
        {"received", r.tokens_received},
        {"usage_mismatches", r.usage_mismatches}}},
      {"ttft_ms", DistributionJson(r.ttft_ms)},
      {"itl_ms", DistributionJson(r.itl_ms)},
      {"tpot_ms", DistributionJson(r.tpot_ms)},
      {"e2e_ms", DistributionJson(r.e2e_ms)},
      {"client",
       {{"cpu_user_s", m.cpu_user_s},
        {"cpu_system_s", m.cpu_system_s},
        {"cpu_us_per_token", r.cpu_us_per_token},
        {"channels", m.channels},
        {"max_in_flight", m.max_in_flight}}},
  };
  if (s.mode == "open") {
    out["arrival_rate"] = {{"target", s.rate}, {"achieved", r.achieved_rate}};
  }
  if (!r.slo.empty()) {
    out["goodput"] = {{"slo", r.slo.ToString()},
                      {"good_requests", r.good_requests},
                      {"goodput", r.goodput}};
  }
  if (s.mode == "sessions" || s.mode == "chat") {
    out["turns"] = {{"cold_ttft_ms", DistributionJson(r.cold_ttft_ms)},
                    {"warm_ttft_ms", DistributionJson(r.warm_ttft_ms)},
                    {"warm_turns", r.warm_turns},
                    {"warm_prefill_tokens", r.warm_prefill_tokens},
                    {"warm_cached_tokens", r.warm_cached_tokens},
                    {"warm_hit_rate", r.warm_hit_rate}};
  }
  if (s.mode == "sessions") {
    out["sessions"] = {{"created", m.sessions_created},
                       {"closed", m.sessions_closed},
                       {"create_failed_by_code", CountsJson(m.session_create_failed)},
                       {"close_failed_by_code", CountsJson(m.session_close_failed)},
                       {"ids_chosen_by_server", m.session_ids_chosen_by_server},
                       {"cold_ttft_ms", DistributionJson(r.cold_ttft_ms)},
                       {"warm_ttft_ms", DistributionJson(r.warm_ttft_ms)},
                       {"resumed_tokens", r.resumed_tokens}};
  }
  return out;
}

json ReportJson(const json& config, const json& server, const std::vector<PointReport>& points) {
  json list = json::array();
  for (const PointReport& p : points) list.push_back(PointJson(p));
  return {{"config", config}, {"server", server}, {"points", std::move(list)}};
}

namespace {

constexpr const char* kDistributionNames[] = {"ttft_ms", "itl_ms", "tpot_ms", "e2e_ms",
                                              "cold_ttft_ms", "warm_ttft_ms"};
constexpr const char* kStatNames[] = {"mean", "p50", "p90", "p95", "p99", "max"};

std::vector<double> Stats(const Distribution& d) {
  return {d.mean, d.p50, d.p90, d.p95, d.p99, d.max};
}

std::string Csv(double v) { return absl::StrFormat("%.6g", v); }

// Quotes a CSV field when it holds a separator, a quote or a newline (RFC 4180).
std::string CsvField(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out.push_back('"');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

}  // namespace

std::string CsvHeader() {
  std::vector<std::string> columns = {
      "label", "mode", "concurrency", "target_rate", "achieved_rate", "burstiness", "sessions",
      "turns", "sent", "succeeded", "failed", "failed_by_code", "duration_s",
      "request_throughput", "output_token_throughput", "total_token_throughput",
      "prompt_tokens", "output_tokens", "usage_mismatches"};
  for (const char* d : kDistributionNames) {
    for (const char* s : kStatNames) columns.push_back(absl::StrCat(d, "_", s));
  }
  for (const char* c : {"slo", "good_requests", "goodput", "resumed_tokens", "warm_turns",
                        "warm_prefill_tokens", "warm_cached_tokens", "warm_hit_rate",
                        "cpu_us_per_token", "max_in_flight", "channels"}) {
    columns.push_back(c);
  }
  return absl::StrJoin(columns, ",") + "\n";
}

std::string CsvRow(const PointReport& r) {
  const PointSetup& s = r.setup;
  std::vector<std::string> failed;
  for (const auto& [name, n] : r.failed_by_code) failed.push_back(absl::StrCat(name, ":", n));
  std::vector<std::string> row = {CsvField(s.label),
                                  s.mode,
                                  absl::StrCat(s.concurrency),
                                  s.mode == "open" ? Csv(s.rate) : "",
                                  s.mode == "open" ? Csv(r.achieved_rate) : "",
                                  s.mode == "open" ? Csv(s.burstiness) : "",
                                  absl::StrCat(s.sessions),
                                  absl::StrCat(s.turns),
                                  absl::StrCat(r.sent),
                                  absl::StrCat(r.succeeded),
                                  absl::StrCat(r.failed),
                                  CsvField(absl::StrJoin(failed, ";")),
                                  Csv(r.duration_s),
                                  Csv(r.request_throughput),
                                  Csv(r.output_token_throughput),
                                  Csv(r.total_token_throughput),
                                  absl::StrCat(r.prompt_tokens),
                                  absl::StrCat(r.output_tokens),
                                  absl::StrCat(r.usage_mismatches)};
  for (const Distribution* d : {&r.ttft_ms, &r.itl_ms, &r.tpot_ms, &r.e2e_ms, &r.cold_ttft_ms,
                                &r.warm_ttft_ms}) {
    for (double v : Stats(*d)) row.push_back(Csv(v));
  }
  row.push_back(CsvField(r.slo.ToString()));
  row.push_back(absl::StrCat(r.good_requests));
  row.push_back(r.slo.empty() ? "" : Csv(r.goodput));
  row.push_back(absl::StrCat(r.resumed_tokens));
  row.push_back(absl::StrCat(r.warm_turns));
  row.push_back(Csv(r.warm_prefill_tokens));
  row.push_back(Csv(r.warm_cached_tokens));
  row.push_back(Csv(r.warm_hit_rate));
  row.push_back(Csv(r.cpu_us_per_token));
  row.push_back(absl::StrCat(r.measured.max_in_flight));
  row.push_back(absl::StrCat(r.measured.channels));
  return absl::StrJoin(row, ",") + "\n";
}

}  // namespace mamba::client::load
