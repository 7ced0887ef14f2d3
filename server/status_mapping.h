// The one place where engine statuses (absl::Status) become gRPC statuses. Every service
// method finishes through ToGrpcStatus, so a code means the same thing on every RPC.
#pragma once

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace mamba::server {

// Same code (the canonical codes are shared), same message. OK maps to OK. A code outside the
// canonical set becomes UNKNOWN with the original number in the message.
grpc::Status ToGrpcStatus(const absl::Status& status);

// The inverse, for code that calls other servers and for tests.
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace mamba::server
