#include "server/openai/openai_service.h"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "server/openai/openai_api.h"
#include "server/request_validation.h"
#include "server/status_mapping.h"

namespace mamba::server::openai {
namespace {

using nlohmann::json;
namespace v1 = ::mambaserve::v1;

// Bodies up to this size are parsed on the I/O thread that received them; larger ones (and every
// chat request: its template is rendered once per message boundary) on a prompt thread.
constexpr size_t kInlineBodyBytes = 16 << 10;
// Message boundaries marked for the prefix cache: the first (the system prompt) and the last few
// (a resent conversation hits the latest); each costs a template rendering and a tokenization.
constexpr int kMaxMarkedBoundaries = 8;

const char* MethodName(Endpoint endpoint) {
  return endpoint == Endpoint::kChat ? "chat.completions" : "completions";
}

http::HttpResponse JsonResponse(int status, const json& body) {
  http::HttpResponse r;
  r.status = status;
  r.content_type = "application/json";
  r.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
  return r;
}

http::HttpResponse ErrorResponse(const ApiError& e) {
  http::HttpResponse r;
  r.status = e.http_status;
  r.content_type = "application/json";
  r.body = ErrorBody(e);
  if (e.retry_after_seconds > 0) {
    r.headers.emplace_back("Retry-After", absl::StrCat(e.retry_after_seconds));
  }
  return r;
}

// A token's text for the logprobs fields: its bytes, and those bytes as text (invalid UTF-8,
// a partial character, becomes U+FFFD when the JSON is written).
json TokenBytes(const std::string& bytes) {
  json out = json::array();
  for (unsigned char c : bytes) out.push_back(static_cast<int>(c));
  return out;
}

// One request: its choices (prompts x n), their engine streams, and the HTTP answer.
class OpenAiCall final : public ReadyTarget,
                         public DrainableCall,
                         public std::enable_shared_from_this<OpenAiCall> {
 public:
  struct Choice {
    int index = 0;
    int group = 0;  // the prompt it answers
    GenerationRequest request;
    std::shared_ptr<GenerationStream> stream;
    std::string session_id;  // a fork made for n > 1, closed at the end
    bool started = false;    // the chat role chunk was sent
    bool finished = false;
    GenerationResult result;
    std::string text;
    json logprobs;  // chat: the content list; completions: the four lists
    int64_t text_offset = 0;
  };

  OpenAiCall(ServingState* state, const OpenAiOptions* options,
             std::shared_ptr<http::HttpExchange> exchange, Endpoint endpoint, absl::Time start)
      : state_(state),
        options_(options),
        exchange_(std::move(exchange)),
        endpoint_(endpoint),
        start_(start),
        id_(NewResponseId(endpoint)),
        created_(absl::ToUnixSeconds(absl::Now())) {
    record_.protocol = "http";
    record_.method = MethodName(endpoint);
  }

  // Parses, converts and submits. Runs on an I/O thread or a prompt thread.
  void Start(std::string tenant) {
    absl::Status s = Prepare(std::move(tenant));
    if (!s.ok()) return Fail(s);
    {
      // The call owns itself until it has answered (FinishLocked lets go).
      std::lock_guard<std::mutex> lock(mu_);
      self_ = shared_from_this();
    }
    state_->Register(shared_from_this());
    std::weak_ptr<OpenAiCall> weak = weak_from_this();
    exchange_->OnAbort([weak] {
      if (std::shared_ptr<OpenAiCall> self = weak.lock()) self->ClientGone();
    });
    // Groups of one choice are submitted as they are; larger ones go through a forked session.
    std::vector<std::vector<size_t>> groups(prompts_);
    for (size_t i = 0; i < choices_.size(); ++i) groups[choices_[i].group].push_back(i);
    for (std::vector<size_t>& group : groups) {
      if (group.size() == 1) {
        SubmitChoice(group[0]);
      } else {
        LaunchForked(std::move(group));
      }
    }
    Pump();
  }

  void OnReady() override { Pump(); }

  void CancelGeneration() override {
    std::lock_guard<std::mutex> lock(mu_);
    cancelled_ = true;
    for (Choice& c : choices_) {
      if (c.stream) c.stream->Cancel();
    }
  }

  void ForceFinish(const grpc::Status& status) override {
    CancelGeneration();
    std::shared_ptr<OpenAiCall> keep;  // released after the lock
    std::lock_guard<std::mutex> lock(mu_);
    if (done_) return;
    FinishLocked(FromGrpcStatus(status), &keep);
  }

 private:
  absl::Status Prepare(std::string tenant) {
    absl::StatusOr<Engine*> engine = state_->EngineForNewCall();
    if (!engine.ok()) return engine.status();
    engine_ = *engine;
    const http::HttpRequest& http = exchange_->request();
    absl::StatusOr<ParsedRequest> parsed = ParseRequest(endpoint_, http.body);
    if (!parsed.ok()) return parsed.status();
    request_ = *std::move(parsed);
    if (!request_.model.empty() && request_.model != options_->served_model_name) {
      return WithParam(ModelNotFound(absl::StrCat(
                           "the model '", request_.model, "' does not exist; this server serves '",
                           options_->served_model_name, "' (GET /v1/models)")),
                       "model");
    }
    record_.session_id = request_.session_id;

    // The prompts, as our API takes them.
    std::vector<v1::GenerateRequest> protos;
    std::vector<int32_t> checkpoints;
    if (endpoint_ == Endpoint::kChat) {
      if (!options_->render_chat) return InvalidParam("messages", options_->no_template_message);
      absl::StatusOr<std::string> text =
          options_->render_chat(request_.template_messages, request_.add_generation_prompt);
      if (!text.ok()) {
        return InvalidParam("messages", absl::StrCat("the chat template failed: ",
                                                     text.status().message()));
      }
      if (static_cast<int64_t>(text->size()) >
          MaxPromptTextBytes(state_->limits().max_prompt_tokens, state_->model_limits())) {
        return InvalidParam("messages",
                            absl::StrCat("the conversation is ", text->size(),
                                         " bytes of prompt; at most --max_prompt_tokens = ",
                                         state_->limits().max_prompt_tokens, " tokens are allowed"));
      }
      // The template writes the specials itself (BOS included): none are added here.
      absl::StatusOr<std::vector<int32_t>> ids = engine_->tokenizer().Encode(*text, false);
      if (!ids.ok()) return InvalidParam("messages", ids.status().message());
      if (request_.session_id.empty()) checkpoints = MessageBoundaries(*text, *ids);
      v1::GenerateRequest p = request_.base;
      p.mutable_token_ids()->mutable_ids()->Assign(ids->begin(), ids->end());
      // OpenAI's chat default: as long as the model goes (to the server's bound).
      if (!p.stopping().has_max_tokens()) {
        p.mutable_stopping()->set_max_tokens(state_->limits().max_new_tokens);
      }
      protos.push_back(std::move(p));
    } else {
      for (const ParsedRequest::Prompt& prompt : request_.prompts) {
        v1::GenerateRequest p = request_.base;
        if (prompt.is_text) {
          p.set_text(prompt.text);
        } else {
          p.mutable_token_ids()->mutable_ids()->Assign(prompt.ids.begin(), prompt.ids.end());
        }
        protos.push_back(std::move(p));
      }
    }

    prompts_ = static_cast<int>(protos.size());
    const bool seeded = request_.base.sampling().has_seed();
    for (int g = 0; g < prompts_; ++g) {
      for (int c = 0; c < request_.n; ++c) {
        // Each choice draws its own tokens: seed + c when the client chose a seed.
        const uint64_t seed =
            seeded ? request_.base.sampling().seed() + static_cast<uint64_t>(c)
                   : state_->NextDefaultSeed();
        v1::GenerateRequest p = protos[g];
        if (seeded) p.mutable_sampling()->set_seed(seed);
        absl::StatusOr<GenerationRequest> converted =
            ToGenerationRequest(p, state_->limits(), state_->model_limits(), seed);
        if (!converted.ok()) {
          absl::Status s = converted.status();
          if (endpoint_ == Endpoint::kChat && absl::StartsWith(s.message(), "token_ids")) {
            // The rendered conversation, not a field the client sent.
            return InvalidParam("messages", absl::StrCat("the rendered conversation: ",
                                                         s.message()));
          }
          return s;
        }
        converted->tenant = tenant;
        converted->cache_checkpoints = checkpoints;
        Choice choice;
        choice.index = g * request_.n + c;
        choice.group = g;
        choice.request = *std::move(converted);
        choices_.push_back(std::move(choice));
      }
    }
    tenant_ = std::move(tenant);
    for (Choice& c : choices_) {
      c.logprobs = endpoint_ == Endpoint::kChat
                       ? json{{"content", json::array()}}
                       : json{{"tokens", json::array()},
                              {"token_logprobs", json::array()},
                              {"top_logprobs", json::array()},
                              {"text_offset", json::array()}};
    }
    return absl::OkStatus();
  }

  // Token offsets of the message boundaries that the conversation's tokens keep (a boundary
  // whose text prefix tokenizes to a prefix of the whole), for the prefix cache.
  std::vector<int32_t> MessageBoundaries(const std::string& text,
                                         const std::vector<int32_t>& ids) const {
    std::vector<int32_t> out;
    const int m = static_cast<int>(request_.template_messages.size());
    std::vector<int> ks;
    for (int k = 1; k < m; ++k) {
      if (k == 1 || k >= m - kMaxMarkedBoundaries) ks.push_back(k);
    }
    for (int k : ks) {
      nlohmann::ordered_json prefix = nlohmann::ordered_json::array();
      for (int i = 0; i < k; ++i) prefix.push_back(request_.template_messages[i]);
      absl::StatusOr<std::string> rendered = options_->render_chat(prefix, false);
      if (!rendered.ok() || rendered->empty() || !absl::StartsWith(text, *rendered)) continue;
      absl::StatusOr<std::vector<int32_t>> part = engine_->tokenizer().Encode(*rendered, false);
      if (!part.ok() || part->empty() || part->size() >= ids.size()) continue;
      if (!std::equal(part->begin(), part->end(), ids.begin())) continue;
      out.push_back(static_cast<int32_t>(part->size()));
    }
    return out;
  }

  void SubmitChoice(size_t i) {
    GenerationRequest request;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (cancelled_ || done_) {
        choices_[i].finished = true;
        choices_[i].result.finish_reason = FinishReason::kCancelled;
        choices_[i].result.status = absl::CancelledError("the client went away");
        return;
      }
      request = choices_[i].request;
    }
    std::weak_ptr<OpenAiCall> weak = weak_from_this();
    StreamDispatcher* dispatcher = &state_->dispatcher();
    absl::StatusOr<std::shared_ptr<GenerationStream>> stream =
        engine_->Submit(std::move(request), [weak, dispatcher] {
          if (std::shared_ptr<OpenAiCall> self = weak.lock()) dispatcher->Post(std::move(self));
        });
    std::lock_guard<std::mutex> lock(mu_);
    Choice& c = choices_[i];
    if (!stream.ok()) {
      c.finished = true;
      c.result.finish_reason = FinishReason::kError;
      c.result.status = stream.status();
      return;
    }
    c.stream = *std::move(stream);
    if (record_.request_id.empty()) record_.request_id = c.stream->request_id();
    if (cancelled_) c.stream->Cancel();
  }

