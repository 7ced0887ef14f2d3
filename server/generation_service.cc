#include "server/generation_service.h"

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "server/proto_translation.h"
#include "server/request_validation.h"
#include "server/status_mapping.h"
#include "server/wire_codec.h"

namespace mamba::server {
namespace {

namespace v1 = ::mambaserve::v1;

constexpr char kMethod[] = "Generate";

// A call that failed before any work: finishes at once with `status`.
class RejectedGenerate final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  explicit RejectedGenerate(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

absl::Time CallDeadline(const grpc::CallbackServerContext& context) {
  const auto deadline = context.deadline();
  // gRPC reports "no deadline" as the largest time point.
  if (deadline >= std::chrono::system_clock::time_point::max() - std::chrono::hours(24 * 365)) {
    return absl::InfiniteFuture();
  }
  return absl::FromChrono(deadline);
}

// The reactor of one Generate call. Owned by itself (self_) until OnDone, and shared with the
// dispatcher while an on_ready notification is queued; the engine's on_ready holds only a weak
// reference, so a notification that arrives after the call ended does nothing.
//
// gRPC operations (StartWrite, Finish) are never issued under mu_: issued from a non-gRPC thread
// they may run reactions such as OnWriteDone inline, which take mu_ themselves.
class GenerateCall final : public grpc::ServerWriteReactor<grpc::ByteBuffer>,
                           public ReadyTarget,
                           public DrainableCall {
 public:
  GenerateCall(ServingState* state, const tokenizer::Tokenizer* tokenizer, absl::Time start,
               absl::Time deadline, std::string session_id)
      : state_(state), tokenizer_(tokenizer), start_(start), deadline_(deadline) {
    record_.method = kMethod;
    record_.session_id = std::move(session_id);
  }

  // Binds the engine stream and starts moving output. `self` is this call.
  void Start(std::shared_ptr<GenerateCall> self, std::shared_ptr<GenerationStream> stream) {
    Hold(std::move(self));
    Attach(std::move(stream));
  }

  // For a call whose prompt is tokenized on a prompt thread: the call keeps itself alive and is
  // registered (a drain waits for it) until Launch gives it a stream or an error.
  void Hold(std::shared_ptr<GenerateCall> self) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      self_ = self;
    }
    state_->Register(self);
  }

