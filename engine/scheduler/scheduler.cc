#include "engine/scheduler/scheduler.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"

namespace mamba::scheduler {
namespace {

// The "prompt but its last token" checkpoint costs the request that makes it one more step
// before its first token (its last token is fed alone, after the copy). A prompt that hit
// nothing takes it always: resending a prompt then prefills one token (retries, n samples,
// batch jobs). A prompt that continues a cached prefix (a chat turn: the previous turn's end)
// takes it only when the part it prefills is at least this long: a short new message is cheap
// to prefill again, and the step it would cost every turn is what separates the cache's time
// to first token from a session's (on the 2-core CPU host, 4 conversations of 130m with 64-token
// turns: 359 ms with the checkpoint, sessions 212 ms).
constexpr int64_t kMinRepeatSavingAfterHit = 128;

bool Contains(const std::vector<int32_t>& v, int32_t x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

}  // namespace

Scheduler::Scheduler(backend::Backend* backend, const tokenizer::Tokenizer* tokenizer,
                     sessions::SessionStore* sessions, sessions::StatePlacement* placement,
                     const SchedulerOptions& options, EngineObserver* observer,
                     prefix_cache::PrefixCache* cache)
    : backend_(backend),
      tokenizer_(tokenizer),
      sessions_(sessions),
      placement_(placement),
      options_(options),
      observer_(observer),
      cache_(cache != nullptr && cache->enabled() ? cache : nullptr),
      eos_id_(tokenizer->eos_id()) {}

Scheduler::~Scheduler() { Stop(); }

void Scheduler::Start() {
  thread_ = std::thread([this] { Run(); });
}

void Scheduler::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

absl::Status Scheduler::Enqueue(std::shared_ptr<ScheduledRequest> request) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return absl::UnavailableError("the server is shutting down; retry elsewhere");
    if (queued_.load(std::memory_order_relaxed) >= options_.max_queue) {
      return absl::ResourceExhaustedError(
          absl::StrCat("the server is at capacity: ", options_.max_queue,
                       " requests are already waiting (--max_queue); retry later with backoff"));
    }
    const std::string& tenant = request->request.tenant;
    if (options_.tenant_max_running > 0 && tenant_active_[tenant] >= options_.tenant_max_running) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "this tenant already has ", options_.tenant_max_running,
          " requests queued or running (--tenant_max_running); wait for one to finish"));
    }
    ++tenant_active_[tenant];
    request->arrival = absl::Now();
    inbox_.push_back(std::move(request));
    queued_.fetch_add(1, std::memory_order_relaxed);
  }
  cv_.notify_one();
  return absl::OkStatus();
}

bool Scheduler::Post(std::function<void()> command) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return false;
    commands_.push_back(std::move(command));
  }
  cv_.notify_one();
  return true;
}

void Scheduler::Run() {
  std::vector<std::function<void()>> commands;
  for (;;) {
    bool stopping;
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (!stopping_ && inbox_.empty() && commands_.empty() && running_.empty() &&
          waiting_.empty()) {
        // Idle: wake for new work, or now and then to expire sessions.
        cv_.wait_for(lock, std::chrono::milliseconds(100));
      }
      while (!inbox_.empty()) {
        next_deadline_ = std::min(next_deadline_, inbox_.front()->request.deadline);
        waiting_.push_back(std::move(inbox_.front()));
        inbox_.pop_front();
      }
      commands.swap(commands_);
      stopping = stopping_;
    }
    for (auto& c : commands) c();
    commands.clear();
    if (stopping) break;

    const absl::Time now = absl::Now();
    if (now >= next_expiry_check_) {
      placement_->ExpireIdle(now);
      next_expiry_check_ = now + absl::Milliseconds(100);
    }
    CheckCancellations(now);
    Admit(now);
    if (!running_.empty()) StepOnce();
  }
  const absl::Status shutdown = absl::UnavailableError("the server is shutting down");
  for (auto& r : running_) Finish(*r, FinishReason::kCancelled, shutdown);
  for (auto& r : waiting_) Finish(*r, FinishReason::kCancelled, shutdown);
  running_.clear();
  waiting_.clear();
  std::deque<std::shared_ptr<ScheduledRequest>> inbox;
  {
    std::lock_guard<std::mutex> lock(mu_);
    inbox.swap(inbox_);
    commands.swap(commands_);
  }
  for (auto& r : inbox) Finish(*r, FinishReason::kCancelled, shutdown);
  for (auto& c : commands) c();
}