  // n > 1: the prompt but its last token into a session, forked into one session per choice;
  // each choice then feeds the last token and generates.
  void LaunchForked(std::vector<size_t> group) {
    const std::vector<int32_t>& prompt = choices_[group[0]].request.prompt;
    std::vector<int32_t> prefix(prompt.begin(), prompt.end() - 1);
    const absl::Duration ttl = absl::Seconds(options_->fork_session_ttl_seconds);
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++pending_forks_;
    }
    std::shared_ptr<OpenAiCall> self = shared_from_this();
    engine_->CreateSession(
        tenant_, std::move(prefix), ttl,
        [self, group, ttl](absl::StatusOr<SessionInfo> parent) {
          if (!parent.ok()) return self->ForkFailed(group, parent.status(), {});
          std::vector<std::string> ids = {parent->session_id};
          if (group.size() == 1) return self->ForksReady(group, std::move(ids));
          auto shared = std::make_shared<std::vector<std::string>>(std::move(ids));
          auto left = std::make_shared<std::atomic<int>>(static_cast<int>(group.size()) - 1);
          auto failure = std::make_shared<absl::Status>();
          auto mu = std::make_shared<std::mutex>();
          for (size_t k = 1; k < group.size(); ++k) {
            self->engine_->ForkSession(
                self->tenant_, parent->session_id, ttl,
                [self, group, shared, left, failure, mu](absl::StatusOr<SessionInfo> child) {
                  {
                    std::lock_guard<std::mutex> lock(*mu);
                    if (child.ok()) {
                      shared->push_back(child->session_id);
                    } else if (failure->ok()) {
                      *failure = child.status();
                    }
                  }
                  if (left->fetch_sub(1) != 1) return;
                  if (!failure->ok()) return self->ForkFailed(group, *failure, *shared);
                  self->ForksReady(group, *shared);
                });
          }
        });
  }

