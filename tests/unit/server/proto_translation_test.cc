#include "server/proto_translation.h"

#include "gtest/gtest.h"

namespace mamba::server {
namespace {

namespace v1 = ::mambaserve::v1;

TEST(ProtoTranslationTest, FinishReasons) {
  EXPECT_EQ(ToProtoFinishReason(FinishReason::kLength), v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(ToProtoFinishReason(FinishReason::kStop), v1::FINISH_REASON_STOP);
  EXPECT_EQ(ToProtoFinishReason(FinishReason::kEos), v1::FINISH_REASON_EOS);
  EXPECT_EQ(ToProtoFinishReason(FinishReason::kCancelled), v1::FINISH_REASON_CANCELLED);
  EXPECT_EQ(ToProtoFinishReason(FinishReason::kError), v1::FINISH_REASON_UNSPECIFIED);
}

TEST(ProtoTranslationTest, ChunkWithoutFinishHasNoSummary) {
  auto tokenizer = tokenizer::MakeByteTokenizer({"<|endoftext|>"});
  GenerationChunk chunk;
  chunk.token_ids = {'h', 'i'};
  chunk.text = "hi";
  v1::GenerateResponse out;
  out.set_finish_reason(v1::FINISH_REASON_STOP);  // stale content is cleared
  FillGenerateResponse(chunk, *tokenizer, "r1", &out);
  EXPECT_EQ(out.token_ids_size(), 2);
  EXPECT_EQ(out.text(), "hi");
  EXPECT_EQ(out.request_id(), "r1");
  EXPECT_EQ(out.finish_reason(), v1::FINISH_REASON_UNSPECIFIED);
  EXPECT_FALSE(out.has_usage());
  EXPECT_FALSE(out.has_timing());
  EXPECT_EQ(out.logprobs_size(), 0);
}

TEST(ProtoTranslationTest, LastChunkCarriesUsageTimingAndLogprobs) {
  auto tokenizer = tokenizer::MakeByteTokenizer({"<|endoftext|>"});
  GenerationChunk chunk;
  chunk.token_ids = {0xC3};  // the first byte of a two-byte character
  TokenLogprobs lp;
  lp.chosen = {0xC3, -0.5f};
  lp.top = {{0xC3, -0.5f}, {'a', -1.5f}};
  chunk.logprobs = {lp};
  chunk.finished = true;
  chunk.result.finish_reason = FinishReason::kEos;
  chunk.result.usage = {3, 7, 11};
  chunk.result.timing.queue_time = absl::Milliseconds(2);
  chunk.result.timing.time_to_first_token = absl::Milliseconds(30);
  chunk.result.timing.total = absl::Seconds(1);
  v1::GenerateResponse out;
  FillGenerateResponse(chunk, *tokenizer, "r2", &out);
  EXPECT_EQ(out.finish_reason(), v1::FINISH_REASON_EOS);
  EXPECT_EQ(out.usage().prompt_tokens(), 3);
  EXPECT_EQ(out.usage().generated_tokens(), 7);
  EXPECT_EQ(out.usage().cached_tokens(), 11);
  EXPECT_DOUBLE_EQ(out.timing().queue_seconds(), 0.002);
  EXPECT_DOUBLE_EQ(out.timing().time_to_first_token_seconds(), 0.03);
  EXPECT_DOUBLE_EQ(out.timing().total_seconds(), 1.0);
  ASSERT_EQ(out.logprobs_size(), 1);
  EXPECT_EQ(out.logprobs(0).chosen().token_id(), 0xC3);
  EXPECT_FLOAT_EQ(out.logprobs(0).chosen().logprob(), -0.5f);
  EXPECT_EQ(out.logprobs(0).chosen().token(), "\xC3");  // raw bytes, even a partial character
  ASSERT_EQ(out.logprobs(0).top_size(), 2);
  EXPECT_EQ(out.logprobs(0).top(1).token(), "a");
}

TEST(ProtoTranslationTest, Session) {
  SessionInfo info;
  info.session_id = "0123456789abcdef0123456789abcdef";
  info.tokens = 42;
  info.created = absl::FromUnixSeconds(1000);
  info.last_used = absl::FromUnixMillis(2000500);
  info.expires = absl::FromUnixSeconds(3000);
  info.ttl = absl::Seconds(900);
  info.tier = StateTier::kHost;
  info.busy = true;
  v1::Session out;
  FillSession(info, &out);
  EXPECT_EQ(out.session_id(), info.session_id);
  EXPECT_EQ(out.tokens(), 42);
  EXPECT_EQ(out.create_time().seconds(), 1000);
  EXPECT_EQ(out.last_use_time().seconds(), 2000);
  EXPECT_EQ(out.last_use_time().nanos(), 500000000);
  EXPECT_EQ(out.expire_time().seconds(), 3000);
  EXPECT_EQ(out.ttl_seconds(), 900u);
  EXPECT_EQ(out.tier(), v1::STATE_TIER_HOST);
  EXPECT_TRUE(out.busy());
}

TEST(ProtoTranslationTest, ModelInfoIncludesLimits) {
  ModelInfo info;
  info.name = "synthetic:tiny";
  info.config.vocab_size = 257;
  info.eos_token_id = std::nullopt;
  RequestLimits limits;
  limits.max_prompt_tokens = 10;
  limits.max_new_tokens = 20;
  v1::ModelInfo out;
  FillModelInfo(info, limits, 30, &out);
  EXPECT_EQ(out.name(), "synthetic:tiny");
  EXPECT_EQ(out.architecture(), "mamba");
  EXPECT_EQ(out.vocab_size(), 257);
  EXPECT_EQ(out.max_prompt_tokens(), 10);
  EXPECT_EQ(out.max_new_tokens(), 20);
  EXPECT_EQ(out.max_sessions(), 30);
  EXPECT_EQ(out.eos_token_id(), -1);
}

}  // namespace
}  // namespace mamba::server