void Scheduler::CheckCancellations(absl::Time now) {
  const uint64_t cancels = cancel_signal_->load(std::memory_order_acquire);
  if (cancels == cancels_seen_ && now < next_deadline_) return;
  cancels_seen_ = cancels;
  next_deadline_ = absl::InfiniteFuture();
  auto check = [&](ScheduledRequest& r) {
    if (r.stream != nullptr && r.stream->cancelled()) {
      Finish(r, FinishReason::kCancelled, absl::CancelledError("cancelled by the client"));
    } else if (now >= r.request.deadline) {
      Finish(r, FinishReason::kCancelled,
             absl::DeadlineExceededError(
                 absl::StrCat("deadline exceeded after ", r.generated, " generated tokens")));
    } else if (r.session != nullptr && r.session->closed) {
      Finish(r, FinishReason::kCancelled, absl::OkStatus());
    } else {
      next_deadline_ = std::min(next_deadline_, r.request.deadline);
    }
  };
  for (auto& r : waiting_) check(*r);
  for (auto& r : running_) check(*r);
  auto done = [](const std::shared_ptr<ScheduledRequest>& r) { return r->done; };
  waiting_.erase(std::remove_if(waiting_.begin(), waiting_.end(), done), waiting_.end());
  running_.erase(std::remove_if(running_.begin(), running_.end(), done), running_.end());
}

void Scheduler::Admit(absl::Time now) {
  while (!waiting_.empty() && static_cast<int32_t>(running_.size()) < options_.max_running) {
    absl::Status error;
    // Arrival order: the head waits for a slot, nobody overtakes it.
    if (!TryBind(*waiting_.front(), &error)) break;
    std::shared_ptr<ScheduledRequest> r = std::move(waiting_.front());
    waiting_.pop_front();
    r->first_scheduled = now;
    queued_.fetch_sub(1, std::memory_order_relaxed);
    running_count_.fetch_add(1, std::memory_order_relaxed);
    if (error.ok()) {
      running_.push_back(std::move(r));
      continue;
    }
    // The state could not be placed in its slot: the session cannot continue consistently.
    std::shared_ptr<sessions::Session> session = r->session;
    Finish(*r, FinishReason::kError, error);
    if (session != nullptr) placement_->Drop(*session, /*evicted=*/false);
  }
}

