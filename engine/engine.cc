#include "engine/engine.h"

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/backend_factory.h"
#include "engine/model_loader.h"
#include "engine/scheduler.h"
#include "engine/session_codec.h"
#include "engine/session_store.h"
#include "engine/status_macros.h"

namespace mamba {
namespace {

// Where the embedded default model is looked for: beside an installed binary first
// (<prefix>/bin/mamba-serve -> <prefix>/share/mamba-serve/models/default), then the source tree
// the binary was built from.
std::string DefaultModelDir() {
  std::vector<std::string> candidates;
  char exe[4096];
  const ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = '\0';
    const std::filesystem::path bin = std::filesystem::path(exe).parent_path();
    candidates.push_back((bin.parent_path() / "share/mamba-serve/models/default").string());
  }
#ifdef MAMBA_DEFAULT_MODEL_DIR
  candidates.push_back(MAMBA_DEFAULT_MODEL_DIR);
#endif
  for (const std::string& dir : candidates) {
    std::error_code ec;
    if (std::filesystem::exists(std::filesystem::path(dir) / "config.json", ec)) return dir;
  }
  return "";
}

absl::Status ValidateTokens(const std::vector<int32_t>& tokens, int32_t vocab) {
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || tokens[i] >= vocab) {
      return absl::InvalidArgumentError(absl::StrCat("token id ", tokens[i], " at position ", i,
                                                     " is out of range; allowed: 0 to ",
                                                     vocab - 1));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateRequest(const GenerationRequest& r, int32_t vocab) {
  if (r.prompt.empty()) {
    return absl::InvalidArgumentError("the input is empty; send at least one token");
  }
  MAMBA_RETURN_IF_ERROR(ValidateTokens(r.prompt, vocab));
  if (r.stopping.max_tokens < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_tokens ", r.stopping.max_tokens, " is out of range; allowed: >= 1"));
  }
  if (r.logprobs > 20) {
    return absl::InvalidArgumentError(
        absl::StrCat("logprobs ", r.logprobs, " is out of range; allowed: 0 to 20"));
  }
  const SamplingParams& s = r.sampling;
  if (!(s.temperature >= 0.0f)) {
    return absl::InvalidArgumentError("temperature must be >= 0 (0 is greedy)");
  }
  if (s.top_k < 0) return absl::InvalidArgumentError("top_k must be >= 0 (0 is off)");
  if (!(s.top_p > 0.0f && s.top_p <= 1.0f)) {
    return absl::InvalidArgumentError("top_p must be in (0, 1] (1 is off)");
  }
  if (!(s.min_p >= 0.0f && s.min_p <= 1.0f)) {
    return absl::InvalidArgumentError("min_p must be in [0, 1] (0 is off)");
  }
  if (!(s.repetition_penalty > 0.0f)) {
    return absl::InvalidArgumentError("repetition_penalty must be > 0 (1 is off)");
  }
  return absl::OkStatus();
}

// Runs one short prefill and a few decode steps so that first requests do not pay for lazy
// initialization (kernel loading, graph capture, allocator growth).
absl::Status WarmUp(Backend& backend) {
  const ModelConfig& c = backend.config();
  std::vector<int32_t> prompt;
  for (int i = 0; i < 8; ++i) prompt.push_back((i * 7919 + 13) % c.vocab_size);
  MAMBA_RETURN_IF_ERROR(backend.ResetSlot(0));
  SeqWork w;
  w.slot = 0;
  w.tokens = prompt;
  w.sample = true;
  std::vector<SeqResult> out(1);
  MAMBA_RETURN_IF_ERROR(backend.Step(absl::MakeConstSpan(&w, 1), absl::MakeSpan(out)));
  for (int i = 0; i < 3; ++i) {
    const int32_t token = out[0].token;
    w.tokens = absl::MakeConstSpan(&token, 1);
    w.sample_position = static_cast<uint64_t>(i + 1);
    MAMBA_RETURN_IF_ERROR(backend.Step(absl::MakeConstSpan(&w, 1), absl::MakeSpan(out)));
  }
  return backend.ResetSlot(0);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(const EngineOptions& options,
                                                       EngineObserver* observer) {
  std::unique_ptr<Engine> engine(new Engine());
  engine->options_ = options;

  std::string spec = options.model;
  std::string note;
  if (spec.empty()) {
    spec = DefaultModelDir();
    if (spec.empty()) {
      spec = "synthetic:tiny";
      note = " (the embedded default model is missing; serving synthetic:tiny)";
    }
  }
  std::string backend_kind = options.backend;
  if (backend_kind == "auto") backend_kind = CudaAvailable() ? "cuda" : "cpu";

  LoadOptions load;
  load.seed = options.seed;
  if (options.dtype != "auto") {
    MAMBA_ASSIGN_OR_RETURN(DType dtype, ParseDType(options.dtype));
    load.dtype = dtype;
  }
  MAMBA_ASSIGN_OR_RETURN(LoadedModel model, LoadModel(spec, load));
  if (backend_kind == "cuda" && !load.dtype && model.weights.MatrixDType() == DType::kF32) {
    // The GPU keeps half-precision weights: an f32 checkpoint becomes bf16 unless told otherwise.
    MAMBA_ASSIGN_OR_RETURN(model.weights, model.weights.ConvertTo(DType::kBF16));
  }

  // Tokenizer: the flag, else tokenizer.json beside the checkpoint, else bytes.
  const std::string tokenizer_path =
      !options.tokenizer.empty() ? options.tokenizer : model.tokenizer_path;
  if (!tokenizer_path.empty()) {
    MAMBA_ASSIGN_OR_RETURN(engine->tokenizer_, LoadTokenizerJson(tokenizer_path));
  } else {
    engine->tokenizer_ = MakeByteTokenizer({"<|endoftext|>"}, model.config.vocab_size);
  }

  ModelInfo& info = engine->info_;
  info.name = model.name + note;
  info.source = model.source;
  info.identity = model.identity;
  info.config = model.config;
  info.num_parameters = model.config.NumParameters();
  info.warnings = model.warnings;
  info.tokenizer_vocab_size = engine->tokenizer_->vocab_size();
  info.tokenizer_kind = engine->tokenizer_->kind();
  info.eos_token_id = engine->tokenizer_->eos_id();

  BackendOptions bo;
  bo.kind = backend_kind;
  bo.device = options.device;
  bo.num_slots = options.num_slots;
  bo.cpu_threads = options.cpu_threads;
  bo.state_dtype = options.state_dtype;
  bo.gpu_memory_fraction = options.gpu_memory_fraction;
  bo.max_batch = options.max_running;
  bo.deterministic = options.deterministic;
  MAMBA_ASSIGN_OR_RETURN(std::unique_ptr<Backend> backend, CreateBackend(bo, model));
  MAMBA_RETURN_IF_ERROR(WarmUp(*backend));

  info.backend = backend->name();
  info.device = backend->device();
  info.weight_dtype = std::string(DTypeName(backend->weight_dtype()));
  info.state_dtype = std::string(DTypeName(backend->state_dtype()));
  info.weight_bytes = static_cast<int64_t>(backend->weight_bytes());
  info.state_bytes_per_session = static_cast<int64_t>(backend->state_bytes());
  info.num_slots = backend->num_slots();

  engine->sessions_ = std::make_unique<SessionStore>(options.max_sessions,
                                                     options.tenant_max_sessions,
                                                     options.session_ttl);
  SchedulerOptions so;
  so.max_running = std::max(1, std::min(options.max_running, backend->num_slots()));
  so.max_queue = options.max_queue;
  so.max_prefill_tokens_per_step = std::max(1, options.max_prefill_tokens_per_step);
  so.max_unread_tokens = std::max(1, options.max_unread_tokens);
  so.tenant_max_running = options.tenant_max_running;
  so.host_state_memory_gb = options.host_state_memory_gb;
  so.eos_id = engine->tokenizer_->eos_id();
  engine->backend_ = std::move(backend);
  engine->scheduler_ = std::make_unique<Scheduler>(engine->backend_.get(), engine->tokenizer_.get(),
                                                   engine->sessions_.get(), so, observer);
  engine->scheduler_->Start();
  return engine;
}

Engine::~Engine() { Shutdown(); }

void Engine::Shutdown() {
  if (scheduler_ != nullptr) scheduler_->Stop();
}

absl::StatusOr<std::shared_ptr<GenerationStream>> Engine::Submit(GenerationRequest request,
                                                                 std::function<void()> on_ready) {
  MAMBA_RETURN_IF_ERROR(ValidateRequest(request, info_.config.vocab_size));
  if (request.request_id.empty()) request.request_id = SessionStore::NewId().substr(0, 16);
  auto r = std::make_shared<ScheduledRequest>();
  if (!request.session_id.empty()) {
    MAMBA_ASSIGN_OR_RETURN(r->session, sessions_->Reserve(request.tenant, request.session_id));
  }
  r->stream = std::make_shared<GenerationStream>(request.request_id, std::move(on_ready));
  r->request = std::move(request);
  std::shared_ptr<GenerationStream> stream = r->stream;
  std::shared_ptr<Session> session = r->session;
  absl::Status st = scheduler_->Enqueue(std::move(r));
  if (!st.ok()) {
    if (session != nullptr) sessions_->Release(session);
    return st;
  }
  return stream;
}

void Engine::CreateSession(const std::string& tenant, std::vector<int32_t> prompt,
                           absl::Duration ttl, SessionCallback done,
                           const std::string& requested_id) {
  absl::Status valid = ValidateTokens(prompt, info_.config.vocab_size);
  if (!valid.ok()) return done(valid);
  absl::StatusOr<std::shared_ptr<Session>> created =
      sessions_->Create(tenant, ttl, /*busy=*/!prompt.empty(), requested_id);
  if (!created.ok()) return done(created.status());
  std::shared_ptr<Session> session = *created;
  if (prompt.empty()) {
    auto lock = sessions_->Acquire();
    return done(sessions_->Info(*session));
  }
  auto r = std::make_shared<ScheduledRequest>();
  r->generate = false;
  r->session = session;
  r->request.tenant = tenant;
  r->request.session_id = session->id;
  r->request.prompt = std::move(prompt);
  Scheduler* scheduler = scheduler_.get();
  SessionStore* store = sessions_.get();
  r->on_processed = [scheduler, store, session, done](absl::Status st) {
    // Runs on the scheduler thread.
    auto lock = store->Acquire();
    if (!st.ok()) {
      if (!session->closed) scheduler->DropSessionLocked(lock, *session, /*evicted=*/false);
      lock.unlock();
      return done(st);
    }
    SessionInfo info = store->Info(*session);
    lock.unlock();
    done(info);
  };
  absl::Status st = scheduler_->Enqueue(std::move(r));
  if (!st.ok()) {
    sessions_->Remove(session->id, /*evicted=*/false);
    done(st);
  }
}

absl::StatusOr<SessionInfo> Engine::GetSession(const std::string& tenant, const std::string& id) {
  return sessions_->Get(tenant, id);
}

absl::StatusOr<SessionPage> Engine::ListSessions(const std::string& tenant, int32_t page_size,
                                                 const std::string& page_token) {
  return sessions_->List(tenant, page_size, page_token);
}

namespace {

absl::Status Unavailable() { return absl::UnavailableError("the server is shutting down"); }

}  // namespace

void Engine::ForkSession(const std::string& tenant, const std::string& id, absl::Duration ttl,
                         SessionCallback done) {
  Scheduler* sched = scheduler_.get();
  SessionStore* store = sessions_.get();
  const bool posted = sched->Post([sched, store, tenant, id, ttl, done] {
    absl::StatusOr<std::shared_ptr<Session>> parent = store->Reserve(tenant, id);
    if (!parent.ok()) return done(parent.status());
    absl::StatusOr<std::shared_ptr<Session>> child =
        store->Create(tenant, ttl, /*busy=*/true, /*requested_id=*/"", /*id_prefix=*/id);
    if (!child.ok()) {
      store->Release(*parent);
      return done(child.status());
    }
    Session& p = **parent;
    Session& c = **child;
    Backend* backend = sched->backend();
    absl::Status st;
    if (p.where == Session::Where::kDevice) {
      if (std::optional<int32_t> slot = sched->AcquireSlot()) {
        st = backend->CopySlot(p.slot, *slot);
        auto lock = store->Acquire();
        c.where = Session::Where::kDevice;
        c.slot = *slot;
      } else if (sched->ReserveHostBytes(static_cast<int64_t>(backend->state_bytes()), &c)) {
        std::unique_ptr<HostState> host = backend->AllocateHostState();
        st = backend->SaveSlot(p.slot, host.get());
        auto lock = store->Acquire();
        c.where = Session::Where::kHost;
        c.host = std::move(host);
      } else {
        st = absl::ResourceExhaustedError(
            "no state slot or host memory is free for the fork; retry when sessions are closed");
      }
    } else if (p.where == Session::Where::kHost) {
      if (std::optional<int32_t> slot = sched->AcquireSlot()) {
        st = backend->LoadSlot(*slot, *p.host);
        auto lock = store->Acquire();
        c.where = Session::Where::kDevice;
        c.slot = *slot;
      } else if (sched->ReserveHostBytes(static_cast<int64_t>(p.host->size()), &c)) {
        std::unique_ptr<HostState> host = backend->AllocateHostState();
        std::memcpy(host->data(), p.host->data(), p.host->size());
        auto lock = store->Acquire();
        c.where = Session::Where::kHost;
        c.host = std::move(host);
      } else {
        st = absl::ResourceExhaustedError(
            "no state slot or host memory is free for the fork; retry when sessions are closed");
      }
    }
    auto lock = store->Acquire();
    if (!st.ok()) {
      sched->DropSessionLocked(lock, c, /*evicted=*/false);
      p.busy = false;
      lock.unlock();
      return done(st);
    }
    c.tokens = p.tokens;
    c.pending = p.pending;
    c.busy = false;
    c.last_used = absl::Now();
    p.busy = false;
    p.last_used = c.last_used;
    SessionInfo info = store->Info(c);
    lock.unlock();
    done(info);
  });
  if (!posted) done(Unavailable());
}

void Engine::CloseSession(const std::string& tenant, const std::string& id,
                          std::function<void(absl::Status)> done) {
  Scheduler* sched = scheduler_.get();
  SessionStore* store = sessions_.get();
  const bool posted = sched->Post([sched, store, tenant, id, done] {
    absl::StatusOr<std::shared_ptr<Session>> s = store->Find(tenant, id);
    if (!s.ok()) return done(s.status());
    sched->CancelSessionRequest(s->get());
    {
      auto lock = store->Acquire();
      if (!(*s)->closed) sched->DropSessionLocked(lock, **s, /*evicted=*/false);
    }
    done(absl::OkStatus());
  });
  if (!posted) done(Unavailable());
}

void Engine::ExportSession(const std::string& tenant, const std::string& id,
                           std::function<void(absl::StatusOr<std::string>)> done) {
  Scheduler* sched = scheduler_.get();
  SessionStore* store = sessions_.get();
  const ModelInfo* info = &info_;
  const bool posted = sched->Post([sched, store, info, tenant, id, done] {
    absl::StatusOr<std::shared_ptr<Session>> reserved = store->Reserve(tenant, id);
    if (!reserved.ok()) return done(reserved.status());
    Session& s = **reserved;
    Backend* backend = sched->backend();
    SessionSnapshot snap;
    snap.model_identity = info->identity;
    snap.state_dtype = backend->state_dtype();
    snap.n_layer = info->config.n_layer;
    snap.d_inner = info->config.d_inner;
    snap.d_conv = info->config.d_conv;
    snap.d_state = info->config.d_state;
    absl::Status st;
    if (s.where == Session::Where::kDevice) {
      std::unique_ptr<HostState> host = backend->AllocateHostState();
      st = backend->SaveSlot(s.slot, host.get());
      snap.payload.assign(reinterpret_cast<const char*>(host->data()), host->size());
    } else if (s.where == Session::Where::kHost) {
      snap.payload.assign(reinterpret_cast<const char*>(s.host->data()), s.host->size());
    } else {
      snap.payload.assign(backend->state_bytes(), '\0');
    }
    {
      auto lock = store->Acquire();
      snap.tokens = s.tokens;
      snap.pending = s.pending;
    }
    store->Release(*reserved);
    if (!st.ok()) return done(st);
    done(EncodeSession(snap));
  });
  if (!posted) done(Unavailable());
}

void Engine::ImportSession(const std::string& tenant, std::string bytes, absl::Duration ttl,
                           SessionCallback done, const std::string& requested_id) {
  if (!requested_id.empty() && !SessionStore::IsWellFormedId(requested_id)) {
    return done(absl::InvalidArgumentError(
        "requested session id is malformed; allowed: 32 lowercase hex digits"));
  }
  absl::StatusOr<SessionSnapshot> decoded = DecodeSession(bytes);
  if (!decoded.ok()) return done(decoded.status());
  auto snap = std::make_shared<SessionSnapshot>(std::move(*decoded));
  absl::Status ok = CheckSessionCompatible(*snap, info_.config, info_.identity);
  if (!ok.ok()) return done(ok);
  ok = ValidateTokens(snap->pending, info_.config.vocab_size);
  if (!ok.ok()) return done(absl::InvalidArgumentError(absl::StrCat(
                    "session state holds an invalid pending token: ", std::string(ok.message()))));
  Scheduler* sched = scheduler_.get();
  SessionStore* store = sessions_.get();
  const bool posted = sched->Post([sched, store, snap, tenant, ttl, done, requested_id] {
    Backend* backend = sched->backend();
    absl::Status st = ConvertSessionPayload(snap.get(), backend->state_dtype());
    if (!st.ok()) return done(st);
    if (snap->payload.size() != backend->state_bytes()) {
      return done(absl::FailedPreconditionError("session state size does not match this server"));
    }
    absl::StatusOr<std::shared_ptr<Session>> created =
        store->Create(tenant, ttl, /*busy=*/true, requested_id);
    if (!created.ok()) return done(created.status());
    Session& s = **created;
    std::unique_ptr<HostState> host = backend->AllocateHostState();
    std::memcpy(host->data(), snap->payload.data(), snap->payload.size());
    if (std::optional<int32_t> slot = sched->AcquireSlot()) {
      st = backend->LoadSlot(*slot, *host);
      auto lock = store->Acquire();
      s.where = Session::Where::kDevice;
      s.slot = *slot;
    } else if (sched->ReserveHostBytes(static_cast<int64_t>(host->size()), &s)) {
      auto lock = store->Acquire();
      s.where = Session::Where::kHost;
      s.host = std::move(host);
    } else {
      st = absl::ResourceExhaustedError(
          "no state slot or host memory is free for the imported session; retry later");
    }
    auto lock = store->Acquire();
    if (!st.ok()) {
      sched->DropSessionLocked(lock, s, /*evicted=*/false);
      lock.unlock();
      return done(st);
    }
    s.tokens = snap->tokens;
    s.pending = snap->pending;
    s.busy = false;
    s.last_used = absl::Now();
    SessionInfo info = store->Info(s);
    lock.unlock();
    done(info);
  });
  if (!posted) done(Unavailable());
}

EngineStats Engine::Stats() const {
  EngineStats stats = scheduler_->Stats();
  sessions_->ForEachLocked([&](Session& s) {
    if (s.where == Session::Where::kHost) {
      ++stats.sessions_host;
    } else {
      ++stats.sessions_device;
    }
  });
  return stats;
}

}  // namespace mamba
