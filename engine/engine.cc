#include "engine/engine.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/backend_factory.h"
#include "engine/model/model_loader.h"
#include "engine/sampling/sampling_params.h"
#include "engine/scheduler/scheduler.h"
#include "engine/sessions/session_codec.h"
#include "engine/sessions/session_store.h"
#include "engine/sessions/state_placement.h"

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

absl::Status ValidateTokens(const std::vector<int32_t>& tokens, int32_t vocab, const char* field) {
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || tokens[i] >= vocab) {
      return absl::InvalidArgumentError(absl::StrCat(field, "[", i, "] = ", tokens[i],
                                                     " is outside the vocabulary; allowed: [0, ",
                                                     vocab, ")"));
    }
  }
  return absl::OkStatus();
}

// Marked cache offsets one request may carry (a chat of this many messages marks each boundary).
constexpr size_t kMaxCacheCheckpoints = 256;

// The engine's boundary: after this, a request is valid by construction.
absl::Status ValidateRequest(const GenerationRequest& r, int32_t vocab) {
  if (r.prompt.empty()) {
    return absl::InvalidArgumentError("the input is empty; send at least one token");
  }
  MAMBA_RETURN_IF_ERROR(ValidateTokens(r.prompt, vocab, "prompt"));
  MAMBA_RETURN_IF_ERROR(ValidateTokens(r.session_start, vocab, "session_start"));
  if (r.cache_checkpoints.size() > kMaxCacheCheckpoints) {
    return absl::InvalidArgumentError(absl::StrCat("cache_checkpoints has ",
                                                   r.cache_checkpoints.size(), " offsets; at most ",
                                                   kMaxCacheCheckpoints, " are allowed"));
  }
  for (size_t i = 0; i < r.cache_checkpoints.size(); ++i) {
    const int32_t at = r.cache_checkpoints[i];
    if (at < 1 || at > static_cast<int64_t>(r.prompt.size())) {
      return absl::InvalidArgumentError(
          absl::StrCat("cache_checkpoints[", i, "] = ", at, " is outside the prompt; allowed: 1 to ",
                       r.prompt.size(), " (token counts into the prompt)"));
    }
  }
  MAMBA_RETURN_IF_ERROR(
      ValidateTokens(r.stopping.stop_token_ids, vocab, "stopping.stop_token_ids"));
  if (r.stopping.max_tokens < 1) {
    return absl::InvalidArgumentError(absl::StrCat("stopping.max_tokens = ", r.stopping.max_tokens,
                                                   " is out of range; allowed: >= 1"));
  }
  if (r.logprobs < -1) {
    return absl::InvalidArgumentError(absl::StrCat("logprobs = ", r.logprobs,
                                                   " is out of range; allowed: -1 (none) or [0, ",
                                                   sampling::kMaxTopLogprobs, "]"));
  }
  return sampling::ValidateSamplingParams(r.sampling, std::max(0, r.logprobs));
}

// Runs one short prefill and a few decode steps so that first requests do not pay for lazy
// initialization (kernel loading, graph capture, allocator growth).
absl::Status WarmUp(backend::Backend& backend) {
  const model::ModelConfig& c = backend.config();
  std::vector<int32_t> prompt;
  for (int i = 0; i < 8; ++i) prompt.push_back((i * 7919 + 13) % c.vocab_size);
  MAMBA_RETURN_IF_ERROR(backend.ResetSlot(0));
  backend::SeqWork w;
  w.slot = 0;
  w.tokens = prompt;
  w.sample = true;
  std::vector<backend::SeqResult> out(1);
  for (int i = 0; i < 4; ++i) {
    MAMBA_RETURN_IF_ERROR(backend.Step(absl::MakeConstSpan(&w, 1), absl::MakeSpan(out)));
    MAMBA_RETURN_IF_ERROR(out[0].status);
    prompt.assign(1, out[0].token);
    w.tokens = prompt;
    w.sample_position = static_cast<uint64_t>(i + 1);
  }
  return backend.ResetSlot(0);
}

absl::Status Unavailable() { return absl::UnavailableError("the server is shutting down"); }

}  // namespace