bool Scheduler::TryBind(ScheduledRequest& r, absl::Status* error) {
  const std::vector<int32_t>& prompt = r.request.prompt;
  size_t reused = 0;  // prompt tokens a prefix cache hit holds already
  if (r.session != nullptr) {
    sessions::Session& s = *r.session;
    absl::StatusOr<std::optional<int32_t>> slot = placement_->BindToSlot(s);
    if (slot.ok() && !slot->has_value()) return false;
    if (!slot.ok()) {
      *error = slot.status();
      return true;  // the session owns the slot now: dropping it frees the slot
    }
    auto lock = sessions_->Acquire();
    r.feed = std::move(s.pending);
    s.pending.clear();
    r.cached_tokens = s.tokens;
    r.slot = **slot;
  } else if (cache_ != nullptr && r.generate) {
    // Stateless: resume from the longest cached prefix of the prompt, leaving at least its last
    // token to prefill (it produces the first logits). The hit stays pinned until copied.
    std::optional<prefix_cache::PrefixCache::Hit> hit;
    if (prompt.size() > 1) {
      hit = cache_->Lookup(r.request.tenant, prompt, static_cast<int64_t>(prompt.size()) - 1);
    }
    std::optional<int32_t> slot;
    if (hit) {
      slot = placement_->AcquireSlot();
      if (!slot) {
        cache_->Unpin(*hit);
        return false;
      }
      const absl::Status st = cache_->Restore(*hit, *slot);
      if (!st.ok()) {
        placement_->ReleaseSlot(*slot);
        *error = st;
        return true;
      }
      reused = static_cast<size_t>(hit->length);
    } else {
      absl::StatusOr<std::optional<int32_t>> zeroed = placement_->AcquireZeroedSlot();
      if (zeroed.ok() && !zeroed->has_value()) return false;
      if (!zeroed.ok()) {
        *error = zeroed.status();
        return true;
      }
      slot = **zeroed;
    }
    cache_->CountLookup();
    r.slot = *slot;
    r.cached = true;
    r.cached_tokens = static_cast<int64_t>(reused);
    r.state_tokens.assign(prompt.begin(), prompt.begin() + static_cast<std::ptrdiff_t>(reused));
    PlanCheckpoints(r);
  } else {
    absl::StatusOr<std::optional<int32_t>> slot = placement_->AcquireZeroedSlot();
    if (slot.ok() && !slot->has_value()) return false;
    if (!slot.ok()) {
      *error = slot.status();
      return true;
    }
    r.slot = **slot;
  }
  r.feed.insert(r.feed.end(), prompt.begin() + static_cast<std::ptrdiff_t>(reused), prompt.end());
  r.history = prompt;
  if (r.session != nullptr && r.cached_tokens > 0) {
    resumed_tokens_.fetch_add(r.cached_tokens, std::memory_order_relaxed);
    if (observer_ != nullptr) observer_->OnResumedTokens(r.cached_tokens);
  }
  if (r.generate) {
    // Generated text continues the text before it (the prompt; a session's earlier turns), as
    // vLLM and TGI decode it: the first generated word keeps its leading space with tokenizers
    // that strip one at the start of a text (SentencePiece-converted ones).
    r.decoder.emplace(tokenizer_, /*skip_special_tokens=*/true);
    if (r.session != nullptr && r.cached_tokens > 0) r.decoder->AssumeTextBefore();
    // The ids were validated at Submit; a failure would only cost the context.
    (void)r.decoder->AddContext(r.session != nullptr ? absl::MakeConstSpan(r.feed)
                                                     : absl::MakeConstSpan(prompt));
    r.stops.emplace(r.request.stopping.stop_strings);
  }
  return true;
}

void Scheduler::PlanCheckpoints(ScheduledRequest& r) {
  const std::vector<int32_t>& prompt = r.request.prompt;
  const int64_t n = static_cast<int64_t>(prompt.size());
  const int64_t from = r.cached_tokens;
  std::vector<int64_t> points;
  // The prompt but its last token (a repeated prompt then prefills one token), intervals inside
  // long prompts, and the offsets the caller marked (message boundaries).
  if (n - 1 - from >= 1 && (from == 0 || n - 1 - from >= kMinRepeatSavingAfterHit)) {
    points.push_back(n - 1);
  }
  if (cache_->interval() > 0) {
    for (int64_t p = cache_->interval(); p < n - 1; p += cache_->interval()) {
      if (p > from) points.push_back(p);
    }
  }
  for (int32_t mark : r.request.cache_checkpoints) {
    if (mark > from && mark <= n) points.push_back(mark);
  }
  std::sort(points.begin(), points.end());
  points.erase(std::unique(points.begin(), points.end()), points.end());
  for (int64_t p : points) {
    if (!cache_->Contains(r.request.tenant,
                          absl::MakeConstSpan(prompt.data(), static_cast<size_t>(p)))) {
      r.checkpoints.push_back(p);
    }
  }
  r.next_checkpoint = 0;
}

void Scheduler::CancelSessionRequest(const sessions::Session* session) {
  auto match = [&](const std::shared_ptr<ScheduledRequest>& r) {
    return r->session.get() == session && !r->done;
  };
  for (auto& r : running_) {
    if (match(r)) Finish(*r, FinishReason::kCancelled, absl::OkStatus());
  }
  for (auto& r : waiting_) {
    if (match(r)) Finish(*r, FinishReason::kCancelled, absl::OkStatus());
  }
  auto done = [](const std::shared_ptr<ScheduledRequest>& r) { return r->done; };
  waiting_.erase(std::remove_if(waiting_.begin(), waiting_.end(), done), waiting_.end());
  running_.erase(std::remove_if(running_.begin(), running_.end(), done), running_.end());
}

