#include "server/wire_codec.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/tokenizer.h"
#include "google/protobuf/unknown_field_set.h"
#include "grpcpp/impl/codegen/proto_utils.h"

namespace mamba::server {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::UnknownField;
using google::protobuf::UnknownFieldSet;

// Nested messages deeper than this are not inspected (ours are at most two levels deep; the
// bound keeps a hostile, deeply nested payload from recursing without limit).
constexpr int kMaxDepth = 16;

absl::Status Diagnose(const std::string& bytes, const Descriptor& type, const std::string& path,
                      int depth) {
  UnknownFieldSet fields;
  if (!fields.ParseFromString(bytes)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path.empty() ? std::string("request") : absl::StrCat("field '", path, "'"),
                     " is not a well-formed ", type.full_name(), " message"));
  }
  for (int i = 0; i < fields.field_count(); ++i) {
    const UnknownField& field = fields.field(i);
    if (field.type() != UnknownField::TYPE_LENGTH_DELIMITED) continue;
    const FieldDescriptor* fd = type.FindFieldByNumber(field.number());
    if (fd == nullptr) continue;
    const std::string field_path = path.empty() ? fd->name() : absl::StrCat(path, ".", fd->name());
    if (fd->type() == FieldDescriptor::TYPE_STRING) {
      if (!tokenizer::IsValidUtf8(field.length_delimited())) {
        return absl::InvalidArgumentError(absl::StrCat(
            "field '", field_path, "' is not valid UTF-8; text fields must be UTF-8 encoded",
            fd->containing_oneof() != nullptr ? " (to send arbitrary bytes, send token ids)" : ""));
      }
    } else if (fd->type() == FieldDescriptor::TYPE_MESSAGE && depth < kMaxDepth) {
      absl::Status nested =
          Diagnose(field.length_delimited(), *fd->message_type(), field_path, depth + 1);
      if (!nested.ok()) return nested;
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status DiagnoseParseFailure(const std::string& bytes, const Descriptor& type) {
  return Diagnose(bytes, type, "", 0);
}

absl::Status ParseRequestBytes(const std::string& bytes, google::protobuf::Message* message) {
  if (message->ParseFromString(bytes)) return absl::OkStatus();
  absl::Status cause = DiagnoseParseFailure(bytes, *message->GetDescriptor());
  if (!cause.ok()) return cause;
  return absl::InvalidArgumentError(
      absl::StrCat("request is not a valid ", message->GetDescriptor()->full_name()));
}

absl::Status ParseRequest(const grpc::ByteBuffer& buffer, google::protobuf::Message* message) {
  std::vector<grpc::Slice> slices;
  if (!buffer.Valid() || !buffer.Dump(&slices).ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("request has no ", message->GetDescriptor()->full_name(), " payload"));
  }
  std::string bytes;
  bytes.reserve(buffer.Length());
  for (const grpc::Slice& slice : slices) {
    bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  return ParseRequestBytes(bytes, message);
}

absl::Status SerializeResponse(const google::protobuf::Message& message, grpc::ByteBuffer* out) {
  out->Clear();  // the writer fills an empty buffer only
  bool own_buffer = false;
  grpc::Status status = grpc::GenericSerialize<grpc::ProtoBufferWriter, google::protobuf::Message>(
      message, out, &own_buffer);
  if (!status.ok()) {
    return absl::InternalError(absl::StrCat("could not serialize ",
                                            message.GetDescriptor()->full_name(), ": ",
                                            status.error_message()));
  }
  return absl::OkStatus();
}

}  // namespace mamba::server