Engine::Engine() = default;

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
  backend::BackendOptions backend_options = options.backend;
  if (backend_options.kind == "auto") backend_options.kind = CudaAvailable() ? "cuda" : "cpu";
  // The backend must step every sequence the scheduler runs at once.
  backend_options.max_batch = options.scheduler.max_running;

  model::LoadOptions load;
  load.seed = options.seed;
  if (options.dtype != "auto") {
    MAMBA_ASSIGN_OR_RETURN(model::DType dtype, model::ParseDType(options.dtype));
    load.dtype = dtype;
  }
  MAMBA_ASSIGN_OR_RETURN(model::LoadedModel model, model::LoadModel(spec, load));
  if (backend_options.kind == "cuda" && !load.dtype &&
      model.weights.MatrixDType() == model::DType::kF32) {
    // The GPU keeps half-precision weights: an f32 checkpoint becomes bf16 unless told otherwise.
    MAMBA_ASSIGN_OR_RETURN(model.weights, model.weights.ConvertTo(model::DType::kBF16));
  }

  // Tokenizer: the flag, else tokenizer.json beside the checkpoint, else bytes.
  const std::string tokenizer_path =
      !options.tokenizer.empty() ? options.tokenizer : model.tokenizer_path;
  if (!tokenizer_path.empty()) {
    MAMBA_ASSIGN_OR_RETURN(engine->tokenizer_, tokenizer::LoadTokenizerJson(tokenizer_path));
  } else {
    engine->tokenizer_ = tokenizer::MakeByteTokenizer({"<|endoftext|>"}, model.config.vocab_size);
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
  for (int32_t id = 0; id < info.tokenizer_vocab_size; ++id) {
    absl::StatusOr<std::string> bytes =
        engine->tokenizer_->DecodeBytes(absl::MakeConstSpan(&id, 1));
    if (bytes.ok()) {
      info.max_token_bytes =
          std::max<int32_t>(info.max_token_bytes, static_cast<int32_t>(bytes->size()));
    }
  }
  info.text_prefix_tokens = TextPrefixTokens(*engine->tokenizer_);

  MAMBA_ASSIGN_OR_RETURN(engine->backend_, CreateBackend(backend_options, model));
  backend::Backend& backend = *engine->backend_;
  MAMBA_RETURN_IF_ERROR(WarmUp(backend));

  info.backend = backend.name();
  info.device = backend.device();
  info.weight_dtype = std::string(model::DTypeName(backend.weight_dtype()));
  info.state_dtype = std::string(model::DTypeName(backend.state_dtype()));
  info.weight_bytes = static_cast<int64_t>(backend.weight_bytes());
  info.state_bytes_per_session = static_cast<int64_t>(backend.state_bytes());
  info.num_slots = backend.num_slots();

  if (options.sessions.key_file.empty()) {
    engine->keys_ = std::make_unique<sessions::SessionKeys>(sessions::SessionKeys::Random());
  } else {
    MAMBA_ASSIGN_OR_RETURN(sessions::SessionKeys keys,
                           sessions::SessionKeys::FromFile(options.sessions.key_file));
    engine->keys_ = std::make_unique<sessions::SessionKeys>(std::move(keys));
  }
  engine->sessions_ = std::make_unique<sessions::SessionStore>(options.sessions);
  engine->placement_ = std::make_unique<sessions::StatePlacement>(&backend, engine->sessions_.get(),
                                                                  options.sessions, observer);
  engine->cache_ = std::make_unique<prefix_cache::PrefixCache>(&backend, engine->placement_.get(),
                                                               options.prefix_cache);
  scheduler::SchedulerOptions so = options.scheduler;
  so.max_running = std::max(1, std::min(so.max_running, backend.num_slots()));
  so.max_prefill_tokens_per_step = std::max(1, so.max_prefill_tokens_per_step);
  so.max_unread_tokens = std::max(1, so.max_unread_tokens);
  engine->scheduler_ = std::make_unique<scheduler::Scheduler>(
      &backend, engine->tokenizer_.get(), engine->sessions_.get(), engine->placement_.get(), so,
      observer, engine->cache_.get());
  engine->scheduler_->Start();
  return engine;
}

Engine::~Engine() { Shutdown(); }

void Engine::Shutdown() {
  if (scheduler_ != nullptr) scheduler_->Stop();
}

std::vector<int32_t> TextPrefixTokens(const tokenizer::Tokenizer& tokenizer) {
  // What the post-processor puts in front of a text: the specials before the text's own tokens.
  absl::StatusOr<std::vector<int32_t>> with = tokenizer.Encode("x", /*add_special_tokens=*/true);
  absl::StatusOr<std::vector<int32_t>> without = tokenizer.Encode("x");
  if (!with.ok() || !without.ok() || without->empty()) return {};
  auto at = std::search(with->begin(), with->end(), without->begin(), without->end());
  if (at == with->end()) return {};
  return std::vector<int32_t>(with->begin(), at);
}

