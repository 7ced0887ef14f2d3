#include "server/model_service.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/proto_translation.h"
#include "server/request_validation.h"
#include "server/unary_call.h"

namespace mamba::server {
namespace {

namespace v1 = ::mambaserve::v1;

}  // namespace

grpc::ServerUnaryReactor* ModelService::Tokenize(grpc::CallbackServerContext* context,
                                                 const grpc::ByteBuffer* request,
                                                 grpc::ByteBuffer* response) {
  UnaryCall call{state_, context->DefaultReactor(), response, "Tokenize", absl::Now(), ""};
  v1::TokenizeRequest proto;
  Engine* engine = BeginUnaryCall(call, *context, request, &proto);
  if (engine == nullptr) return call.reactor;
  absl::StatusOr<std::vector<int32_t>> ids =
      engine->tokenizer().Encode(proto.text(), proto.add_special_tokens());
  if (!ids.ok()) {
    call.Finish(absl::InvalidArgumentError(
                    absl::StrCat("text could not be tokenized: ", ids.status().message())),
                nullptr);
    return call.reactor;
  }
  v1::TokenizeResponse out;
  out.mutable_token_ids()->Add(ids->begin(), ids->end());
  call.Finish(absl::OkStatus(), &out);
  return call.reactor;
}

grpc::ServerUnaryReactor* ModelService::Detokenize(grpc::CallbackServerContext* context,
                                                   const grpc::ByteBuffer* request,
                                                   grpc::ByteBuffer* response) {
  UnaryCall call{state_, context->DefaultReactor(), response, "Detokenize", absl::Now(), ""};
  v1::DetokenizeRequest proto;
  Engine* engine = BeginUnaryCall(call, *context, request, &proto);
  if (engine == nullptr) return call.reactor;
  absl::Status valid = ValidateDetokenizeRequest(proto, engine->tokenizer());
  if (!valid.ok()) {
    call.Finish(valid, nullptr);
    return call.reactor;
  }
  absl::StatusOr<std::string> text =
      engine->tokenizer().Decode(proto.token_ids(), proto.skip_special_tokens());
  if (!text.ok()) {
    call.Finish(text.status(), nullptr);
    return call.reactor;
  }
  v1::DetokenizeResponse out;
  out.set_text(*std::move(text));
  call.Finish(absl::OkStatus(), &out);
  return call.reactor;
}

grpc::ServerUnaryReactor* ModelService::GetModelInfo(grpc::CallbackServerContext* context,
                                                     const grpc::ByteBuffer* request,
                                                     grpc::ByteBuffer* response) {
  UnaryCall call{state_, context->DefaultReactor(), response, "GetModelInfo", absl::Now(), ""};
  v1::GetModelInfoRequest proto;
  Engine* engine = BeginUnaryCall(call, *context, request, &proto);
  if (engine == nullptr) return call.reactor;
  v1::ModelInfo out;
  FillModelInfo(engine->model_info(), state_->limits(), engine->options().sessions.max_sessions,
                &out);
  call.Finish(absl::OkStatus(), &out);
  return call.reactor;
}

}  // namespace mamba::server
