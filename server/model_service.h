// mambaserve.v1.Models: tokenization and the description of the loaded model. Tokenizing runs
// on the gRPC thread: it is pure CPU work on an immutable tokenizer, bounded by the message size.
#pragma once

#include "mambaserve/v1/models.grpc.pb.h"
#include "server/serving_state.h"

namespace mamba::server {

namespace model_service_internal {
namespace v1 = ::mambaserve::v1;
using Base =
    v1::Models::WithRawCallbackMethod_Tokenize<v1::Models::WithRawCallbackMethod_Detokenize<
        v1::Models::WithRawCallbackMethod_GetModelInfo<v1::Models::Service>>>;
}  // namespace model_service_internal

class ModelService final : public model_service_internal::Base {
 public:
  // `state` must outlive the service.
  explicit ModelService(ServingState* state) : state_(state) {}

  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* context,
                                     const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Detokenize(grpc::CallbackServerContext* context,
                                       const grpc::ByteBuffer* request,
                                       grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* context,
                                         const grpc::ByteBuffer* request,
                                         grpc::ByteBuffer* response) override;

 private:
  ServingState* const state_;
};

}  // namespace mamba::server
