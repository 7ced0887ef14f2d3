// Request and response messages to and from the bytes gRPC carries. The services take raw
// bytes instead of letting gRPC parse them because protobuf's own parser rejects a proto3
// string holding invalid UTF-8 with an empty INTERNAL error; here the client learns which field
// was wrong, as INVALID_ARGUMENT.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "grpcpp/support/byte_buffer.h"

namespace mamba::server {

// Parses `buffer` into `message`. INVALID_ARGUMENT naming the field when a string field is not
// valid UTF-8, or saying the bytes are not a `message`'s type otherwise.
absl::Status ParseRequest(const grpc::ByteBuffer& buffer, google::protobuf::Message* message);

// The same over bytes already in memory (what ParseRequest does after reading the buffer).
absl::Status ParseRequestBytes(const std::string& bytes, google::protobuf::Message* message);

// Serializes `message` into `out` (replacing its contents).
absl::Status SerializeResponse(const google::protobuf::Message& message, grpc::ByteBuffer* out);

// Explains why `bytes` do not parse as `type`: the first string field (dotted path) that is not
// valid UTF-8, or that the wire format itself is broken. OK if no cause is found.
absl::Status DiagnoseParseFailure(const std::string& bytes,
                                  const google::protobuf::Descriptor& type);

}  // namespace mamba::server
