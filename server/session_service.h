// mambaserve.v1.Sessions: create, inspect, fork, close, list, export and import sessions. The
// engine owns sessions and enforces their rules (busy, unknown or expired, --max_sessions); this
// service validates ids and sizes, forwards, and maps the results. Calls that touch a session's
// state complete through engine callbacks, so no gRPC thread waits for the scheduler.
#pragma once

#include "mambaserve/v1/sessions.grpc.pb.h"
#include "server/serving_state.h"

namespace mamba::server {

namespace session_service_internal {
namespace v1 = ::mambaserve::v1;
// Every method takes raw bytes (see wire_codec.h).
using Base = v1::Sessions::WithRawCallbackMethod_CreateSession<
    v1::Sessions::WithRawCallbackMethod_GetSession<v1::Sessions::WithRawCallbackMethod_ForkSession<
        v1::Sessions::WithRawCallbackMethod_CloseSession<
            v1::Sessions::WithRawCallbackMethod_ListSessions<
                v1::Sessions::WithRawCallbackMethod_ExportSession<
                    v1::Sessions::WithRawCallbackMethod_ImportSession<v1::Sessions::Service>>>>>>>;
}  // namespace session_service_internal

class SessionService final : public session_service_internal::Base {
 public:
  // `state` must outlive the service and every call it started.
  explicit SessionService(ServingState* state) : state_(state) {}

  grpc::ServerUnaryReactor* CreateSession(grpc::CallbackServerContext* context,
                                          const grpc::ByteBuffer* request,
                                          grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* GetSession(grpc::CallbackServerContext* context,
                                       const grpc::ByteBuffer* request,
                                       grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* ForkSession(grpc::CallbackServerContext* context,
                                        const grpc::ByteBuffer* request,
                                        grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* CloseSession(grpc::CallbackServerContext* context,
                                         const grpc::ByteBuffer* request,
                                         grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* ListSessions(grpc::CallbackServerContext* context,
                                         const grpc::ByteBuffer* request,
                                         grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* ExportSession(grpc::CallbackServerContext* context,
                                          const grpc::ByteBuffer* request,
                                          grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* ImportSession(grpc::CallbackServerContext* context,
                                          const grpc::ByteBuffer* request,
                                          grpc::ByteBuffer* response) override;

 private:
  ServingState* const state_;
};

}  // namespace mamba::server