absl::StatusOr<std::shared_ptr<GenerationStream>> Engine::Submit(GenerationRequest request,
                                                                 std::function<void()> on_ready) {
  MAMBA_RETURN_IF_ERROR(ValidateRequest(request, info_.config.vocab_size));
  if (request.request_id.empty()) {
    request.request_id = sessions::SessionStore::NewId().substr(0, 16);
  }
  auto r = std::make_shared<scheduler::ScheduledRequest>();
  if (!request.session_id.empty()) {
    MAMBA_ASSIGN_OR_RETURN(r->session, sessions_->Reserve(request.tenant, request.session_id));
    // Reserved: no other turn can change the session until this one ends.
    auto lock = sessions_->Acquire();
    if (r->session->tokens == 0 && r->session->pending.empty()) {
      request.prompt.insert(request.prompt.begin(), request.session_start.begin(),
                            request.session_start.end());
    }
  }
  r->stream = std::make_shared<GenerationStream>(request.request_id, std::move(on_ready),
                                                 scheduler_->cancel_signal());
  r->request = std::move(request);
  std::shared_ptr<GenerationStream> stream = r->stream;
  std::shared_ptr<sessions::Session> session = r->session;
  absl::Status st = scheduler_->Enqueue(std::move(r));
  if (!st.ok()) {
    if (session != nullptr) sessions_->Release(session);
    return st;
  }
  return stream;
}

