// mamba-client generate: streams a generation. Plain mode prints the text as it arrives (a
// summary goes to stderr); --json prints each response as one object per line, then a summary
// object with everything the stream carried.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "client/client_call.h"
#include "client/flag_values.h"
#include "client/subcommands.h"
#include "mambaserve/v1/generation.grpc.pb.h"

ABSL_FLAG(int32_t, max_tokens, -1, "Tokens to generate at most; -1 = the server's default (16)");
ABSL_FLAG(double, temperature, 0, "0 = greedy");
ABSL_FLAG(int32_t, top_k, 0, "0 = off");
ABSL_FLAG(double, top_p, 1.0, "In (0, 1]; 1 = off");
ABSL_FLAG(double, min_p, 0, "In [0, 1]; 0 = off");
ABSL_FLAG(double, repetition_penalty, 1.0, "> 0; 1 = off");
ABSL_FLAG(double, presence_penalty, 0.0,
          "[-2, 2]; lowers tokens already generated once (OpenAI's); 0 = off");
ABSL_FLAG(double, frequency_penalty, 0.0,
          "[-2, 2]; lowers tokens by how often they were generated (OpenAI's); 0 = off");
ABSL_FLAG(int64_t, seed, -1, "Sampling seed; -1 = the server picks one");
ABSL_FLAG(std::string, stop, "",
          "Stop strings, comma-separated; escapes: \\n \\t \\, \\\\ (e.g. --stop='\\n,END')");
ABSL_FLAG(std::string, stop_token_ids, "", "Stop token ids, comma-separated");
ABSL_FLAG(bool, ignore_eos, false, "Keep generating past the end-of-text token");
ABSL_FLAG(int32_t, logprobs, -1,
          "-1 = none; 0 = the chosen token's log-probability; 1..20 = also that many top ones");
ABSL_FLAG(std::string, request_id, "", "A request id for the server's logs");