  void ForksReady(const std::vector<size_t>& group, std::vector<std::string> sessions) {
    // Session callbacks run on the engine's thread: submit from a dispatcher thread.
    std::shared_ptr<OpenAiCall> self = shared_from_this();
    state_->dispatcher().PostTask([self, group, sessions = std::move(sessions)] {
      {
        std::lock_guard<std::mutex> lock(self->mu_);
        for (size_t k = 0; k < group.size(); ++k) {
          Choice& c = self->choices_[group[k]];
          c.session_id = sessions[k];
          c.request.session_id = sessions[k];
          c.request.prompt = {c.request.prompt.back()};
          c.request.session_start.clear();
          c.request.cache_checkpoints.clear();
        }
        --self->pending_forks_;
      }
      for (size_t i : group) self->SubmitChoice(i);
      self->Pump();
    });
  }

  void ForkFailed(const std::vector<size_t>& group, const absl::Status& status,
                  const std::vector<std::string>& made) {
    for (const std::string& id : made) engine_->CloseSession(tenant_, id, [](absl::Status) {});
    std::shared_ptr<OpenAiCall> self = shared_from_this();
    state_->dispatcher().PostTask([self, group, status] {
      {
        std::lock_guard<std::mutex> lock(self->mu_);
        for (size_t i : group) {
          Choice& c = self->choices_[i];
          c.finished = true;
          c.result.finish_reason = FinishReason::kError;
          c.result.status = status;
        }
        --self->pending_forks_;
      }
      self->Pump();
    });
  }

