// mambaserve.v1.Generation: one self-owning reactor per Generate call. The reactor validates,
// submits to the engine (which returns at once), and then moves output from the engine's
// GenerationStream to the client one write at a time: the first write starts when output is
// ready, the next from OnWriteDone. Whatever arrived while a write was in flight goes out merged
// into one message, so a slow client receives several tokens per message instead of slowing the
// engine. Client cancellation and deadlines cancel the engine stream.
#pragma once

#include "mambaserve/v1/generation.grpc.pb.h"
#include "server/serving_state.h"

namespace mamba::server {

// Requests arrive as raw bytes so that invalid UTF-8 gets a clear INVALID_ARGUMENT
// (see wire_codec.h); responses are GenerateResponse messages.
class GenerationService final : public mambaserve::v1::Generation::WithRawCallbackMethod_Generate<
                                    mambaserve::v1::Generation::Service> {
 public:
  // `state` must outlive the service and every call it started.
  explicit GenerationService(ServingState* state) : state_(state) {}

  grpc::ServerWriteReactor<grpc::ByteBuffer>* Generate(grpc::CallbackServerContext* context,
                                                       const grpc::ByteBuffer* request) override;

 private:
  ServingState* const state_;
};

}  // namespace mamba::server
