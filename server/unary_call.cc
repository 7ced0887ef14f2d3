#include "server/unary_call.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/status_mapping.h"
#include "server/wire_codec.h"

namespace mamba::server {

void UnaryCall::Finish(const absl::Status& status,
                       const google::protobuf::Message* response) const {
  absl::Status final_status = status;
  if (final_status.ok() && response != nullptr) {
    final_status = SerializeResponse(*response, response_bytes);
  }
  metrics::RequestRecord record;
  record.method = method;
  record.code = final_status.code();
  record.error_message = std::string(final_status.message());
  record.session_id = session_id;
  record.e2e = absl::Now() - start;
  state->ReportCall(record);
  reactor->Finish(ToGrpcStatus(final_status));
}

Engine* BeginUnaryCall(UnaryCall& call, const grpc::CallbackServerContext& context,
                       const grpc::ByteBuffer* bytes, google::protobuf::Message* request) {
  absl::StatusOr<std::string> tenant = call.state->Authenticate(context);
  if (!tenant.ok()) {
    call.Finish(tenant.status(), nullptr);
    return nullptr;
  }
  call.tenant = *std::move(tenant);
  absl::Status parsed = bytes == nullptr
                            ? absl::InvalidArgumentError(absl::StrCat(
                                  request->GetDescriptor()->full_name(), " payload is missing"))
                            : ParseRequest(*bytes, request);
  if (!parsed.ok()) {
    call.Finish(parsed, nullptr);
    return nullptr;
  }
  absl::StatusOr<Engine*> engine = call.state->EngineForNewCall();
  if (!engine.ok()) {
    call.Finish(engine.status(), nullptr);
    return nullptr;
  }
  return *engine;
}

}  // namespace mamba::server