void Engine::CreateSession(const std::string& tenant, std::vector<int32_t> prompt,
                           absl::Duration ttl, SessionCallback done,
                           const std::string& requested_id, absl::Time deadline) {
  absl::Status valid = ValidateTokens(prompt, info_.config.vocab_size, "prompt");
  if (!valid.ok()) return done(valid);
  absl::StatusOr<std::shared_ptr<sessions::Session>> created =
      sessions_->Create(tenant, ttl, /*busy=*/!prompt.empty(), requested_id);
  if (!created.ok()) return done(created.status());
  std::shared_ptr<sessions::Session> session = *created;
  if (prompt.empty()) {
    auto lock = sessions_->Acquire();
    return done(sessions_->Info(*session));
  }
  auto r = std::make_shared<scheduler::ScheduledRequest>();
  r->generate = false;
  r->session = session;
  r->request.tenant = tenant;
  r->request.session_id = session->id;
  r->request.prompt = std::move(prompt);
  r->request.deadline = deadline;
  sessions::SessionStore* store = sessions_.get();
  sessions::StatePlacement* placement = placement_.get();
  r->on_processed = [store, placement, session, done](absl::Status st) {
    // Runs on the scheduler thread.
    if (!st.ok()) {
      placement->Drop(*session, /*evicted=*/false);
      return done(st);
    }
    auto lock = store->Acquire();
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

void Engine::ForkSession(const std::string& tenant, const std::string& id, absl::Duration ttl,
                         SessionCallback done) {
  sessions::SessionStore* store = sessions_.get();
  sessions::StatePlacement* placement = placement_.get();
  const bool posted = scheduler_->Post([store, placement, tenant, id, ttl, done] {
    absl::StatusOr<std::shared_ptr<sessions::Session>> parent = store->Reserve(tenant, id);
    if (!parent.ok()) return done(parent.status());
    absl::StatusOr<std::shared_ptr<sessions::Session>> child =
        store->Create(tenant, ttl, /*busy=*/true, /*requested_id=*/"", /*id_prefix=*/id);
    if (!child.ok()) {
      store->Release(*parent);
      return done(child.status());
    }
    sessions::Session& p = **parent;
    sessions::Session& c = **child;
    absl::Status st = placement->PlaceCopy(p, c);
    auto lock = store->Acquire();
    if (!st.ok()) {
      placement->DropLocked(lock, c, /*evicted=*/false);
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
  scheduler::Scheduler* sched = scheduler_.get();
  sessions::SessionStore* store = sessions_.get();
  sessions::StatePlacement* placement = placement_.get();
  const bool posted = sched->Post([sched, store, placement, tenant, id, done] {
    absl::StatusOr<std::shared_ptr<sessions::Session>> s = store->Find(tenant, id);
    if (!s.ok()) return done(s.status());
    sched->CancelSessionRequest(s->get());
    placement->Drop(**s, /*evicted=*/false);
    done(absl::OkStatus());
  });
  if (!posted) done(Unavailable());
}

void Engine::ExportSession(const std::string& tenant, const std::string& id,
                           std::function<void(absl::StatusOr<sessions::SessionSnapshot>)> done) {
  sessions::SessionStore* store = sessions_.get();
  sessions::StatePlacement* placement = placement_.get();
  const ModelInfo* info = &info_;
  const model::DType state_dtype = backend_->state_dtype();
  const bool posted = scheduler_->Post([store, placement, info, state_dtype, tenant, id, done] {
    absl::StatusOr<std::shared_ptr<sessions::Session>> reserved = store->Reserve(tenant, id);
    if (!reserved.ok()) return done(reserved.status());
    sessions::Session& s = **reserved;
    // The only copy made on this thread: the state's bytes. Encoding is the caller's.
    absl::StatusOr<std::string> payload = placement->CopyOut(s);
    sessions::SessionSnapshot snap;
    {
      auto lock = store->Acquire();
      snap.tokens = s.tokens;
      snap.pending = s.pending;
    }
    store->Release(*reserved);
    if (!payload.ok()) return done(payload.status());
    snap.model_identity = info->identity;
    snap.state_dtype = state_dtype;
    snap.family = info->config.family;
    snap.layout = model::StateLayoutOf(info->config);
    snap.payload = *std::move(payload);
    done(std::move(snap));
  });
  if (!posted) done(Unavailable());
}

void Engine::ImportSession(const std::string& tenant, std::string bytes, absl::Duration ttl,
                           SessionCallback done, const std::string& requested_id) {
  if (!requested_id.empty() && !sessions::SessionStore::IsWellFormedId(requested_id)) {
    return done(absl::InvalidArgumentError(
        "requested session id is malformed; allowed: 32 lowercase hex digits"));
  }
  absl::StatusOr<sessions::SessionSnapshot> decoded = sessions::DecodeSession(bytes, *keys_);
  if (!decoded.ok()) return done(decoded.status());
  auto snap = std::make_shared<sessions::SessionSnapshot>(std::move(*decoded));
  absl::Status ok = sessions::CheckSessionCompatible(*snap, info_.config, info_.identity);
  if (!ok.ok()) return done(ok);
  ok = sessions::ValidateSessionSnapshot(*snap, info_.config.vocab_size,
                                         options_.sessions.max_pending_tokens);
  if (!ok.ok()) return done(ok);
  // Converting the payload to this server's state dtype is work for this thread, not the
  // scheduler's.
  ok = sessions::ConvertSessionPayload(snap.get(), backend_->state_dtype());
  if (!ok.ok()) return done(ok);
  if (snap->payload.size() != backend_->state_bytes()) {
    return done(absl::FailedPreconditionError("session state size does not match this server"));
  }
  sessions::SessionStore* store = sessions_.get();
  sessions::StatePlacement* placement = placement_.get();
  const bool posted = scheduler_->Post([store, placement, snap, tenant, ttl, done, requested_id] {
    absl::StatusOr<std::shared_ptr<sessions::Session>> created =
        store->Create(tenant, ttl, /*busy=*/true, requested_id);
    if (!created.ok()) return done(created.status());
    sessions::Session& s = **created;
    absl::Status st = placement->PlaceBytes(s, snap->payload);
    auto lock = store->Acquire();
    if (!st.ok()) {
      placement->DropLocked(lock, s, /*evicted=*/false);
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

std::string Engine::EncodeExport(const sessions::SessionSnapshot& snapshot) const {
  return sessions::EncodeSession(snapshot, *keys_);
}

EngineStats Engine::Stats() const {
  EngineStats stats = scheduler_->Stats();
  const sessions::PlacementStats p = placement_->Stats();
  const prefix_cache::PrefixCacheStats c = cache_->Stats();
  // Slots the cache holds are spare capacity (it gives them back on demand): "used" means held by
  // sessions and requests.
  stats.slots_total = p.slots_total;
  stats.slots_used = std::max<int64_t>(0, p.slots_used - c.device_entries);
  stats.state_bytes_device = stats.slots_used * static_cast<int64_t>(backend_->state_bytes());
  stats.state_bytes_host = p.host_bytes;
  stats.evictions_to_host = p.evictions_to_host;
  stats.evictions_dropped = p.evictions_dropped;
  stats.restores_from_host = p.restores_from_host;
  stats.prefix_cache_lookups = c.lookups;
  stats.prefix_cache_hits = c.hits;
  stats.prefix_cache_hit_tokens = c.hit_tokens;
  stats.prefix_cache_insertions = c.insertions;
  stats.prefix_cache_evictions_to_host = c.evictions_to_host;
  stats.prefix_cache_evictions_dropped = c.evictions_dropped;
  stats.prefix_cache_device_entries = c.device_entries;
  stats.prefix_cache_device_bytes = c.device_bytes;
  stats.prefix_cache_host_entries = c.host_entries;
  stats.prefix_cache_host_bytes = c.host_bytes;
  sessions_->ForEachLocked([&](sessions::Session& s) {
    if (s.where == sessions::Session::Where::kHost) {
      ++stats.sessions_host;
    } else {
      ++stats.sessions_device;
    }
  });
  return stats;
}

}  // namespace mamba
