#include "client/load_runner.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <queue>
#include <random>
#include <thread>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "client/client_call.h"
#include "grpcpp/completion_queue.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/support/channel_arguments.h"
#include "mambaserve/v1/generation.grpc.pb.h"
#include "mambaserve/v1/sessions.grpc.pb.h"

namespace mamba::client::load {
namespace {

namespace v1 = ::mambaserve::v1;
using Clock = std::chrono::steady_clock;

// Runs callbacks at given times on one thread: open-loop arrivals and session think times.
class TimerThread {
 public:
  TimerThread() : thread_([this] { Loop(); }) {}
  ~TimerThread() { Stop(); }
  TimerThread(const TimerThread&) = delete;
  TimerThread& operator=(const TimerThread&) = delete;

  void At(Clock::time_point when, std::function<void()> fn) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push(Entry{when, next_seq_++, std::move(fn)});
    }
    cv_.notify_one();
  }

  // Joins the thread; callbacks not yet due are dropped.
  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_one();
    if (thread_.joinable()) thread_.join();
  }

 private:
  struct Entry {
    Clock::time_point when;
    uint64_t seq;  // keeps entries due at the same time in order
    std::function<void()> fn;
    bool operator>(const Entry& o) const {
      return when != o.when ? when > o.when : seq > o.seq;
    }
  };

  void Loop() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
      if (queue_.empty()) {
        cv_.wait(lock);
        continue;
      }
      if (const Clock::time_point due = queue_.top().when; due > Clock::now()) {
        // By value: wait_until keeps reading its deadline while the lock is released, and an
        // At() meanwhile can reallocate the queue under a reference to its top (found by ASan).
        cv_.wait_until(lock, due);
        continue;
      }
      std::function<void()> fn = std::move(const_cast<Entry&>(queue_.top()).fn);
      queue_.pop();
      lock.unlock();
      fn();
      lock.lock();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> queue_;
  uint64_t next_seq_ = 0;
  bool stop_ = false;
  std::thread thread_;
};

double CpuSeconds(const timeval& tv) {
  return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) * 1e-6;
}

class Phase;

// Something with operations in flight on a completion queue. Its tags are its address with the
// operation's number in the low bits (objects are at least 8-byte aligned).
class AsyncCall {
 public:
  virtual ~AsyncCall() = default;
  // Operation `op` completed; `ok` as the completion queue reported it.
  virtual void Proceed(int op, bool ok) = 0;

 protected:
  void* Tag(int op) { return reinterpret_cast<void*>(reinterpret_cast<uintptr_t>(this) | static_cast<uintptr_t>(op));
  }
};

// One conversation's life. Sessions mode: create (with a client-chosen id), `turns` generations
// in sequence, close. Chat mode (stateless): `turns` generations, each resending the history.
// Owns itself; holds one of the phase's pending units until it is done.
class SessionRun final : public AsyncCall {
 public:
  SessionRun(Phase* phase, int index, bool stateless)
      : phase_(phase), index_(index), stateless_(stateless) {}
  void Start();
  // Turns the workload's next input into this turn's request: the system prompt in front of the
  // first input; in chat mode also the whole history before it.
  void PrepareTurn(v1::GenerateRequest* request);
  // A turn's stream ended with `code` after streaming `output`.
  void OnTurnDone(grpc::StatusCode code, const std::vector<int32_t>& output);
  void NextTurn();
  void Proceed(int op, bool ok) override;

 private:
  enum Op { kCreated = 1, kClosed = 2 };
  void OnCreated();
  void Close();
  void Finish();

  Phase* phase_;
  int index_;
  const bool stateless_;
  std::string requested_id_;
  std::string id_;
  int32_t turn_ = 0;
  std::vector<int32_t> history_;     // chat: every input and output so far, system prompt first
  std::vector<int32_t> last_input_;  // chat: the new input of the turn in flight
  std::unique_ptr<grpc::ClientContext> context_;
  grpc::Status status_;
  v1::CreateSessionRequest create_request_;
  v1::Session session_;
  std::unique_ptr<grpc::ClientAsyncResponseReader<v1::Session>> create_;
  v1::CloseSessionRequest close_request_;
  v1::CloseSessionResponse close_response_;
  std::unique_ptr<grpc::ClientAsyncResponseReader<v1::CloseSessionResponse>> close_;
};

