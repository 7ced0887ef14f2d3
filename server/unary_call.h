// The common ending of every unary RPC: serialize the response (when OK), report the call, and
// finish. Unary methods use the context's default reactor; their engine work completes through
// callbacks on engine threads, which finish the call from there.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "google/protobuf/message.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/server_callback.h"
#include "server/serving_state.h"

namespace mamba::server {

struct UnaryCall {
  ServingState* state;
  grpc::ServerUnaryReactor* reactor;
  grpc::ByteBuffer* response_bytes;
  const char* method;
  absl::Time start;
  std::string session_id;
  std::string tenant;  // set by BeginUnaryCall once the call is authenticated

  // Finishes with `status`; on OK, `response` is serialized first (a serialization failure
  // becomes INTERNAL). Call exactly once.
  void Finish(const absl::Status& status, const google::protobuf::Message* response) const;
};

// Authenticates the call (setting call.tenant) before anything else, then parses `bytes` into
// `request` and checks that the server takes new calls. Returns the engine, or finishes `call`
// with the reason and returns null.
Engine* BeginUnaryCall(UnaryCall& call, const grpc::CallbackServerContext& context,
                       const grpc::ByteBuffer* bytes, google::protobuf::Message* request);

}  // namespace mamba::server