void Scheduler::StepOnce() {
  work_.clear();
  work_owner_.clear();
  int32_t decode_tokens = 0;
  int32_t prefill_tokens = 0;
  auto add = [&](ScheduledRequest& r, absl::Span<const int32_t> tokens, bool sample) {
    backend::SeqWork w;
    w.slot = r.slot;
    w.tokens = tokens;
    w.sample = sample;
    if (sample) {
      w.sampling = r.request.sampling;
      w.sample_position = static_cast<uint64_t>(r.generated);
      w.penalty_tokens = r.history;
      // history ends with the tokens generated so far.
      w.output_tokens = absl::MakeConstSpan(r.history).last(static_cast<size_t>(r.generated));
      w.top_logprobs = std::max(0, r.request.logprobs);
    }
    work_.push_back(w);
    work_owner_.push_back(&r);
  };
  // One decode token for every running sequence past its prompt, unless its reader is far behind.
  for (auto& rp : running_) {
    ScheduledRequest& r = *rp;
    if (r.fed < r.feed.size()) continue;
    if (r.stream != nullptr && r.stream->unread_tokens() > options_.max_unread_tokens) continue;
    add(r, absl::MakeConstSpan(&r.last_token, 1), true);
    ++decode_tokens;
  }
  // Then prompt chunks, in arrival order, up to the step's prefill budget.
  int32_t budget = options_.max_prefill_tokens_per_step;
  for (auto& rp : running_) {
    if (budget <= 0) break;
    ScheduledRequest& r = *rp;
    if (r.fed >= r.feed.size()) continue;
    int32_t n = std::min<int32_t>(budget, static_cast<int32_t>(r.feed.size() - r.fed));
    if (r.next_checkpoint < r.checkpoints.size()) {
      // End the chunk at the next checkpoint, so that the state after it can be kept.
      const int64_t position = r.cached_tokens + static_cast<int64_t>(r.fed);
      n = static_cast<int32_t>(
          std::min<int64_t>(n, r.checkpoints[r.next_checkpoint] - position));
    }
    const bool last = r.fed + static_cast<size_t>(n) == r.feed.size();
    add(r, absl::MakeConstSpan(r.feed.data() + r.fed, static_cast<size_t>(n)), last && r.generate);
    budget -= n;
    prefill_tokens += n;
  }
  if (work_.empty()) {
    // Every running stream is paused behind a slow reader: wait a little instead of spinning.
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::milliseconds(1));
    return;
  }

  results_.resize(work_.size());
  const absl::Time t0 = absl::Now();
  const absl::Status st = backend_->Step(work_, absl::MakeSpan(results_));
  const absl::Time t1 = absl::Now();
  steps_.fetch_add(1, std::memory_order_relaxed);
  if (observer_ != nullptr) {
    const auto phase = prefill_tokens == 0  ? EngineObserver::StepPhase::kDecode
                       : decode_tokens == 0 ? EngineObserver::StepPhase::kPrefill
                                            : EngineObserver::StepPhase::kMixed;
    observer_->OnStep(phase, absl::ToDoubleSeconds(t1 - t0), static_cast<int32_t>(work_.size()),
                      prefill_tokens, decode_tokens);
  }
  delivering_ = true;
  if (!st.ok()) {
    // The step as a whole failed (a device fault): the states of its sequences are unknown, so
    // those requests end and their sessions are not kept.
    const absl::Status err =
        absl::InternalError(absl::StrCat("engine step failed: ", std::string(st.message())));
    for (ScheduledRequest* r : work_owner_) FailSequence(*r, err);
  } else {
    for (size_t i = 0; i < work_.size(); ++i) {
      ScheduledRequest& r = *work_owner_[i];
      if (!results_[i].status.ok()) {
        FailSequence(r, results_[i].status);  // this sequence alone
        continue;
      }
      if (r.cached) {
        r.state_tokens.insert(r.state_tokens.end(), work_[i].tokens.begin(),
                              work_[i].tokens.end());
      }
      if (r.fed < r.feed.size()) {  // a prompt chunk
        r.fed += work_[i].tokens.size();
        if (r.next_checkpoint < r.checkpoints.size() &&
            r.cached_tokens + static_cast<int64_t>(r.fed) ==
                r.checkpoints[r.next_checkpoint]) {
          cache_->Snapshot(r.request.tenant, r.state_tokens, r.slot);
          ++r.next_checkpoint;
        }
        prompt_tokens_.fetch_add(static_cast<int64_t>(work_[i].tokens.size()),
                                 std::memory_order_relaxed);
        if (!r.generate && r.fed == r.feed.size()) {
          Finish(r, FinishReason::kLength, absl::OkStatus());
          continue;
        }
      }
      if (work_[i].sample) HandleToken(r, results_[i], t1);
    }
  }
  delivering_ = false;
  for (const std::shared_ptr<GenerationStream>& stream : ready_) stream->NotifyReady();
  ready_.clear();
  auto done = [](const std::shared_ptr<ScheduledRequest>& r) { return r->done; };
  running_.erase(std::remove_if(running_.begin(), running_.end(), done), running_.end());
}