// State shared by every call of one phase. Every outstanding asynchronous thing (a stream, a
// session's life, the arrival chain, a queued arrival) holds one pending unit; Run returns when
// none is left, and a callback's last touch of the phase is releasing its unit.
class Phase {
 public:
  Phase(const RunPlan& plan, const LoadTarget& target, Workload& workload, LiveCounters* live)
      : plan_(plan), target_(target), workload_(workload), live_(live), rng_(plan.seed) {
    for (const auto& channel : target.channels) {
      generation_.push_back(v1::Generation::NewStub(channel));
      sessions_.push_back(v1::Sessions::NewStub(channel));
    }
    for (int i = 0; i < std::max(target.poll_threads, 1); ++i) {
      queues_.push_back(std::make_unique<grpc::CompletionQueue>());
    }
  }

  PhaseResult Run();

  double Since(Clock::time_point t) const {
    return std::chrono::duration<double>(t - start_).count();
  }
  const RunPlan& plan() const { return plan_; }
  TimerThread& timers() { return timers_; }
  v1::Sessions::Stub* sessions_stub(int index) {
    return sessions_[static_cast<size_t>(index) % sessions_.size()].get();
  }
  grpc::CompletionQueue* queue(int index) {
    return queues_[static_cast<size_t>(index) % queues_.size()].get();
  }
  std::unique_ptr<grpc::ClientContext> NewContext(const std::string& session_id) const {
    auto context = std::make_unique<grpc::ClientContext>();
    if (target_.request_timeout > absl::ZeroDuration()) {
      context->set_deadline(absl::ToChronoTime(absl::Now() + target_.request_timeout));
    }
    if (!session_id.empty()) context->AddMetadata("x-session-id", session_id);
    AddAuthMetadata(context.get());
    return context;
  }
  void AddTokens(int64_t n) {
    if (live_ != nullptr) live_->tokens.fetch_add(n, std::memory_order_relaxed);
  }

  // Takes a pending unit and a request slot when the bounds allow another request; the caller
  // then calls Launch.
  bool ReserveRequest();
  // Starts a Generate stream (sessions mode: `owner`'s turn `turn` on `session_id`).
  void Launch(SessionRun* owner, const std::string& session_id, int32_t turn, int channel);
  // A stream ended: records it and starts what follows (the next request of a closed loop, a
  // queued arrival, the session's next turn), then releases the stream's unit.
  void RequestDone(RequestRecord record, SessionRun* owner, const std::vector<int32_t>& output);
  void SessionCreated(bool ok, const std::string& code, bool id_adopted);
  void SessionClosed(bool ok, const std::string& code);
  void ReleasePending();

 private:
  bool MayStartLocked(Clock::time_point when) const {
    if (plan_.max_requests > 0 && launched_ >= plan_.max_requests) return false;
    return !has_deadline_ || when < deadline_;
  }
  void OnArrival();
  static void Poll(grpc::CompletionQueue* queue);

  const RunPlan& plan_;
  const LoadTarget& target_;
  Workload& workload_;
  LiveCounters* live_;
  std::vector<std::unique_ptr<v1::Generation::Stub>> generation_;
  std::vector<std::unique_ptr<v1::Sessions::Stub>> sessions_;
  std::vector<std::unique_ptr<grpc::CompletionQueue>> queues_;
  std::vector<std::thread> pollers_;
  TimerThread timers_;

  Clock::time_point start_;
  bool has_deadline_ = false;
  Clock::time_point deadline_;

  std::mutex mu_;
  std::condition_variable all_done_;
  int64_t pending_ = 0;
  int64_t launched_ = 0;  // requests started or queued
  int64_t in_flight_ = 0;
  int64_t queued_ = 0;    // open loop: arrivals waiting for a place under the cap
  int64_t next_channel_ = 0;
  std::vector<RequestRecord> records_;
  PhaseMeasurements measured_;
  double last_send_s_ = 0;
  // Open loop only (the timer thread alone touches these).
  std::mt19937_64 rng_;
  std::optional<ArrivalProcess> arrivals_;
  Clock::time_point next_arrival_;
};

// One Generate stream. Owns itself; deleted when the stream ends.
class GenerateCall final : public AsyncCall {
 public:
  GenerateCall(Phase* phase, SessionRun* owner, int32_t turn) : phase_(phase), owner_(owner) {
    record_.turn = turn;
  }