  // Submits the converted request (or finishes with why it could not be), unless the call has
  // already ended (the client cancelled, or a drain forced it) while the prompt was tokenized.
  void Launch(absl::StatusOr<GenerationRequest> request, std::weak_ptr<GenerateCall> weak) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (finishing_) return;
    }
    absl::StatusOr<std::shared_ptr<GenerationStream>> stream = absl::UnknownError("unset");
    if (!request.ok()) {
      stream = request.status();
    } else if (absl::StatusOr<Engine*> engine = state_->EngineForNewCall(); !engine.ok()) {
      stream = engine.status();
    } else {
      stream = Submit(*engine, *std::move(request), std::move(weak));
    }
    if (!stream.ok()) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (finishing_) return;
        finishing_ = true;
      }
      FinishWith(ToGrpcStatus(stream.status()), "");
      return;
    }
    Attach(*std::move(stream));
  }

  // Submits `request` to `engine`; the stream's output wakes `weak` (this call) through the
  // dispatcher.
  absl::StatusOr<std::shared_ptr<GenerationStream>> Submit(Engine* engine,
                                                            GenerationRequest request,
                                                            std::weak_ptr<GenerateCall> weak) {
    StreamDispatcher* dispatcher = &state_->dispatcher();
    return engine->Submit(std::move(request), [weak = std::move(weak), dispatcher] {
      if (std::shared_ptr<GenerateCall> target = weak.lock()) dispatcher->Post(std::move(target));
    });
  }

  void OnReady() override { Pump(); }

  void CancelGeneration() override {
    std::shared_ptr<GenerationStream> stream;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stream = stream_;
    }
    if (stream) stream->Cancel();
  }

  void ForceFinish(const grpc::Status& status) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (finishing_) return;
      if (stream_) stream_->Cancel();
      if (write_in_flight_) {
        // Finish must wait for the write; OnWriteDone finishes with this status.
        forced_status_ = std::make_unique<grpc::Status>(status);
        return;
      }
      finishing_ = true;
    }
    FinishWith(status, "");
  }

  void OnWriteDone(bool ok) override {
    std::unique_ptr<grpc::Status> forced;
    {
      std::lock_guard<std::mutex> lock(mu_);
      write_in_flight_ = false;
      if (finishing_) return;
      // A write may complete after OnCancel; the call is over all the same.
      if (client_cancelled_) ok = false;
      if (ok && forced_status_ == nullptr) {
        // Fall through to Pump below, outside the lock.
      } else {
        finishing_ = true;
        if (stream_) stream_->Cancel();
        forced = std::move(forced_status_);
      }
    }
    if (!ok) {
      FinishWith(EndedByClient(), "cancelled");
      return;
    }
    if (forced != nullptr) {
      FinishWith(*forced, "");
      return;
    }
    Pump();
  }

  void OnCancel() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      client_cancelled_ = true;
      if (stream_) stream_->Cancel();
      // With a write in flight, OnWriteDone follows and finishes the call.
      if (finishing_ || write_in_flight_) return;
      finishing_ = true;
    }
    FinishWith(EndedByClient(), "cancelled");
  }

  void OnDone() override {
    state_->Unregister(this);
    std::shared_ptr<GenerateCall> self;
    {
      std::lock_guard<std::mutex> lock(mu_);
      self = std::move(self_);
    }
    // `self` may be the last reference: nothing below this line touches members.
  }

 private:
  void Attach(std::shared_ptr<GenerationStream> stream) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (finishing_) {
        // Ended while its prompt was tokenized: nobody will read this stream.
        stream->Cancel();
        return;
      }
      stream_ = std::move(stream);
      record_.request_id = stream_->request_id();
    }
    // The engine's first on_ready may have fired before stream_ was set; reading once here
    // makes sure no output is left waiting.
    Pump();
  }

  // Moves available output into one write, or finishes the call when the stream has ended.
  void Pump() {
    GenerationChunk chunk;
    grpc::Status final_status;
    enum class Action { kWrite, kWriteAndFinish, kFinish } action;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (finishing_ || write_in_flight_ || !stream_) return;
      // Text without tokens (what the engine flushes as a generation ends: the held-back bytes
      // of an incomplete character or of a possible stop string) rides with the next chunk. Keep
      // reading until the stream is drained or a chunk can be sent: returning after such a chunk
      // would leave the stream believing its consumer busy, so its end would never be signalled
      // and the call would hang until its deadline.
      while (true) {
        if (!stream_->Read(&chunk)) return;  // on_ready will fire when more arrives
        if (!held_text_.empty()) {
          chunk.text.insert(0, held_text_);
          held_text_.clear();
        }
        if (chunk.finished || !chunk.token_ids.empty()) break;
        held_text_ = std::move(chunk.text);
      }
      absl::Status encoded = absl::OkStatus();
      if (!chunk.token_ids.empty() || chunk.finished) {
        FillGenerateResponse(chunk, *tokenizer_, record_.request_id, &response_);
        encoded = SerializeResponse(response_, &buffer_);
      }
      if (!encoded.ok()) {
        finishing_ = true;
        stream_->Cancel();
        action = Action::kFinish;
        final_status = ToGrpcStatus(encoded);
      } else if (!chunk.finished) {
        if (chunk.token_ids.empty()) return;  // nothing to send (cannot happen, but be safe)
        write_in_flight_ = true;
        action = Action::kWrite;
      } else {
        finishing_ = true;
        const GenerationResult& result = chunk.result;
        record_.prompt_tokens = result.usage.prompt_tokens;
        record_.generated_tokens = result.usage.generated_tokens;
        record_.cached_tokens = result.usage.cached_tokens;
        if (result.usage.generated_tokens > 0) {
          record_.time_to_first_token = result.timing.time_to_first_token;
        }
        // An engine error (an evicted session, a deadline before any work) ends the call with
        // that status, after any tokens it produced; a cancellation by the engine (drain,
        // session closed) ends normally with FINISH_REASON_CANCELLED.
        const bool error =
            result.finish_reason == FinishReason::kError ||
            (!result.status.ok() && result.status.code() != absl::StatusCode::kCancelled);
        if (error) {
          final_status = result.status.ok()
                             ? grpc::Status(grpc::StatusCode::INTERNAL, "generation failed")
                             : ToGrpcStatus(result.status);
          record_.finish_reason = result.finish_reason == FinishReason::kError
                                      ? "error"
                                      : FinishReasonName(result.finish_reason);
          action = chunk.token_ids.empty() ? Action::kFinish : Action::kWriteAndFinish;
        } else {
          record_.finish_reason = FinishReasonName(result.finish_reason);
          final_status = grpc::Status::OK;
          action = Action::kWriteAndFinish;
        }
      }
    }
    switch (action) {
      case Action::kWrite:
        StartWrite(&buffer_);
        return;
      case Action::kWriteAndFinish:
        Report(final_status, record_.finish_reason);
        StartWriteAndFinish(&buffer_, grpc::WriteOptions(), final_status);
        return;
      case Action::kFinish:
        Report(final_status, record_.finish_reason);
        Finish(final_status);
        return;
    }
  }

  // Why a call ended that the client (or its deadline) ended; this is what the request log and
  // the request counter record (the client sees the same code from its own side).
  grpc::Status EndedByClient() const {
    if (absl::Now() >= deadline_) {
      return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "the call's deadline passed");
    }
    return grpc::Status(grpc::StatusCode::CANCELLED, "the client cancelled the call");
  }

  // Reports and finishes; the caller has set finishing_.
  void FinishWith(const grpc::Status& status, const char* finish_reason) {
    Report(status, finish_reason);
    Finish(status);
  }

  // Only the thread that set finishing_ gets here, once; record_ is no longer shared.
  void Report(const grpc::Status& status, const std::string& finish_reason) {
    const absl::Status code = FromGrpcStatus(status);
    record_.code = code.code();
    record_.error_message = std::string(code.message());
    if (&finish_reason != &record_.finish_reason) record_.finish_reason = finish_reason;
    record_.e2e = absl::Now() - start_;
    state_->ReportCall(record_);
  }

  ServingState* const state_;
  const tokenizer::Tokenizer* const tokenizer_;
  const absl::Time start_;
  const absl::Time deadline_;

  std::mutex mu_;
  std::shared_ptr<GenerateCall> self_;
  std::shared_ptr<GenerationStream> stream_;
  bool write_in_flight_ = false;
  bool finishing_ = false;  // Finish or StartWriteAndFinish issued (or about to be)
  bool client_cancelled_ = false;
  std::unique_ptr<grpc::Status> forced_status_;
  std::string held_text_;  // text read without tokens, sent with the next chunk
  // The message being written; not touched until the write completes.
  v1::GenerateResponse response_;
  grpc::ByteBuffer buffer_;
  metrics::RequestRecord record_;
};

}  // namespace