  void ClientGone() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      client_gone_ = true;
    }
    CancelGeneration();
  }

  // Moves what the streams produced into events (streaming) or the choices (not streaming), and
  // answers once every choice has finished.
  void Pump() {
    std::shared_ptr<OpenAiCall> keep;  // released after the lock
    std::lock_guard<std::mutex> lock(mu_);
    if (done_) return;
    std::string events;
    for (Choice& c : choices_) {
      if (c.finished || c.stream == nullptr) continue;
      GenerationChunk chunk;
      while (c.stream->Read(&chunk)) {
        Absorb(c, chunk, &events);
        if (chunk.finished) {
          c.finished = true;
          c.result = chunk.result;
          break;
        }
      }
    }
    if (request_.stream && !events.empty() && !client_gone_) SendEvents(std::move(events));
    if (pending_forks_ > 0) return;
    for (const Choice& c : choices_) {
      if (!c.finished) return;
    }
    // Every choice has finished: the first error (not a cancellation) decides the answer.
    absl::Status failure;
    for (const Choice& c : choices_) {
      const bool error = c.result.finish_reason == FinishReason::kError ||
                         (!c.result.status.ok() &&
                          c.result.status.code() != absl::StatusCode::kCancelled);
      if (error) {
        failure = c.result.status.ok() ? absl::InternalError("generation failed")
                                       : c.result.status;
        break;
      }
    }
    if (failure.ok() && client_gone_) failure = absl::CancelledError("the client disconnected");
    FinishLocked(failure, &keep);
  }

  // Adds a chunk's tokens and text to `c`, and its events to *events when streaming.
  void Absorb(Choice& c, const GenerationChunk& chunk, std::string* events) {
    json lp_delta;
    if (request_.logprobs && !chunk.logprobs.empty()) lp_delta = LogprobsJson(c, chunk);
    c.text += chunk.text;
    if (!request_.stream) return;
    const bool has_output = !chunk.text.empty() || !chunk.logprobs.empty();
    if (endpoint_ == Endpoint::kChat) {
      if (!c.started) {
        c.started = true;
        *events += Envelope().Event(json{{"index", c.index},
                                         {"delta", {{"role", "assistant"}, {"content", ""}}},
                                         {"logprobs", nullptr},
                                         {"finish_reason", nullptr}});
      }
      if (has_output && lp_delta.is_null()) {
        *events += Envelope().TextEvent(c.index, chunk.text);
      } else if (has_output) {
        *events += Envelope().Event(json{{"index", c.index},
                                         {"delta", {{"content", chunk.text}}},
                                         {"logprobs", lp_delta},
                                         {"finish_reason", nullptr}});
      }
      if (chunk.finished && !Errored(chunk.result)) {
        *events += Envelope().Event(
            json{{"index", c.index},
                 {"delta", json::object()},
                 {"logprobs", nullptr},
                 {"finish_reason", FinishReasonString(chunk.result.finish_reason)}});
      }
    } else {
      const bool ends = chunk.finished && !Errored(chunk.result);
      if (has_output && !ends && lp_delta.is_null()) {
        *events += Envelope().TextEvent(c.index, chunk.text);
      } else if (has_output || ends) {
        *events += Envelope().Event(json{
            {"index", c.index},
            {"text", chunk.text},
            {"logprobs", lp_delta.is_null() ? json(nullptr) : lp_delta},
            {"finish_reason",
             ends ? json(FinishReasonString(chunk.result.finish_reason)) : json(nullptr)}});
      }
    }
  }

  static bool Errored(const GenerationResult& r) {
    return r.finish_reason == FinishReason::kError ||
           (!r.status.ok() && r.status.code() != absl::StatusCode::kCancelled);
  }

  // The chunk's log-probabilities (appended to the choice's, and returned for the event).
  json LogprobsJson(Choice& c, const GenerationChunk& chunk) {
    const tokenizer::Tokenizer& tok = engine_->tokenizer();
    auto bytes_of = [&](int32_t id) {
      absl::StatusOr<std::string> b = tok.DecodeBytes({id});
      return b.ok() ? *b : std::string();
    };
    if (endpoint_ == Endpoint::kChat) {
      json content = json::array();
      for (const TokenLogprobs& t : chunk.logprobs) {
        const std::string b = bytes_of(t.chosen.token);
        json top = json::array();
        for (const sampling::TokenLogprob& alt : t.top) {
          const std::string ab = bytes_of(alt.token);
          top.push_back({{"token", ab}, {"logprob", alt.logprob}, {"bytes", TokenBytes(ab)}});
        }
        json entry = {{"token", b},
                      {"logprob", t.chosen.logprob},
                      {"bytes", TokenBytes(b)},
                      {"top_logprobs", std::move(top)}};
        c.logprobs["content"].push_back(entry);
        content.push_back(std::move(entry));
      }
      return json{{"content", std::move(content)}};
    }
    json delta = {{"tokens", json::array()},
                  {"token_logprobs", json::array()},
                  {"top_logprobs", json::array()},
                  {"text_offset", json::array()}};
    for (const TokenLogprobs& t : chunk.logprobs) {
      const std::string b = bytes_of(t.chosen.token);
      json top = json::object();
      for (const sampling::TokenLogprob& alt : t.top) {
        // Completions' alternatives are a map from the tokens' text.
        top[bytes_of(alt.token)] = alt.logprob;
      }
      for (json* target : {&delta, &c.logprobs}) {
        (*target)["tokens"].push_back(b);
        (*target)["token_logprobs"].push_back(t.chosen.logprob);
        (*target)["top_logprobs"].push_back(top);
        (*target)["text_offset"].push_back(c.text_offset);
      }
      c.text_offset += static_cast<int64_t>(b.size());
    }
    return delta;
  }

  // The streamed chunks' shared part (made at the first event, under mu_).
  const ChunkEnvelope& Envelope() {
    if (!envelope_) {
      envelope_.emplace(endpoint_, id_, created_, options_->served_model_name, request_.session_id,
                        request_.include_usage);
    }
    return *envelope_;
  }

  void SendEvents(std::string events) {
    if (!stream_started_) {
      stream_started_ = true;
      exchange_->BeginStream(200, "text/event-stream",
                             {{"Cache-Control", "no-cache"}, {"X-Accel-Buffering", "no"}});
    }
    exchange_->Send(std::move(events));
  }

  json UsageLocked() const {
    int64_t prompt = 0, completion = 0, cached = 0;
    std::vector<bool> counted(static_cast<size_t>(prompts_), false);
    for (const Choice& c : choices_) {
      completion += c.result.usage.generated_tokens;
      if (counted[c.group]) continue;  // a prompt counts once, whatever n is
      counted[c.group] = true;
      if (!c.session_id.empty()) {
        prompt += static_cast<int64_t>(c.request.prompt.size()) + c.result.usage.cached_tokens;
      } else {
        prompt += c.result.usage.prompt_tokens + c.result.usage.cached_tokens;
        cached += c.result.usage.cached_tokens;
      }
    }
    return UsageJson(prompt, completion, cached);
  }

  // Answers (or ends the stream) with `failure` or the choices; closes forked sessions; reports.
  // The call's reference to itself moves to *keep, for the caller to drop after mu_.
  void FinishLocked(const absl::Status& failure, std::shared_ptr<OpenAiCall>* keep) {
    done_ = true;
    *keep = std::move(self_);
    const bool gone = client_gone_ || exchange_->aborted();
    if (!failure.ok()) {
      const ApiError e = ErrorFromStatus(failure);
      if (!gone) {
        if (stream_started_) {
          exchange_->Send(SseEvent(json::parse(ErrorBody(e))) + std::string(kSseDone));
          exchange_->EndStream();
        } else {
          exchange_->Respond(ErrorResponse(e));
        }
      }
    } else if (request_.stream) {
      std::string tail;
      if (request_.include_usage) {
        json usage_chunk = {{"id", id_},
                            {"object", ObjectName(endpoint_, true)},
                            {"created", created_},
                            {"model", options_->served_model_name},
                            {"choices", json::array()},
                            {"usage", UsageLocked()}};
        if (!request_.session_id.empty()) usage_chunk["session_id"] = request_.session_id;
        tail += SseEvent(usage_chunk);
      }
      tail += kSseDone;
      SendEvents(std::move(tail));
      exchange_->EndStream();
    } else {
      json choices = json::array();
      std::vector<const Choice*> ordered;
      for (const Choice& c : choices_) ordered.push_back(&c);
      std::sort(ordered.begin(), ordered.end(),
                [](const Choice* a, const Choice* b) { return a->index < b->index; });
      for (const Choice* c : ordered) {
        json lp = request_.logprobs ? c->logprobs : json(nullptr);
        const char* reason = FinishReasonString(c->result.finish_reason);
        if (endpoint_ == Endpoint::kChat) {
          choices.push_back({{"index", c->index},
                             {"message", {{"role", "assistant"}, {"content", c->text}}},
                             {"logprobs", std::move(lp)},
                             {"finish_reason", reason}});
        } else {
          choices.push_back({{"index", c->index},
                             {"text", c->text},
                             {"logprobs", std::move(lp)},
                             {"finish_reason", reason}});
        }
      }
      json body = {{"id", id_},
                   {"object", ObjectName(endpoint_, false)},
                   {"created", created_},
                   {"model", options_->served_model_name},
                   {"choices", std::move(choices)},
                   {"usage", UsageLocked()}};
      if (!request_.session_id.empty()) body["session_id"] = request_.session_id;
      if (!gone) exchange_->Respond(JsonResponse(200, body));
    }
    for (const Choice& c : choices_) {
      if (!c.session_id.empty()) engine_->CloseSession(tenant_, c.session_id, [](absl::Status) {});
    }
    // The request log line and counter.
    const json usage = choices_.empty() ? json() : UsageLocked();
    if (!usage.is_null()) {
      record_.prompt_tokens = usage["prompt_tokens"].get<int64_t>() -
                              usage["prompt_tokens_details"]["cached_tokens"].get<int64_t>();
      record_.generated_tokens = usage["completion_tokens"].get<int64_t>();
      record_.cached_tokens = usage["prompt_tokens_details"]["cached_tokens"].get<int64_t>();
    }
    for (const Choice& c : choices_) {
      if (c.result.usage.generated_tokens > 0 &&
          (!record_.time_to_first_token ||
           c.result.timing.time_to_first_token < *record_.time_to_first_token)) {
        record_.time_to_first_token = c.result.timing.time_to_first_token;
      }
    }
    if (!choices_.empty()) record_.finish_reason = FinishReasonName(choices_[0].result.finish_reason);
    record_.code = failure.code();
    record_.error_message = std::string(failure.message());
    record_.e2e = absl::Now() - start_;
    state_->ReportCall(record_);
    state_->Unregister(this);
  }

 public:
  // A request refused before any work: answered and reported now.
  void Fail(const absl::Status& status) {
    exchange_->Respond(ErrorResponse(ErrorFromStatus(status)));
    record_.code = status.code();
    record_.error_message = std::string(status.message());
    record_.e2e = absl::Now() - start_;
    state_->ReportCall(record_);
  }

 private:
  ServingState* const state_;
  const OpenAiOptions* const options_;
  const std::shared_ptr<http::HttpExchange> exchange_;
  const Endpoint endpoint_;
  const absl::Time start_;
  const std::string id_;
  const int64_t created_;
  std::optional<ChunkEnvelope> envelope_;
  Engine* engine_ = nullptr;
  ParsedRequest request_;
  std::string tenant_;
  int prompts_ = 0;

  std::mutex mu_;
  std::shared_ptr<OpenAiCall> self_;  // from Start until the answer
  std::vector<Choice> choices_;
  int pending_forks_ = 0;
  bool stream_started_ = false;
  bool cancelled_ = false;
  bool client_gone_ = false;
  bool done_ = false;
  metrics::RequestRecord record_;
};

}  // namespace