  void Start(v1::Generation::Stub* stub, grpc::CompletionQueue* queue, Workload& workload,
             const std::string& session_id) {
    workload.Next(&request_);
    if (owner_ != nullptr) owner_->PrepareTurn(&request_);
    if (!session_id.empty()) request_.set_session_id(session_id);
    record_.itl_s.reserve(static_cast<size_t>(std::max(request_.stopping().max_tokens(), 1)));
    context_ = phase_->NewContext(session_id);
    reader_ = stub->PrepareAsyncGenerate(context_.get(), request_, queue);
    record_.send_s = phase_->Since(Clock::now());
    reader_->StartCall(Tag(kStarted));
  }

  void Proceed(int op, bool ok) override {
    switch (op) {
      case kStarted:
      case kRead:
        if (!ok) {  // the stream is over (or never started): collect its status
          reader_->Finish(&status_, Tag(kFinished));
          return;
        }
        if (op == kRead) OnResponse();
        reader_->Read(&response_, Tag(kRead));
        return;
      case kFinished:
        OnDone();
        return;
    }
  }

 private:
  enum Op { kStarted = 1, kRead = 2, kFinished = 3 };

  void OnResponse() {
    const double now = phase_->Since(Clock::now());
    const int k = response_.token_ids_size();
    if (k > 0) {
      RecordTokenArrival(&record_, now, k);
      phase_->AddTokens(k);
      if (owner_ != nullptr) {
        output_.insert(output_.end(), response_.token_ids().begin(), response_.token_ids().end());
      }
    }
    if (response_.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
      record_.finished = true;
      record_.finish_reason = response_.finish_reason();
      record_.end_s = now;
      record_.usage_prompt_tokens = response_.usage().prompt_tokens();
      record_.usage_generated_tokens = response_.usage().generated_tokens();
      record_.usage_cached_tokens = response_.usage().cached_tokens();
    }
  }

  void OnDone() {
    record_.status_code = status_.error_code();
    if (!record_.finished) record_.end_s = phase_->Since(Clock::now());
    Phase* phase = phase_;
    SessionRun* owner = owner_;
    RequestRecord record = std::move(record_);
    std::vector<int32_t> output = std::move(output_);
    delete this;
    phase->RequestDone(std::move(record), owner, output);
  }

  Phase* phase_;
  SessionRun* owner_;
  std::unique_ptr<grpc::ClientContext> context_;
  v1::GenerateRequest request_;
  v1::GenerateResponse response_;
  std::unique_ptr<grpc::ClientAsyncReader<v1::GenerateResponse>> reader_;
  grpc::Status status_;
  RequestRecord record_;
  std::vector<int32_t> output_;  // a conversation's turn: the tokens streamed back
};

bool Phase::ReserveRequest() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!MayStartLocked(Clock::now())) return false;
  ++launched_;
  ++in_flight_;
  ++pending_;
  measured_.max_in_flight = std::max(measured_.max_in_flight, in_flight_);
  return true;
}

void Phase::Launch(SessionRun* owner, const std::string& session_id, int32_t turn, int channel) {
  if (channel < 0) {
    std::lock_guard<std::mutex> lock(mu_);
    channel = static_cast<int>(next_channel_++ % static_cast<int64_t>(generation_.size()));
  }
  if (target_.http != nullptr) {  // CheckHttpMode (in RunPhase) keeps sessions and chat off
    v1::GenerateRequest request;
    workload_.Next(&request);
    HttpStreamCallbacks callbacks;
    callbacks.now_s = [this] { return Since(Clock::now()); };
    callbacks.tokens = [this](int64_t n) { AddTokens(n); };
    callbacks.done = [this](RequestRecord record) { RequestDone(std::move(record), nullptr, {}); };
    if (live_ != nullptr) live_->sent.fetch_add(1, std::memory_order_relaxed);
    target_.http->Generate(request, target_.request_timeout, std::move(callbacks));
    return;
  }
  auto* call = new GenerateCall(this, owner, turn);
  call->Start(generation_[static_cast<size_t>(channel) % generation_.size()].get(), queue(channel),
              workload_, session_id);
  if (live_ != nullptr) live_->sent.fetch_add(1, std::memory_order_relaxed);
}

