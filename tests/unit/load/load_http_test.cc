// `mamba-client load --http`: the request body a workload request becomes, and how HTTP and
// OpenAI error types map to the gRPC codes the report counts by.
#include "client/load_http.h"

#include <string>

#include "grpcpp/support/status.h"
#include "gtest/gtest.h"

namespace mamba::client::load {
namespace {

namespace v1 = ::mambaserve::v1;
using nlohmann::json;

TEST(LoadHttpTest, TokenIdRequestBecomesAStreamingCompletion) {
  v1::GenerateRequest request;
  for (int id : {5, 6, 7}) request.mutable_token_ids()->add_ids(id);
  request.mutable_stopping()->set_max_tokens(9);
  request.mutable_stopping()->set_ignore_eos(true);
  request.mutable_stopping()->add_stop("\n\n");
  request.mutable_stopping()->add_stop_token_ids(2);
  v1::SamplingParams* s = request.mutable_sampling();
  s->set_temperature(0.5f);
  s->set_top_k(40);
  s->set_top_p(0.9f);
  s->set_seed(17);
  s->set_presence_penalty(0.25f);
  const json body = CompletionBody(request, "m");
  EXPECT_EQ(body["model"], "m");
  EXPECT_EQ(body["prompt"], json::array({5, 6, 7}));
  EXPECT_EQ(body["stream"], true);
  EXPECT_EQ(body["stream_options"]["include_usage"], true);
  EXPECT_EQ(body["max_tokens"], 9);
  EXPECT_EQ(body["ignore_eos"], true);
  EXPECT_EQ(body["stop"], json::array({"\n\n"}));
  EXPECT_EQ(body["stop_token_ids"], json::array({2}));
  EXPECT_FLOAT_EQ(body["temperature"].get<float>(), 0.5f);
  EXPECT_EQ(body["top_k"], 40);
  EXPECT_FLOAT_EQ(body["top_p"].get<float>(), 0.9f);
  EXPECT_EQ(body["seed"], 17);
  EXPECT_FLOAT_EQ(body["presence_penalty"].get<float>(), 0.25f);
  EXPECT_FALSE(body.contains("frequency_penalty"));  // unset fields keep the server's defaults
  EXPECT_FALSE(body.contains("min_p"));
  EXPECT_FALSE(body.contains("repetition_penalty"));
}

TEST(LoadHttpTest, TextRequestSendsItsTextAndTheGrpcDefaultTemperature) {
  v1::GenerateRequest request;
  request.set_text("hello there");
  const json body = CompletionBody(request, "default");
  EXPECT_EQ(body["prompt"], "hello there");
  EXPECT_EQ(body["temperature"], 1.0);
  EXPECT_FALSE(body.contains("max_tokens"));
  EXPECT_FALSE(body.contains("ignore_eos"));
}

TEST(LoadHttpTest, HttpStatusesAndErrorTypesMapToTheGrpcCodes) {
  EXPECT_EQ(GrpcCodeForHttpStatus(200), grpc::StatusCode::OK);
  EXPECT_EQ(GrpcCodeForHttpStatus(400), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(GrpcCodeForHttpStatus(413), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(GrpcCodeForHttpStatus(401), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(GrpcCodeForHttpStatus(404), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(GrpcCodeForHttpStatus(429), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(GrpcCodeForHttpStatus(503), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(GrpcCodeForHttpStatus(504), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ(GrpcCodeForHttpStatus(500), grpc::StatusCode::INTERNAL);
  EXPECT_EQ(GrpcCodeForHttpStatus(418), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(GrpcCodeForErrorType("rate_limit_error"), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(GrpcCodeForErrorType("invalid_request_error"), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(GrpcCodeForErrorType("timeout_error"), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ(GrpcCodeForErrorType("server_error"), grpc::StatusCode::INTERNAL);
  EXPECT_EQ(GrpcCodeForErrorType(""), grpc::StatusCode::INTERNAL);
}

}  // namespace
}  // namespace mamba::client::load