namespace mamba::client {
namespace {

namespace v1 = ::mambaserve::v1;
using nlohmann::json;

const char* FinishReasonName(v1::FinishReason reason) {
  switch (reason) {
    case v1::FINISH_REASON_LENGTH:
      return "length";
    case v1::FINISH_REASON_STOP:
      return "stop";
    case v1::FINISH_REASON_EOS:
      return "eos";
    case v1::FINISH_REASON_CANCELLED:
      return "cancelled";
    default:
      return "";
  }
}

json LogprobJson(const v1::TokenLogprobs& lp) {
  json entry = {{"token_id", lp.chosen().token_id()}, {"logprob", lp.chosen().logprob()}};
  json top = json::array();
  for (const v1::TokenLogprob& alt : lp.top()) {
    top.push_back({{"token_id", alt.token_id()}, {"logprob", alt.logprob()}});
  }
  entry["top"] = std::move(top);
  return entry;
}

json UsageJson(const v1::Usage& usage) {
  return {{"prompt_tokens", usage.prompt_tokens()},
          {"generated_tokens", usage.generated_tokens()},
          {"cached_tokens", usage.cached_tokens()}};
}

json TimingJson(const v1::Timing& timing) {
  return {{"queue_seconds", timing.queue_seconds()},
          {"time_to_first_token_seconds", timing.time_to_first_token_seconds()},
          {"total_seconds", timing.total_seconds()}};
}

json ResponseJson(const v1::GenerateResponse& r) {
  json out = {{"token_ids", json(std::vector<int32_t>(r.token_ids().begin(), r.token_ids().end()))},
              {"text", r.text()}};
  if (r.logprobs_size() > 0) {
    json lps = json::array();
    for (const v1::TokenLogprobs& lp : r.logprobs()) lps.push_back(LogprobJson(lp));
    out["logprobs"] = std::move(lps);
  }
  if (r.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
    out["finish_reason"] = FinishReasonName(r.finish_reason());
    out["usage"] = UsageJson(r.usage());
    out["timing"] = TimingJson(r.timing());
  }
  if (!r.request_id().empty()) out["request_id"] = r.request_id();
  return out;
}

absl::StatusOr<v1::GenerateRequest> RequestFromFlags() {
  v1::GenerateRequest request;
  absl::StatusOr<PromptInput> input = PromptFromFlags();
  if (!input.ok()) return input.status();
  switch (input->kind) {
    case PromptInput::Kind::kText:
      request.set_text(input->text);
      break;
    case PromptInput::Kind::kIds:
      request.mutable_token_ids()->mutable_ids()->Add(input->ids.begin(), input->ids.end());
      break;
    case PromptInput::Kind::kNone:
      return absl::InvalidArgumentError("generate needs --prompt=TEXT or --prompt_ids=1,2,3");
  }
  request.set_session_id(absl::GetFlag(FLAGS_session));
  request.set_request_id(absl::GetFlag(FLAGS_request_id));

  SamplingFromFlags(request.mutable_sampling());

  v1::StoppingCriteria* stopping = request.mutable_stopping();
  // Out-of-range values are sent as given: the server's message says what is allowed.
  if (absl::GetFlag(FLAGS_max_tokens) != -1) {
    stopping->set_max_tokens(absl::GetFlag(FLAGS_max_tokens));
  }
  absl::StatusOr<std::vector<std::string>> stops =
      ParseStringList(absl::GetFlag(FLAGS_stop), "stop");
  if (!stops.ok()) return stops.status();
  for (std::string& s : *stops) stopping->add_stop(std::move(s));
  absl::StatusOr<std::vector<int32_t>> stop_ids =
      ParseIdList(absl::GetFlag(FLAGS_stop_token_ids), "stop_token_ids");
  if (!stop_ids.ok()) return stop_ids.status();
  stopping->mutable_stop_token_ids()->Add(stop_ids->begin(), stop_ids->end());
  stopping->set_ignore_eos(absl::GetFlag(FLAGS_ignore_eos));

  if (absl::GetFlag(FLAGS_logprobs) >= 0 || absl::GetFlag(FLAGS_logprobs) < -1) {
    request.set_logprobs(absl::GetFlag(FLAGS_logprobs));
  }
  return request;
}

}  // namespace

void SamplingFromFlags(v1::SamplingParams* sampling) {
  sampling->set_temperature(static_cast<float>(absl::GetFlag(FLAGS_temperature)));
  sampling->set_top_k(absl::GetFlag(FLAGS_top_k));
  if (absl::GetFlag(FLAGS_top_p) != 1.0) {
    sampling->set_top_p(static_cast<float>(absl::GetFlag(FLAGS_top_p)));
  }
  sampling->set_min_p(static_cast<float>(absl::GetFlag(FLAGS_min_p)));
  if (absl::GetFlag(FLAGS_repetition_penalty) != 1.0) {
    sampling->set_repetition_penalty(static_cast<float>(absl::GetFlag(FLAGS_repetition_penalty)));
  }
  sampling->set_presence_penalty(static_cast<float>(absl::GetFlag(FLAGS_presence_penalty)));
  sampling->set_frequency_penalty(static_cast<float>(absl::GetFlag(FLAGS_frequency_penalty)));
  if (absl::GetFlag(FLAGS_seed) >= 0) {
    sampling->set_seed(static_cast<uint64_t>(absl::GetFlag(FLAGS_seed)));
  }
}

int RunGenerate(const Args& args) {
  if (!args.empty())
    return ReportUsageError(absl::StrCat("generate: unexpected argument '", args[0], "'"));
  absl::StatusOr<v1::GenerateRequest> request = RequestFromFlags();
  if (!request.ok()) return ReportUsageError(std::string(request.status().message()));

  auto stub = v1::Generation::NewStub(OpenChannel());
  std::unique_ptr<grpc::ClientContext> context = NewContext(request->session_id());
  std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader =
      stub->Generate(context.get(), *request);

  const bool as_json = JsonOutput();
  std::vector<int32_t> all_ids;
  std::string all_text;
  json all_logprobs = json::array();
  v1::GenerateResponse last_final;
  bool finished = false;
  v1::GenerateResponse response;
  while (reader->Read(&response)) {
    all_ids.insert(all_ids.end(), response.token_ids().begin(), response.token_ids().end());
    all_text += response.text();
    for (const v1::TokenLogprobs& lp : response.logprobs()) all_logprobs.push_back(LogprobJson(lp));
    if (as_json) {
      PrintJson(ResponseJson(response));
    } else if (!response.text().empty()) {
      std::fwrite(response.text().data(), 1, response.text().size(), stdout);
      std::fflush(stdout);
    }
    if (response.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
      finished = true;
      last_final = response;
    }
  }
  const grpc::Status status = reader->Finish();
  if (!as_json && !all_text.empty()) {
    std::fputc('\n', stdout);
    std::fflush(stdout);
  }
  if (!status.ok()) return ReportFailure(status);
  if (!finished) {
    return ReportFailure(
        grpc::Status(grpc::StatusCode::INTERNAL, "the stream ended without a finish reason"));
  }
  if (as_json) {
    json summary = {{"token_ids", all_ids},
                    {"text", all_text},
                    {"finish_reason", FinishReasonName(last_final.finish_reason())},
                    {"usage", UsageJson(last_final.usage())},
                    {"timing", TimingJson(last_final.timing())},
                    {"request_id", last_final.request_id()}};
    if (request->has_logprobs()) summary["logprobs"] = std::move(all_logprobs);
    PrintJson(summary);
  } else {
    std::fprintf(
        stderr,
        "[finish_reason=%s prompt_tokens=%d generated_tokens=%d cached_tokens=%lld ttft=%.3fs]\n",
        FinishReasonName(last_final.finish_reason()), last_final.usage().prompt_tokens(),
        last_final.usage().generated_tokens(),
        static_cast<long long>(last_final.usage().cached_tokens()),
        last_final.timing().time_to_first_token_seconds());
  }
  return kExitOk;
}

}  // namespace mamba::client