void Phase::RequestDone(RequestRecord record, SessionRun* owner,
                        const std::vector<int32_t>& output) {
  const bool ok = record.Succeeded();
  const auto code = static_cast<grpc::StatusCode>(record.status_code);
  bool launch_next = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    last_send_s_ = std::max(last_send_s_, record.send_s);
    records_.push_back(std::move(record));
    --in_flight_;
    if (plan_.mode == RunPlan::Mode::kClosed && MayStartLocked(Clock::now())) {
      ++launched_;
      ++in_flight_;
      ++pending_;
      launch_next = true;
    } else if (plan_.mode == RunPlan::Mode::kOpen && queued_ > 0) {
      // A queued arrival takes the freed place; its pending unit passes to the stream.
      --queued_;
      ++in_flight_;
      launch_next = true;
    }
  }
  if (live_ != nullptr) {
    if (!ok) live_->failed.fetch_add(1, std::memory_order_relaxed);
    live_->done.fetch_add(1, std::memory_order_relaxed);
  }
  if (launch_next) Launch(nullptr, "", -1, -1);
  if (owner != nullptr) owner->OnTurnDone(code, output);
  ReleasePending();
}

void Phase::SessionCreated(bool ok, const std::string& code, bool id_adopted) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!ok) {
    ++measured_.session_create_failed[code];
    return;
  }
  ++measured_.sessions_created;
  if (!id_adopted) ++measured_.session_ids_chosen_by_server;
}

void Phase::SessionClosed(bool ok, const std::string& code) {
  std::lock_guard<std::mutex> lock(mu_);
  if (ok) {
    ++measured_.sessions_closed;
  } else {
    ++measured_.session_close_failed[code];
  }
}

void Phase::ReleasePending() {
  std::lock_guard<std::mutex> lock(mu_);
  if (--pending_ == 0) all_done_.notify_all();
}

void Phase::OnArrival() {
  bool launch = false;
  bool more = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (MayStartLocked(next_arrival_)) {
      ++launched_;
      ++pending_;
      if (plan_.concurrency > 0 && in_flight_ >= plan_.concurrency) {
        ++queued_;
      } else {
        ++in_flight_;
        measured_.max_in_flight = std::max(measured_.max_in_flight, in_flight_);
        launch = true;
      }
      more = true;
    }
  }
  if (launch) Launch(nullptr, "", -1, -1);
  if (!more) {
    ReleasePending();  // the arrival chain's unit
    return;
  }
  next_arrival_ += std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(arrivals_->NextGapSeconds(rng_)));
  timers_.At(next_arrival_, [this] { OnArrival(); });
}

void Phase::Poll(grpc::CompletionQueue* queue) {
  void* tag;
  bool ok;
  while (queue->Next(&tag, &ok)) {
    const auto bits = reinterpret_cast<uintptr_t>(tag);
    reinterpret_cast<AsyncCall*>(bits & ~uintptr_t{7})->Proceed(static_cast<int>(bits & 7), ok);
  }
}

PhaseResult Phase::Run() {
  rusage before;
  getrusage(RUSAGE_SELF, &before);
  for (const auto& q : queues_) pollers_.emplace_back([q = q.get()] { Poll(q); });
  start_ = Clock::now();
  if (plan_.duration > absl::ZeroDuration()) {
    has_deadline_ = true;
    deadline_ = start_ + absl::ToChronoNanoseconds(plan_.duration);
  }
  {
    // Holds a unit while starting, so that early completions cannot end the phase.
    std::lock_guard<std::mutex> lock(mu_);
    ++pending_;
  }
  switch (plan_.mode) {
    case RunPlan::Mode::kClosed:
      for (int32_t i = 0; i < plan_.concurrency && ReserveRequest(); ++i) {
        Launch(nullptr, "", -1, -1);
      }
      break;
    case RunPlan::Mode::kOpen: {
      arrivals_ = *ArrivalProcess::Create(plan_.rate, plan_.burstiness);
      {
        std::lock_guard<std::mutex> lock(mu_);
        ++pending_;  // the arrival chain's unit
      }
      next_arrival_ = start_ + std::chrono::duration_cast<Clock::duration>(
                                   std::chrono::duration<double>(arrivals_->NextGapSeconds(rng_)));
      timers_.At(next_arrival_, [this] { OnArrival(); });
      break;
    }
    case RunPlan::Mode::kSessions:
    case RunPlan::Mode::kChat:
      for (int32_t i = 0; i < plan_.sessions; ++i) {
        {
          std::lock_guard<std::mutex> lock(mu_);
          ++pending_;  // the conversation's unit
        }
        (new SessionRun(this, i, plan_.mode == RunPlan::Mode::kChat))->Start();
      }
      break;
  }
  std::unique_lock<std::mutex> lock(mu_);
  --pending_;
  all_done_.wait(lock, [this] { return pending_ == 0; });
  const Clock::time_point end = Clock::now();
  lock.unlock();
  timers_.Stop();
  for (const auto& q : queues_) q->Shutdown();
  for (std::thread& t : pollers_) t.join();
  rusage after;
  getrusage(RUSAGE_SELF, &after);

  PhaseResult result;
  result.measured = std::move(measured_);
  result.measured.duration_s = Since(end);
  result.measured.last_send_s = last_send_s_;
  result.measured.cpu_user_s = CpuSeconds(after.ru_utime) - CpuSeconds(before.ru_utime);
  result.measured.cpu_system_s = CpuSeconds(after.ru_stime) - CpuSeconds(before.ru_stime);
  result.measured.channels = static_cast<int32_t>(generation_.size());
  result.records = std::move(records_);
  return result;
}

