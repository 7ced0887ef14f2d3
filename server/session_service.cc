#include "server/session_service.h"

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "engine/sessions/session_codec.h"
#include "server/proto_translation.h"
#include "server/request_validation.h"
#include "server/unary_call.h"

namespace mamba::server {
namespace {

namespace v1 = ::mambaserve::v1;

// The x-session-id metadata ("" when absent).
std::string_view SessionMetadata(const grpc::CallbackServerContext& context) {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("x-session-id");
  if (it == metadata.end()) return {};
  return std::string_view(it->second.data(), it->second.size());
}

// Runs `work` on the reply dispatcher's thread. Engine callbacks arrive on the scheduler thread,
// which every running stream waits on; replies (encoding, protobuf, the gRPC finish) are built
// here instead.
void OffSchedulerThread(ServingState* state, std::function<void()> work) {
  state->reply_dispatcher().PostTask(std::move(work));
}

absl::Duration Ttl(uint32_t seconds) {
  return seconds == 0 ? absl::ZeroDuration() : absl::Seconds(static_cast<int64_t>(seconds));
}

// The engine callback that finishes a call answering with a Session. A call that creates a
// session (create, fork, import) and whose client went away first (cancelled, or its deadline
// passed) closes the new session again: nobody holds its id, so it would only take a slot or host
// memory for its TTL, once per retry.
Engine::SessionCallback FinishWithSession(UnaryCall call,
                                          const grpc::CallbackServerContext* context = nullptr) {
  call.state->BeginEngineCall();
  return [call = std::move(call), context](absl::StatusOr<SessionInfo> info) mutable {
    ServingState* serving = call.state;
    OffSchedulerThread(
        serving, [call = std::move(call), info = std::move(info), context]() mutable {
          ServingState* state = call.state;
          if (info.ok() && context != nullptr && context->IsCancelled()) {
            if (Engine* engine = state->engine(); engine != nullptr) {
              state->BeginEngineCall();
              engine->CloseSession(call.tenant, info->session_id,
                                   [state](absl::Status) { state->EndEngineCall(); });
            }
            call.Finish(absl::CancelledError("the client cancelled the call or its deadline passed "
                                             "before the session was ready; it was not kept"),
                        nullptr);
          } else if (!info.ok()) {
            call.Finish(info.status(), nullptr);
          } else {
            v1::Session session;
            FillSession(*info, &session);
            call.session_id = info->session_id;
            call.Finish(absl::OkStatus(), &session);
          }
          state->EndEngineCall();
        });
  };
}

// The deadline of a call, for engine work done on its behalf (InfiniteFuture when it has none).
absl::Time Deadline(const grpc::CallbackServerContext& context) {
  const auto deadline = context.deadline();
  if (deadline == std::chrono::system_clock::time_point::max()) return absl::InfiniteFuture();
  return absl::FromChrono(deadline);
}
}  // namespace

namespace {

// BeginUnaryCall for a request that names an existing session: also records the id for the
// request log and validates it. Returns the engine, or null once `call` has been finished.
template <typename Request>
Engine* BeginSessionCall(UnaryCall& call, const grpc::CallbackServerContext& context,
                         const grpc::ByteBuffer* request, Request* proto) {
  Engine* engine = BeginUnaryCall(call, context, request, proto);
  if (engine == nullptr) return nullptr;
  call.session_id = proto->session_id();
  const absl::Status valid = ValidateSessionId(proto->session_id());
  if (!valid.ok()) {
    call.Finish(valid, nullptr);
    return nullptr;
  }
  return engine;
}

}  // namespace

grpc::ServerUnaryReactor* SessionService::CreateSession(grpc::CallbackServerContext* context,
                                                        const grpc::ByteBuffer* request,
                                                        grpc::ByteBuffer* response) {
  UnaryCall call{state_, context->DefaultReactor(), response, "CreateSession", absl::Now(), ""};
  v1::CreateSessionRequest proto;
  Engine* engine = BeginUnaryCall(call, *context, request, &proto);
  if (engine == nullptr) return call.reactor;
  absl::StatusOr<std::string> id =
      RequestedSessionId(proto.session_id(), SessionMetadata(*context));
  if (!id.ok()) {
    call.Finish(id.status(), nullptr);
    return call.reactor;
  }
  call.session_id = *id;
  // Tokenizes the prompt and asks the engine for the session; on a prompt thread when the prompt
  // is long text (Shutdown stops those threads before the engine, and a prompt tokenized during
  // a drain is refused by EngineForNewCall).
  auto create = [call, context, engine, proto = std::move(proto),
                 deadline = Deadline(*context)](bool on_prompt_thread) {
    absl::StatusOr<std::vector<int32_t>> prompt =
        SessionPrompt(proto, call.state->limits(), call.state->model_limits());
    if (!prompt.ok()) return call.Finish(prompt.status(), nullptr);
    Engine* target = engine;
    if (on_prompt_thread) {
      absl::StatusOr<Engine*> serving = call.state->EngineForNewCall();
      if (!serving.ok()) return call.Finish(serving.status(), nullptr);
      target = *serving;
    }
    target->CreateSession(call.tenant, *std::move(prompt), Ttl(proto.ttl_seconds()),
                          FinishWithSession(call, context), call.session_id, deadline);
  };
  if (TokenizeOffCallThread(proto)) {
    // The call stays open until `create` finishes it; a shutdown waits for it like for the
    // engine's callbacks.
    state_->BeginEngineCall();
    state_->prompt_dispatcher().PostTask([create = std::move(create), state = state_] {
      create(/*on_prompt_thread=*/true);
      state->EndEngineCall();
    });
  } else {
    create(/*on_prompt_thread=*/false);
  }
  return call.reactor;
}

grpc::ServerUnaryReactor* SessionService::GetSession(grpc::CallbackServerContext* context,
                                                     const grpc::ByteBuffer* request,
                                                     grpc::ByteBuffer* response) {
  UnaryCall call{state_, context->DefaultReactor(), response, "GetSession", absl::Now(), ""};
  v1::GetSessionRequest proto;
  Engine* engine = BeginSessionCall(call, *context, request, &proto);
  if (engine == nullptr) return call.reactor;
  absl::StatusOr<SessionInfo> info = engine->GetSession(call.tenant, proto.session_id());
  if (!info.ok()) {
    call.Finish(info.status(), nullptr);
    return call.reactor;
  }
  v1::Session session;
  FillSession(*info, &session);
  call.Finish(absl::OkStatus(), &session);
  return call.reactor;
}

grpc::ServerUnaryReactor* SessionService::ForkSession(grpc::CallbackServerContext* context,
                                                      const grpc::ByteBuffer* request,
                                                      grpc::ByteBuffer* response) {
  UnaryCall call{state_, context->DefaultReactor(), response, "ForkSession", absl::Now(), ""};
  v1::ForkSessionRequest proto;
  Engine* engine = BeginSessionCall(call, *context, request, &proto);
  if (engine == nullptr) return call.reactor;
  engine->ForkSession(call.tenant, proto.session_id(), Ttl(proto.ttl_seconds()),
                      FinishWithSession(call, context));
  return call.reactor;
}

grpc::ServerUnaryReactor* SessionService::CloseSession(grpc::CallbackServerContext* context,
                                                       const grpc::ByteBuffer* request,
                                                       grpc::ByteBuffer* response) {
  UnaryCall call{state_, context->DefaultReactor(), response, "CloseSession", absl::Now(), ""};
  v1::CloseSessionRequest proto;
  Engine* engine = BeginSessionCall(call, *context, request, &proto);
  if (engine == nullptr) return call.reactor;
  state_->BeginEngineCall();
  engine->CloseSession(call.tenant, proto.session_id(), [call](absl::Status status) {
    OffSchedulerThread(call.state, [call, status] {
      ServingState* state = call.state;
      v1::CloseSessionResponse empty;
      call.Finish(status, &empty);
      state->EndEngineCall();
    });
  });
  return call.reactor;
}

grpc::ServerUnaryReactor* SessionService::ListSessions(grpc::CallbackServerContext* context,
                                                       const grpc::ByteBuffer* request,
                                                       grpc::ByteBuffer* response) {
  UnaryCall call{state_, context->DefaultReactor(), response, "ListSessions", absl::Now(), ""};
  v1::ListSessionsRequest proto;
  Engine* engine = BeginUnaryCall(call, *context, request, &proto);
  if (engine == nullptr) return call.reactor;
  absl::StatusOr<int32_t> page_size = ValidatePageSize(proto.page_size(), state_->limits());
  if (!page_size.ok()) {
    call.Finish(page_size.status(), nullptr);
    return call.reactor;
  }
  absl::StatusOr<SessionPage> page =
      engine->ListSessions(call.tenant, *page_size, proto.page_token());
  if (!page.ok()) {
    call.Finish(page.status(), nullptr);
    return call.reactor;
  }
  v1::ListSessionsResponse out;
  out.mutable_sessions()->Reserve(static_cast<int>(page->sessions.size()));
  for (const SessionInfo& info : page->sessions) FillSession(info, out.add_sessions());
  out.set_next_page_token(page->next_page_token);
  out.set_total_size(page->total);
  call.Finish(absl::OkStatus(), &out);
  return call.reactor;
}

grpc::ServerUnaryReactor* SessionService::ExportSession(grpc::CallbackServerContext* context,
                                                        const grpc::ByteBuffer* request,
                                                        grpc::ByteBuffer* response) {
  UnaryCall call{state_, context->DefaultReactor(), response, "ExportSession", absl::Now(), ""};
  v1::ExportSessionRequest proto;
  Engine* engine = BeginSessionCall(call, *context, request, &proto);
  if (engine == nullptr) return call.reactor;
  const std::string tenant = call.tenant;
  // The token count comes from the session's description; an export captures an idle
  // session, so the count matches the exported state.
  absl::StatusOr<SessionInfo> info = engine->GetSession(tenant, proto.session_id());
  if (!info.ok()) {
    call.Finish(info.status(), nullptr);
    return call.reactor;
  }
  const int64_t tokens = info->tokens;
  const std::string identity = engine->model_info().identity;
  state_->BeginEngineCall();
  engine->ExportSession(
      tenant, proto.session_id(),
      [call, tokens, identity](absl::StatusOr<sessions::SessionSnapshot> snapshot) mutable {
        // The scheduler thread handed over the state's bytes; encoding (a copy and a checksum of
        // the whole state) and the response are built on the reply thread.
        auto shared =
            std::make_shared<absl::StatusOr<sessions::SessionSnapshot>>(std::move(snapshot));
        OffSchedulerThread(call.state, [call, tokens, identity, shared] {
          ServingState* state = call.state;
          if (!shared->ok()) {
            call.Finish(shared->status(), nullptr);
          } else {
            v1::ExportSessionResponse out;
            out.set_state(state->engine() != nullptr ? state->engine()->EncodeExport(**shared)
                                                     : std::string());
            shared->value().payload.clear();
            out.set_model_identity(identity);
            out.set_tokens(tokens);
            call.Finish(absl::OkStatus(), &out);
          }
          state->EndEngineCall();
        });
      });
  return call.reactor;
}

grpc::ServerUnaryReactor* SessionService::ImportSession(grpc::CallbackServerContext* context,
                                                        const grpc::ByteBuffer* request,
                                                        grpc::ByteBuffer* response) {
  UnaryCall call{state_, context->DefaultReactor(), response, "ImportSession", absl::Now(), ""};
  v1::ImportSessionRequest proto;
  Engine* engine = BeginUnaryCall(call, *context, request, &proto);
  if (engine == nullptr) return call.reactor;
  absl::StatusOr<std::string> id =
      RequestedSessionId(proto.session_id(), SessionMetadata(*context));
  if (!id.ok()) {
    call.Finish(id.status(), nullptr);
    return call.reactor;
  }
  call.session_id = *id;
  if (proto.state().empty()) {
    call.Finish(
        absl::InvalidArgumentError("state is empty; send the bytes an ExportSession call returned"),
        nullptr);
    return call.reactor;
  }
  engine->ImportSession(call.tenant, std::move(*proto.mutable_state()), Ttl(proto.ttl_seconds()),
                        FinishWithSession(call, context), *id);
  return call.reactor;
}

}  // namespace mamba::server