grpc::ServerWriteReactor<grpc::ByteBuffer>* GenerationService::Generate(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request) {
  const absl::Time start = absl::Now();
  auto reject = [&](const absl::Status& status, const std::string& session_id) {
    metrics::RequestRecord record;
    record.method = kMethod;
    record.code = status.code();
    record.error_message = std::string(status.message());
    record.session_id = session_id;
    record.e2e = absl::Now() - start;
    state_->ReportCall(record);
    return new RejectedGenerate(ToGrpcStatus(status));
  };

  absl::StatusOr<std::string> tenant = state_->Authenticate(*context);
  if (!tenant.ok()) return reject(tenant.status(), "");
  v1::GenerateRequest proto;
  absl::Status parsed = request == nullptr
                            ? absl::InvalidArgumentError("GenerateRequest payload is missing")
                            : ParseRequest(*request, &proto);
  if (!parsed.ok()) return reject(parsed, "");
  absl::StatusOr<Engine*> engine = state_->EngineForNewCall();
  if (!engine.ok()) return reject(engine.status(), proto.session_id());

  const absl::Time deadline = CallDeadline(*context);
  auto convert = [state = state_, deadline](const v1::GenerateRequest& message,
                                            std::string call_tenant) {
    absl::StatusOr<GenerationRequest> converted = ToGenerationRequest(
        message, state->limits(), state->model_limits(), state->NextDefaultSeed());
    if (converted.ok()) {
      converted->tenant = std::move(call_tenant);
      converted->deadline = deadline;
    }
    return converted;
  };

  if (TokenizeOffCallThread(proto)) {
    // A long text prompt: answered from a prompt thread once it is tokenized.
    auto call = std::make_shared<GenerateCall>(state_, &(*engine)->tokenizer(), start, deadline,
                                               proto.session_id());
    GenerateCall* reactor = call.get();
    reactor->Hold(call);
    state_->prompt_dispatcher().PostTask(
        [call = std::move(call), proto = std::move(proto), tenant = *std::move(tenant),
         convert = std::move(convert)]() mutable {
          absl::StatusOr<GenerationRequest> converted = convert(proto, std::move(tenant));
          call->Launch(std::move(converted), call);
        });
    return reactor;
  }

  absl::StatusOr<GenerationRequest> converted = convert(proto, *std::move(tenant));
  if (!converted.ok()) return reject(converted.status(), proto.session_id());
  auto call = std::make_shared<GenerateCall>(state_, &(*engine)->tokenizer(), start, deadline,
                                             proto.session_id());
  absl::StatusOr<std::shared_ptr<GenerationStream>> stream =
      call->Submit(*engine, *std::move(converted), call);
  if (!stream.ok()) return reject(stream.status(), proto.session_id());
  GenerateCall* reactor = call.get();
  reactor->Start(std::move(call), *std::move(stream));
  return reactor;
}

}  // namespace mamba::server