void SessionRun::Start() {
  if (stateless_) {
    history_ = phase_->plan().system_prompt;
    NextTurn();
    return;
  }
  requested_id_ = RandomSessionId();
  create_request_.set_session_id(requested_id_);
  context_ = phase_->NewContext(requested_id_);
  create_ = phase_->sessions_stub(index_)->PrepareAsyncCreateSession(context_.get(),
                                                                     create_request_,
                                                                     phase_->queue(index_));
  create_->StartCall();
  create_->Finish(&session_, &status_, Tag(kCreated));
}

void SessionRun::Proceed(int op, bool /*ok: always true for a unary call's Finish*/) {
  if (op == kCreated) {
    OnCreated();
    return;
  }
  phase_->SessionClosed(
      status_.ok(), absl::StatusCodeToString(static_cast<absl::StatusCode>(status_.error_code())));
  Finish();
}

void SessionRun::OnCreated() {
  if (!status_.ok()) {
    phase_->SessionCreated(
        false, absl::StatusCodeToString(static_cast<absl::StatusCode>(status_.error_code())),
        false);
    Finish();
    return;
  }
  id_ = session_.session_id();
  phase_->SessionCreated(true, "", id_ == requested_id_);
  NextTurn();
}

void SessionRun::NextTurn() {
  if (turn_ < phase_->plan().turns && phase_->ReserveRequest()) {
    phase_->Launch(this, id_, turn_++, index_);
    return;
  }
  Close();
}

void SessionRun::PrepareTurn(v1::GenerateRequest* request) {
  const std::vector<int32_t>& system = phase_->plan().system_prompt;
  if (!request->has_token_ids()) return;  // text inputs (validated out of chat mode)
  auto* ids = request->mutable_token_ids()->mutable_ids();
  if (stateless_) {
    last_input_.assign(ids->begin(), ids->end());
    std::vector<int32_t> all = history_;
    all.insert(all.end(), last_input_.begin(), last_input_.end());
    ids->Assign(all.begin(), all.end());
    // The end of the shared system prompt, so that every conversation's first turn resumes there.
    if (!system.empty()) request->add_cache_checkpoints(static_cast<uint32_t>(system.size()));
  } else if (turn_ == 1 && !system.empty()) {  // turn_ already counts the turn in flight
    ids->Add(system.begin(), system.end());
    std::rotate(ids->begin(), ids->end() - static_cast<std::ptrdiff_t>(system.size()), ids->end());
  }
}

void SessionRun::OnTurnDone(grpc::StatusCode code, const std::vector<int32_t>& output) {
  if (stateless_) {
    if (code == grpc::StatusCode::OK) {
      history_.insert(history_.end(), last_input_.begin(), last_input_.end());
      history_.insert(history_.end(), output.begin(), output.end());
    }
  } else if (code == grpc::StatusCode::NOT_FOUND) {
    // The session is gone (expired or evicted): nothing left to continue or to close.
    Finish();
    return;
  }
  const absl::Duration think = phase_->plan().think_time;
  if (think > absl::ZeroDuration() && turn_ < phase_->plan().turns) {
    phase_->timers().At(Clock::now() + absl::ToChronoNanoseconds(think), [this] { NextTurn(); });
    return;
  }
  NextTurn();
}