OpenAiService::OpenAiService(ServingState* state, OpenAiOptions options)
    : state_(state), options_(std::move(options)) {}

http::HttpResponse OpenAiService::TooLarge(int64_t max_request_bytes) {
  ApiError e;
  e.http_status = 413;
  e.message = absl::StrCat("the request body is larger than ", max_request_bytes,
                           " bytes (twice the longest prompt --max_prompt_tokens allows, at least "
                           "1 MiB)");
  e.code = "request_too_large";
  return ErrorResponse(e);
}

void OpenAiService::SetModel(std::string served_model_name, ChatRenderer render_chat,
                             int64_t created_unix_seconds) {
  options_.served_model_name = std::move(served_model_name);
  options_.render_chat = std::move(render_chat);
  options_.created_unix_seconds = created_unix_seconds;
}

int64_t OpenAiService::MaxRequestBytes(const RequestLimits& limits, const ModelLimits& model) {
  // JSON escapes can double text (\" and \\), or make it six times longer (\u00e9) at worst;
  // twice the prompt bound covers text as clients send it.
  return std::max<int64_t>(1 << 20, 2 * MaxPromptTextBytes(limits.max_prompt_tokens, model) +
                                        (64 << 10));
}

void OpenAiService::Handle(std::shared_ptr<http::HttpExchange> exchange) {
  const absl::Time start = absl::Now();
  const http::HttpRequest& request = exchange->request();
  const std::string& path = request.path;
  auto reply = [&](const http::HttpResponse& response) { exchange->Respond(response); };
  auto error = [&](int status, std::string message, std::string code, std::string type =
                                                                          "invalid_request_error") {
    ApiError e;
    e.http_status = status;
    e.message = std::move(message);
    e.code = std::move(code);
    e.type = std::move(type);
    reply(ErrorResponse(e));
  };
  const bool get = request.method == "GET" || request.method == "HEAD";

  if (path == "/health" || path == "/v1/health") {
    if (!get) return error(405, absl::StrCat(path, " takes GET"), "method_not_allowed");
    if (state_->phase() == ServingPhase::kServing) {
      return reply(JsonResponse(200, json{{"status", "ok"}}));
    }
    const absl::StatusOr<Engine*> engine = state_->EngineForNewCall();
    return reply(JsonResponse(
        503, json{{"status", "unavailable"},
                  {"reason", engine.ok() ? "not serving" : std::string(engine.status().message())}}));
  }

  const bool completions = path == "/v1/completions";
  const bool chat = path == "/v1/chat/completions";
  const bool models = path == "/v1/models" || absl::StartsWith(path, "/v1/models/");
  if (!completions && !chat && !models) {
    return error(404,
                 absl::StrCat("no route ", request.method, " ", path,
                              "; this server serves GET /v1/models, POST /v1/completions, "
                              "POST /v1/chat/completions and GET /health"),
                 "not_found");
  }
  if (models ? !get : request.method != "POST") {
    return error(405, absl::StrCat(path, " takes ", models ? "GET" : "POST", ", not ",
                                   request.method),
                 "method_not_allowed");
  }

  std::optional<std::string_view> authorization;
  const bool has_auth = request.HasHeader("authorization");
  const std::string auth_value = request.Header("authorization");
  if (has_auth) authorization = auth_value;
  absl::StatusOr<std::string> tenant = state_->Authenticate(authorization);
  if (!tenant.ok()) {
    ApiError e = ErrorFromStatus(tenant.status());
    reply(ErrorResponse(e));
    metrics::RequestRecord record;
    record.protocol = "http";
    record.method = models ? "models" : MethodName(chat ? Endpoint::kChat : Endpoint::kCompletions);
    record.code = tenant.status().code();
    record.error_message = std::string(tenant.status().message());
    record.e2e = absl::Now() - start;
    state_->ReportCall(record);
    return;
  }

  if (models) {
    // Counted and logged like the gRPC API's unary calls.
    auto report = [&](absl::StatusCode code, std::string message) {
      metrics::RequestRecord record;
      record.protocol = "http";
      record.method = "models";
      record.code = code;
      record.error_message = std::move(message);
      record.e2e = absl::Now() - start;
      state_->ReportCall(record);
    };
    if (absl::StatusOr<Engine*> engine = state_->EngineForNewCall(); !engine.ok()) {
      reply(ErrorResponse(ErrorFromStatus(engine.status())));
      return report(engine.status().code(), std::string(engine.status().message()));
    }
    const json model = {{"id", options_.served_model_name},
                        {"object", "model"},
                        {"created", options_.created_unix_seconds},
                        {"owned_by", "mamba-serve"}};
    if (path == "/v1/models") {
      reply(JsonResponse(200, json{{"object", "list"}, {"data", json::array({model})}}));
      return report(absl::StatusCode::kOk, "");
    }
    const std::string id = path.substr(std::string("/v1/models/").size());
    if (id != options_.served_model_name) {
      const absl::Status missing =
          ModelNotFound(absl::StrCat("the model '", id, "' does not exist; this server serves '",
                                     options_.served_model_name, "'"));
      reply(ErrorResponse(ErrorFromStatus(missing)));
      return report(missing.code(), std::string(missing.message()));
    }
    reply(JsonResponse(200, model));
    return report(absl::StatusCode::kOk, "");
  }

  const Endpoint endpoint = chat ? Endpoint::kChat : Endpoint::kCompletions;
  auto call = std::make_shared<OpenAiCall>(state_, &options_, exchange, endpoint, start);
  if (chat || request.body.size() > kInlineBodyBytes) {
    state_->prompt_dispatcher().PostTask(
        [call, tenant = *std::move(tenant)]() mutable { call->Start(std::move(tenant)); });
  } else {
    call->Start(*std::move(tenant));
  }
}

}  // namespace mamba::server::openai