void Scheduler::FailSequence(ScheduledRequest& r, const absl::Status& status) {
  // INVALID_ARGUMENT: the backend refused the work before running it, so the state is as it was
  // and the session (with the unfed tokens kept pending) stays usable. Otherwise the state holds
  // whatever the failure left in it: the session is marked broken (its state freed), so that its
  // owner learns why at the next use instead of meeting an unknown id.
  const bool state_untouched = status.code() == absl::StatusCode::kInvalidArgument;
  std::shared_ptr<sessions::Session> session = r.session;
  const std::string message = absl::StrCat("generation failed: ", status.message());
  // Broken before the caller hears of the failure, so that its next call sees why.
  if (session != nullptr && !state_untouched) placement_->Break(*session, message);
  Finish(r, FinishReason::kError, absl::Status(status.code(), message));
}

void Scheduler::HandleToken(ScheduledRequest& r, const backend::SeqResult& result, absl::Time now) {
  const int32_t token = result.token;
  ++r.generated;
  r.last_token = token;
  r.history.push_back(token);
  generated_tokens_.fetch_add(1, std::memory_order_relaxed);
  if (!r.first_token) {
    r.first_token = now;
    if (observer_ != nullptr) observer_->OnFirstToken(now - r.arrival);
  } else if (observer_ != nullptr) {
    observer_->OnInterTokenLatency(now - r.last_token_time);
  }
  r.last_token_time = now;

  absl::StatusOr<std::string> piece = r.decoder->Add(token);
  bool stop_hit = false;
  std::string text = r.stops->Add(piece.ok() ? *piece : std::string(), &stop_hit);
  const StoppingCriteria& stopping = r.request.stopping;
  std::optional<FinishReason> reason;
  if (stop_hit) {
    reason = FinishReason::kStop;
    r.stop_string_hit = true;
  } else if (!stopping.ignore_eos && eos_id_ && token == *eos_id_) {
    reason = FinishReason::kEos;
  } else if (Contains(stopping.stop_token_ids, token)) {
    reason = FinishReason::kStop;
  } else if (r.generated >= stopping.max_tokens) {
    reason = FinishReason::kLength;
  }
  if (r.request.logprobs >= 0) {
    std::vector<TokenLogprobs> lp(1);
    lp[0].chosen = sampling::TokenLogprob{token, result.logprob};
    lp[0].top = result.top;
    Push(r, {token}, text, &lp);
  } else {
    Push(r, {token}, text, nullptr);
  }
  if (reason) Finish(r, *reason, absl::OkStatus());
}