void SessionRun::Close() {
  if (stateless_) {
    Finish();
    return;
  }
  close_request_.set_session_id(id_);
  context_ = phase_->NewContext(id_);
  close_ = phase_->sessions_stub(index_)->PrepareAsyncCloseSession(context_.get(), close_request_,
                                                                   phase_->queue(index_));
  close_->StartCall();
  close_->Finish(&close_response_, &status_, Tag(kClosed));
}

void SessionRun::Finish() {
  Phase* phase = phase_;
  delete this;
  phase->ReleasePending();
}

absl::string_view AsAbsl(std::string_view s) { return absl::string_view(s.data(), s.size()); }

bool IsLoopback(const sockaddr* address) {
  if (address->sa_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(address);
    return (ntohl(v4->sin_addr.s_addr) >> 24) == 127;
  }
  if (address->sa_family == AF_INET6) {
    const in6_addr& a = reinterpret_cast<const sockaddr_in6*>(address)->sin6_addr;
    if (IN6_IS_ADDR_LOOPBACK(&a)) return true;
    return IN6_IS_ADDR_V4MAPPED(&a) && a.s6_addr[12] == 127;
  }
  return false;
}

std::string AddressText(const sockaddr* address) {
  char text[INET6_ADDRSTRLEN] = "?";
  if (address->sa_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(address)->sin_addr, text,
              sizeof(text));
  } else if (address->sa_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(address)->sin6_addr, text,
              sizeof(text));
  }
  return text;
}

// The host of "HOST:PORT", "[V6]:PORT", "HOST" or a bare IPv6 address.
std::string HostOf(absl::string_view endpoint) {
  if (absl::StartsWith(endpoint, "[")) {
    const size_t close = endpoint.find(']');
    return std::string(endpoint.substr(1, close == absl::string_view::npos ? absl::string_view::npos
                                                                         : close - 1));
  }
  const size_t colon = endpoint.find(':');
  if (colon != absl::string_view::npos && endpoint.find(':', colon + 1) == absl::string_view::npos) {
    return std::string(endpoint.substr(0, colon));
  }
  return std::string(endpoint);
}

// "--FLAG=VALUE", as the loopback checks' messages quote the flag.
std::string FlagValue(std::string_view flag, std::string_view value) {
  return absl::StrCat("--", AsAbsl(flag), "=", AsAbsl(value));
}

absl::Status CheckHost(const std::string& host, std::string_view target, std::string_view flag) {
  if (host.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(FlagValue(flag, target), " names no host; use HOST:PORT"));
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const int rc = getaddrinfo(host.c_str(), nullptr, &hints, &found);
  if (rc != 0) {
    return absl::UnavailableError(
        absl::StrCat(FlagValue(flag, target), ": cannot resolve '", host, "': ", gai_strerror(rc)));
  }
  absl::Status status = absl::OkStatus();
  for (addrinfo* a = found; a != nullptr && status.ok(); a = a->ai_next) {
    if (!IsLoopback(a->ai_addr)) {
      status = absl::PermissionDeniedError(absl::StrCat(
          FlagValue(flag, target), ": '", host, "' resolves to ", AddressText(a->ai_addr),
          ", which is not a loopback address; load tests target this machine unless "
          "--allow_remote is given"));
    }
  }
  freeaddrinfo(found);
  return status;
}

}  // namespace

absl::Status ValidatePlan(const RunPlan& plan) {
  switch (plan.mode) {
    case RunPlan::Mode::kClosed:
      if (plan.concurrency < 1) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--concurrency=", plan.concurrency, " is out of range; allowed: >= 1"));
      }
      break;
    case RunPlan::Mode::kOpen: {
      absl::StatusOr<ArrivalProcess> arrivals = ArrivalProcess::Create(plan.rate, plan.burstiness);
      if (!arrivals.ok()) return arrivals.status();
      if (plan.concurrency < 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--concurrency=", plan.concurrency,
            " is out of range with --rate; allowed: 0 (no cap) or a cap >= 1"));
      }
      break;
    }
    case RunPlan::Mode::kSessions:
    case RunPlan::Mode::kChat:
      if (plan.sessions < 1 || plan.turns < 1) {
        return absl::InvalidArgumentError(
            absl::StrCat("--sessions=", plan.sessions, " --turns=", plan.turns,
                         " are out of range; allowed: both >= 1"));
      }
      if (plan.think_time < absl::ZeroDuration()) {
        return absl::InvalidArgumentError("--think_time_ms must be >= 0");
      }
      break;
  }
  if (plan.max_requests < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--requests=", plan.max_requests, " is out of range; allowed: >= 0"));
  }
  if (plan.duration < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--duration must be >= 0");
  }
  if (plan.mode != RunPlan::Mode::kSessions && plan.mode != RunPlan::Mode::kChat &&
      plan.max_requests == 0 &&
      plan.duration == absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "the load needs a bound: set --requests=N and/or --duration=SECONDS (sessions mode is "
        "bounded by --sessions x --turns)");
  }
  return absl::OkStatus();
}

