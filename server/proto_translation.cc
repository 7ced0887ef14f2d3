#include "server/proto_translation.h"

#include <algorithm>
#include <cstdint>

#include "absl/time/time.h"
#include "google/protobuf/timestamp.pb.h"

namespace mamba::server {
namespace {

namespace v1 = ::mambaserve::v1;

void FillTimestamp(absl::Time t, google::protobuf::Timestamp* out) {
  const timespec ts = absl::ToTimespec(t);
  out->set_seconds(ts.tv_sec);
  out->set_nanos(static_cast<int32_t>(ts.tv_nsec));
}

void FillLogprob(const sampling::TokenLogprob& in, const tokenizer::Tokenizer& tokenizer,
                 v1::TokenLogprob* out) {
  out->set_token_id(in.token);
  out->set_logprob(in.logprob);
  const int32_t id = in.token;
  absl::StatusOr<std::string> bytes = tokenizer.DecodeBytes(absl::Span<const int32_t>(&id, 1));
  if (bytes.ok()) out->set_token(*std::move(bytes));
}

}  // namespace

v1::FinishReason ToProtoFinishReason(FinishReason reason) {
  switch (reason) {
    case FinishReason::kLength:
      return v1::FINISH_REASON_LENGTH;
    case FinishReason::kStop:
      return v1::FINISH_REASON_STOP;
    case FinishReason::kEos:
      return v1::FINISH_REASON_EOS;
    case FinishReason::kCancelled:
      return v1::FINISH_REASON_CANCELLED;
    case FinishReason::kError:
      return v1::FINISH_REASON_UNSPECIFIED;
  }
  return v1::FINISH_REASON_UNSPECIFIED;
}

void FillGenerateResponse(const GenerationChunk& chunk, const tokenizer::Tokenizer& tokenizer,
                          const std::string& request_id, v1::GenerateResponse* out) {
  out->Clear();
  out->mutable_token_ids()->Add(chunk.token_ids.begin(), chunk.token_ids.end());
  out->set_text(chunk.text);
  out->mutable_logprobs()->Reserve(static_cast<int>(chunk.logprobs.size()));
  for (const TokenLogprobs& lp : chunk.logprobs) {
    v1::TokenLogprobs* entry = out->add_logprobs();
    FillLogprob(lp.chosen, tokenizer, entry->mutable_chosen());
    for (const sampling::TokenLogprob& alt : lp.top) FillLogprob(alt, tokenizer, entry->add_top());
  }
  out->set_request_id(request_id);
  if (!chunk.finished) return;
  const GenerationResult& result = chunk.result;
  out->set_finish_reason(ToProtoFinishReason(result.finish_reason));
  v1::Usage* usage = out->mutable_usage();
  usage->set_prompt_tokens(result.usage.prompt_tokens);
  usage->set_generated_tokens(result.usage.generated_tokens);
  usage->set_cached_tokens(result.usage.cached_tokens);
  v1::Timing* timing = out->mutable_timing();
  timing->set_queue_seconds(absl::ToDoubleSeconds(result.timing.queue_time));
  timing->set_time_to_first_token_seconds(absl::ToDoubleSeconds(result.timing.time_to_first_token));
  timing->set_total_seconds(absl::ToDoubleSeconds(result.timing.total));
}

void FillSession(const SessionInfo& info, v1::Session* out) {
  out->set_session_id(info.session_id);
  out->set_tokens(info.tokens);
  FillTimestamp(info.created, out->mutable_create_time());
  FillTimestamp(info.last_used, out->mutable_last_use_time());
  FillTimestamp(info.expires, out->mutable_expire_time());
  const int64_t ttl = absl::ToInt64Seconds(info.ttl);
  out->set_ttl_seconds(static_cast<uint32_t>(std::clamp<int64_t>(ttl, 0, UINT32_MAX)));
  out->set_tier(info.tier == StateTier::kHost ? v1::STATE_TIER_HOST : v1::STATE_TIER_GPU);
  out->set_busy(info.busy);
  out->set_broken_reason(info.broken_reason);
  out->set_last_generated_tokens(info.last_generated_tokens);
}

void FillModelInfo(const ModelInfo& info, const RequestLimits& limits, int32_t max_sessions,
                   v1::ModelInfo* out) {
  out->set_name(info.name);
  out->set_architecture(model::FamilyModelType(info.config.family));
  out->set_family(model::FamilyName(info.config.family));
  if (info.config.family == model::ModelFamily::kMamba2) {
    out->set_num_heads(info.config.n_heads);
    out->set_head_dim(info.config.head_dim);
    out->set_n_groups(info.config.n_groups);
  }
  out->set_d_model(info.config.d_model);
  out->set_n_layer(info.config.n_layer);
  out->set_d_state(info.config.d_state);
  out->set_d_inner(info.config.d_inner);
  out->set_d_conv(info.config.d_conv);
  out->set_dt_rank(info.config.dt_rank);
  out->set_vocab_size(info.config.vocab_size);
  out->set_num_parameters(info.num_parameters);
  out->set_weight_dtype(info.weight_dtype);
  out->set_state_dtype(info.state_dtype);
  out->set_backend(info.backend);
  out->set_device(info.device);
  out->set_num_state_slots(info.num_slots);
  out->set_state_bytes_per_session(info.state_bytes_per_session);
  out->set_weight_bytes(info.weight_bytes);
  out->set_max_prompt_tokens(limits.max_prompt_tokens);
  out->set_max_new_tokens(limits.max_new_tokens);
  out->set_max_sessions(max_sessions);
  out->set_eos_token_id(info.eos_token_id.value_or(-1));
  out->set_tokenizer(info.tokenizer_kind);
  out->set_model_identity(info.identity);
  out->set_tokenizer_vocab_size(info.tokenizer_vocab_size);
}

}  // namespace mamba::server