void Scheduler::Finish(ScheduledRequest& r, FinishReason reason, absl::Status status) {
  if (r.done) return;
  r.done = true;
  const absl::Time now = absl::Now();
  const bool admitted = r.first_scheduled.has_value();  // left the queue
  const bool bound = r.slot >= 0;                       // and got its state into a slot
  if (r.stream != nullptr && r.decoder && !r.stop_string_hit) {
    bool stop_hit = false;
    std::string tail = r.stops->Add(r.decoder->Flush(), &stop_hit);
    if (!stop_hit) tail += r.stops->Flush();
    if (!tail.empty()) Push(r, {}, tail, nullptr);
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = tenant_active_.find(r.request.tenant);
    if (it != tenant_active_.end() && --it->second <= 0) tenant_active_.erase(it);
  }
  if (admitted) {
    running_count_.fetch_sub(1, std::memory_order_relaxed);
  } else {
    queued_.fetch_sub(1, std::memory_order_relaxed);
  }

  // Input tokens this request prefilled: a stateless request's prompt minus what a cached prefix
  // held (a session's cached tokens came before its prompt).
  const int32_t prompt_len = static_cast<int32_t>(
      r.request.prompt.size() - (r.session == nullptr ? static_cast<size_t>(r.cached_tokens) : 0));
  if (r.session != nullptr) {
    auto lock = sessions_->Acquire();
    sessions::Session& s = *r.session;
    if (!s.closed && !s.broken_reason.empty()) {
      s.busy = false;  // its state is gone: nothing to keep pending
      s.last_used = now;
    } else if (!s.closed) {
      if (bound) {
        // The state holds feed[0, fed); what was streamed but not fed waits for the next turn.
        s.pending.assign(r.feed.begin() + static_cast<std::ptrdiff_t>(r.fed), r.feed.end());
        if (r.generated > 0) s.pending.push_back(r.last_token);
      } else {
        s.pending.insert(s.pending.end(), r.request.prompt.begin(), r.request.prompt.end());
      }
      s.tokens += prompt_len + r.generated;
      if (r.generate) s.last_generated = r.generated;
      s.busy = false;
      s.last_used = now;
    }
  } else if (bound) {
    // A stateless request's state is the cache's entry for what it holds (its input and what it
    // generated but the last token, never fed), so that the client's next turn resumes from it.
    const bool kept = r.cached && reason != FinishReason::kError && !r.state_tokens.empty() &&
                      cache_->Adopt(r.request.tenant, r.state_tokens, r.slot);
    if (!kept) placement_->ReleaseSlot(r.slot);
  }

  GenerationResult result;
  result.finish_reason = reason;
  result.status = std::move(status);
  result.usage.prompt_tokens = prompt_len;
  result.usage.generated_tokens = r.generated;
  result.usage.cached_tokens = r.cached_tokens;
  result.timing.queue_time = (r.first_scheduled ? *r.first_scheduled : now) - r.arrival;
  result.timing.time_to_first_token =
      r.first_token ? *r.first_token - r.arrival : absl::ZeroDuration();
  result.timing.total = now - r.arrival;
  if (r.generate && observer_ != nullptr) observer_->OnRequestFinished(r.request, result);
  if (r.on_processed) r.on_processed(result.status);
  if (r.stream != nullptr) FinishStream(r, std::move(result));
}

void Scheduler::Push(ScheduledRequest& r, absl::Span<const int32_t> ids, std::string_view text,
                     const std::vector<TokenLogprobs>* logprobs) {
  if (r.stream->Push(ids, text, logprobs, delivering_)) ready_.push_back(r.stream);
}

void Scheduler::FinishStream(ScheduledRequest& r, GenerationResult result) {
  if (r.stream->Finish(std::move(result), delivering_)) ready_.push_back(r.stream);
}

EngineStats Scheduler::Stats() const {
  EngineStats s;
  s.requests_running = running_count_.load(std::memory_order_relaxed);
  s.requests_waiting = queued_.load(std::memory_order_relaxed);
  s.resumed_tokens = resumed_tokens_.load(std::memory_order_relaxed);
  s.prompt_tokens = prompt_tokens_.load(std::memory_order_relaxed);
  s.generated_tokens = generated_tokens_.load(std::memory_order_relaxed);
  s.steps = steps_.load(std::memory_order_relaxed);
  return s;
}

}  // namespace mamba::scheduler