absl::Status CheckHttpMode(RunPlan::Mode mode) {
  if (mode == RunPlan::Mode::kSessions || mode == RunPlan::Mode::kChat) {
    // Both need each answer's token ids, which SSE text does not carry.
    return absl::InvalidArgumentError(
        "--http drives stateless completions (a closed loop, or an open loop with --rate); "
        "--sessions and --chat run over gRPC");
  }
  return absl::OkStatus();
}

absl::StatusOr<PhaseResult> RunPhase(const RunPlan& plan, const LoadTarget& target,
                                     Workload& workload, LiveCounters* live) {
  absl::Status valid = ValidatePlan(plan);
  if (!valid.ok()) return valid;
  if (target.channels.empty()) return absl::InvalidArgumentError("no channels to load");
  if (target.http != nullptr) {
    absl::Status http = CheckHttpMode(plan.mode);
    if (!http.ok()) return http;
  }
  Phase phase(plan, target, workload, live);
  return phase.Run();
}

std::shared_ptr<grpc::Channel> OpenLoadChannel(const std::string& address, int index) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  args.SetMaxSendMessageSize(-1);
  // gRPC shares connections between channels with equal arguments; a local pool per channel
  // gives each its own HTTP/2 connection, so that one connection's flow control is not the limit.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetInt("mamba.load.channel_index", index);
  // Token messages are tiny and many: without these, the client writes a flow-control update or
  // a bandwidth probe every few messages, a system call each.
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 4 << 20);
  // Every receive passes through each filter of the channel stack; a load test needs none of the
  // retry machinery (a retried generation would be a different request anyway).
  args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
  args.SetInt(GRPC_ARG_MINIMAL_STACK, 1);
  // The same transport security and server-name override as every other subcommand.
  return OpenChannel(address, std::move(args));
}

absl::Status CheckLoopbackTarget(std::string_view target, std::string_view flag) {
  absl::string_view t = AsAbsl(target);
  if (absl::StartsWith(t, "unix:") || absl::StartsWith(t, "unix-abstract:")) {
    return absl::OkStatus();  // a local socket
  }
  std::vector<std::string> endpoints;
  if (absl::ConsumePrefix(&t, "ipv4:") || absl::ConsumePrefix(&t, "ipv6:")) {
    for (absl::string_view e : absl::StrSplit(t, ',')) endpoints.emplace_back(e);
  } else {
    if (absl::ConsumePrefix(&t, "dns:")) {
      // dns:HOST:PORT, dns:///HOST:PORT or dns://AUTHORITY/HOST:PORT.
      if (absl::ConsumePrefix(&t, "//")) {
        const size_t slash = t.find('/');
        t = slash == absl::string_view::npos ? absl::string_view() : t.substr(slash + 1);
      }
    } else if (t.find("://") != absl::string_view::npos || absl::StartsWith(t, "vsock:")) {
      return absl::InvalidArgumentError(
          absl::StrCat(FlagValue(flag, target),
                       ": cannot tell whether this target is local; use HOST:PORT, or "
                       "--allow_remote"));
    }
    endpoints.emplace_back(t);
  }
  for (const std::string& endpoint : endpoints) {
    absl::Status status = CheckHost(HostOf(endpoint), target, flag);
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

std::string RandomSessionId() {
  std::random_device device;  // /dev/urandom (getrandom) on Linux
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id(32, '0');
  for (int word = 0; word < 4; ++word) {
    uint32_t bits = device();
    for (int i = 0; i < 8; ++i, bits >>= 4) id[static_cast<size_t>(word * 8 + i)] = kHex[bits & 15];
  }
  return id;
}

}  // namespace mamba::client::load
