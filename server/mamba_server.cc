#include "server/mamba_server.h"

#include <algorithm>
#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/tokenizer/chat_template.h"
#include "absl/time/clock.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"
#include "server/generation_service.h"
#include "server/metrics/process_metrics.h"
#include "server/metrics/request_log.h"
#include "server/model_service.h"
#include "server/openai/openai_service.h"
#include "server/session_service.h"

namespace mamba::server {
namespace {

// After the drain, cancelled streams get this long to deliver their last message before they
// are ended without it.
constexpr absl::Duration kCancelGrace = absl::Seconds(5);
// Unary calls waiting on the engine get this long at shutdown.
constexpr absl::Duration kEngineCallGrace = absl::Seconds(5);

// One thread: its work per ready stream is a read, a protobuf encode and StartWrite (gRPC's own
// threads do the socket work), and each stream coalesces what arrives while its write is in
// flight. More threads only added contention with the scheduler thread: on the H100 host, 256
// streams of synthetic:130m on 8 server cores delivered 157-159k tok/s with 4 threads (the old
// default on 16 cores), 162-163k with 2 and 168-171k with 1 (bench/RESULTS.md, issue 9's sixth
// pass).
int DefaultStreamThreads() { return 1; }

int ToMillis(absl::Duration d) {
  return static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(d), INT32_MAX));
}

metrics::Logger& Logger() { return metrics::DefaultLogger(); }

// The chat template: the operator's file (with the model folder's special tokens), else the
// model folder's tokenizer_config.json; null when there is none. A broken template in the
// operator's file stops the load; one in the model folder only disables the chat endpoint.
absl::StatusOr<openai::ChatRenderer> LoadChatRenderer(const ModelInfo& info,
                                                      const std::string& template_file) {
  std::string dir;
  if (!absl::StartsWith(info.source, "synthetic:") && !info.source.empty()) {
    std::error_code ec;
    const std::filesystem::path source(info.source);
    dir = std::filesystem::is_directory(source, ec) ? source.string()
                                                    : source.parent_path().string();
  }
  if (template_file.empty() && dir.empty()) return openai::ChatRenderer();
  absl::StatusOr<tokenizer::ChatTemplate> loaded = tokenizer::ChatTemplate::Load(template_file, dir);
  if (!loaded.ok()) {
    if (!template_file.empty()) {
      return absl::Status(loaded.status().code(),
                          absl::StrCat("--chat_template: ", loaded.status().message()));
    }
    if (loaded.status().code() != absl::StatusCode::kFailedPrecondition &&
        loaded.status().code() != absl::StatusCode::kNotFound) {
      Logger().Warning("the model's chat template does not load; chat requests are refused",
                       {{"error", std::string(loaded.status().message())}});
    }
    return openai::ChatRenderer();
  }
  Logger().Info("chat template", {{"origin", loaded->origin()}});
  auto shared = std::make_shared<const tokenizer::ChatTemplate>(*std::move(loaded));
  return openai::ChatRenderer(
      [shared](const nlohmann::ordered_json& messages, bool add_generation_prompt) {
        return shared->Apply(messages, add_generation_prompt);
      });
}

}  // namespace

std::string JoinHostPort(const std::string& host, int port) {
  if (host.find(':') != std::string::npos && host.front() != '[') {
    return absl::StrCat("[", host, "]:", port);
  }
  return absl::StrCat(host, ":", port);
}

MambaServer::MambaServer(ServerOptions options)
    : options_(std::move(options)),
      state_(options_.limits,
             options_.stream_threads > 0 ? options_.stream_threads : DefaultStreamThreads(),
             options_.prompt_threads, options_.deterministic_seeds, options_.engine.seed) {}

void MambaServer::ReportCall(const metrics::RequestRecord& record) const {
  metrics_->RecordRpc(record.protocol, record.method, record.code);
  metrics::LogRequest(Logger(), record);
}

absl::StatusOr<std::unique_ptr<MambaServer>> MambaServer::Start(ServerOptions options) {
  if (options.port < 0 || options.port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        "port ", options.port, " is out of range; allowed: 0 (any free port) to 65535"));
  }
  if (options.http_port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("HTTP port ", options.http_port,
                     " is out of range; allowed: 0 (any free port) to 65535, or -1 for none"));
  }
  if (options.metrics_port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics port ", options.metrics_port,
                     " is out of range; allowed: 0 (any free port) to 65535, or -1 for none"));
  }
  if (options.limits.max_prompt_tokens < 1 || options.limits.max_new_tokens < 1) {
    return absl::InvalidArgumentError("max_prompt_tokens and max_new_tokens must be at least 1");
  }
  if (options.max_receive_message_bytes < 1024) {
    return absl::InvalidArgumentError(absl::StrCat("max_receive_message_bytes ",
                                                   options.max_receive_message_bytes,
                                                   " is too small; allowed: >= 1024"));
  }
  absl::Status tls_combination = CheckTlsFileCombination(options.tls);
  if (!tls_combination.ok()) return tls_combination;
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials =
      ServerCredentialsFor(options.tls);
  if (!credentials.ok()) return credentials.status();
  std::shared_ptr<TokenAuthenticator> authenticator;
  if (!options.auth_tokens_file.empty()) {
    absl::StatusOr<std::unique_ptr<TokenAuthenticator>> loaded =
        TokenAuthenticator::FromFile(options.auth_tokens_file);
    if (!loaded.ok()) return loaded.status();
    authenticator = *std::move(loaded);
  }
  std::unique_ptr<MambaServer> server(new MambaServer(std::move(options)));
  MambaServer* s = server.get();
  const ServerOptions& opts = s->options_;

  absl::Status registered = metrics::RegisterProcessMetrics(&s->registry_);
  if (!registered.ok()) return registered;
  absl::StatusOr<std::unique_ptr<metrics::ServingMetrics>> serving_metrics =
      metrics::ServingMetrics::Create(&s->registry_, &Logger());
  if (!serving_metrics.ok()) return serving_metrics.status();
  s->metrics_ = *std::move(serving_metrics);
  s->state_.set_call_observer([s](const metrics::RequestRecord& r) { s->ReportCall(r); });
  s->authenticator_ = authenticator;
  s->state_.set_authenticator(std::move(authenticator));

  if (opts.metrics_port >= 0) {
    metrics::MetricsHttpOptions http;
    http.host = opts.metrics_host.empty() ? opts.host : opts.metrics_host;
    http.port = opts.metrics_port;
    ServingState* state = &s->state_;
    http.ready = [state] { return state->phase() == ServingPhase::kServing; };
    absl::StatusOr<std::unique_ptr<metrics::MetricsHttpServer>> endpoint =
        metrics::MetricsHttpServer::Start(&s->registry_, std::move(http));
    if (!endpoint.ok()) return endpoint.status();
    s->metrics_http_ = *std::move(endpoint);
  }

  if (opts.http_port >= 0) {
    s->openai_ = std::make_unique<openai::OpenAiService>(&s->state_, openai::OpenAiOptions{});
    http::HttpServerOptions http;
    http.host = opts.http_host.empty() ? opts.host : opts.http_host;
    http.port = opts.http_port;
    // Connections hold no thread; these run handlers (quick) and socket completions: one
    // write per streamed event, the most per-token work of an SSE stream after the events'
    // rendering (on the stream threads).
    http.threads = opts.http_threads;
    http.io_timeout = absl::Seconds(30);
    http.max_connections = 16384;
    ModelLimits unknown_model;  // the bound before a model is known: its longest tokens
    unknown_model.max_token_bytes = 64;
    http.max_request_bytes = openai::OpenAiService::MaxRequestBytes(opts.limits, unknown_model);
    http.too_large = openai::OpenAiService::TooLarge;
    if (opts.tls.enabled()) {
      absl::StatusOr<http::HttpTlsOptions> tls = HttpTlsFromFiles(opts.tls);
      if (!tls.ok()) return tls.status();
      http.tls = *std::move(tls);
    }
    openai::OpenAiService* api = s->openai_.get();
    absl::StatusOr<std::unique_ptr<http::HttpServer>> bound = http::HttpServer::Start(
        std::move(http),
        http::HttpExchangeHandler(
            [api](std::shared_ptr<http::HttpExchange> exchange) { api->Handle(std::move(exchange)); }));
    if (!bound.ok()) return bound.status();
    s->openai_http_ = *std::move(bound);
  }

  s->generation_service_ = std::make_unique<GenerationService>(&s->state_);
  s->session_service_ = std::make_unique<SessionService>(&s->state_);
  s->model_service_ = std::make_unique<ModelService>(&s->state_);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(JoinHostPort(opts.host, opts.port), *std::move(credentials), &s->port_);
  // Without this a second server could bind the same port (SO_REUSEPORT) and silently take a
  // share of the connections.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(opts.max_receive_message_bytes);
  builder.SetMaxSendMessageSize(-1);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, ToMillis(opts.keepalive_time));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, ToMillis(opts.keepalive_timeout));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // Clients may ping every 10 s (the usual client keepalive minimum) without being cut off.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  builder.RegisterService(s->generation_service_.get());
  builder.RegisterService(s->session_service_.get());
  builder.RegisterService(s->model_service_.get());
  s->server_ = builder.BuildAndStart();
  if (s->server_ == nullptr || s->port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("could not listen on ", JoinHostPort(opts.host, opts.port),
                     " (address in use, or not an address of this machine)"));
  }
  grpc::HealthCheckServiceInterface* health = s->server_->GetHealthCheckService();
  health->SetServingStatus(kLivenessService, true);
  health->SetServingStatus(kReadinessService, false);
  health->SetServingStatus("", false);
  Logger().Info(
      "transport security",
      {{"tls", opts.tls.enabled() ? "on" : "off"},
       {"client_certificates", opts.tls.client_ca_file.empty() ? "not requested" : "required"},
       {"auth", s->authenticator_ != nullptr ? "bearer tokens" : "off"},
       {"auth_tokens", s->authenticator_ != nullptr ? s->authenticator_->size() : 0}});
  return server;
}

MambaServer::~MambaServer() { Shutdown(); }

absl::Status MambaServer::LoadModel() {
  if (engine_ != nullptr) return absl::FailedPreconditionError("the model is already loaded");
  if (draining()) return absl::UnavailableError("server is shutting down");
  const absl::Time start = absl::Now();
  // An imported session's unfed tokens are a prompt the next turn feeds: the same limit.
  options_.engine.sessions.max_pending_tokens = options_.limits.max_prompt_tokens;
  absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Create(options_.engine, metrics_.get());
  if (!engine.ok()) return engine.status();
  engine_ = *std::move(engine);
  const ModelInfo& info = engine_->model_info();
  Logger().Info("model loaded", {{"model", info.name},
                                 {"family", model::FamilyName(info.config.family)},
                                 {"config", info.config.Summary()},
                                 {"backend", info.backend},
                                 {"device", info.device},
                                 {"weight_dtype", info.weight_dtype},
                                 {"state_dtype", info.state_dtype},
                                 {"slots", info.num_slots},
                                 {"seconds", absl::ToDoubleSeconds(absl::Now() - start)}});
  absl::Status info_set = metrics_->SetModelInfo(info);
  if (!info_set.ok()) {
    Logger().Warning("model metrics not set", {{"error", std::string(info_set.message())}});
  }
  for (const std::string& warning : info.warnings) {
    Logger().Warning("model loaded with a warning", {{"warning", warning}});
  }
  if (openai_ != nullptr) {
    absl::StatusOr<openai::ChatRenderer> renderer =
        LoadChatRenderer(info, options_.chat_template_file);
    if (!renderer.ok()) return renderer.status();
    if (!*renderer) {
      Logger().Info("no chat template: the chat endpoint answers 400 until one is given",
                    {{"model", info.name}});
    }
    openai_->SetModel(options_.served_model_name.empty() ? info.name : options_.served_model_name,
                      *std::move(renderer), absl::ToUnixSeconds(absl::Now()));
  }
  Engine* e = engine_.get();
  metrics_->SetStatsSource([e] { return e->Stats(); });
  if (info.backend == "cuda") {
    metrics_->SetGpuMemorySource([e]() -> absl::StatusOr<metrics::GpuMemoryInfo> {
      metrics::GpuMemoryInfo m;
      e->DeviceMemory(&m.used_bytes, &m.total_bytes);
      return m;
    });
  }
  state_.SetEngine(e);
  if (draining()) return absl::UnavailableError("server is shutting down");
  grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
  health->SetServingStatus(kReadinessService, true);
  health->SetServingStatus("", true);
  return absl::OkStatus();
}

absl::Status MambaServer::ReloadAuthTokens() {
  if (authenticator_ == nullptr) {
    return absl::FailedPreconditionError(
        "authentication is off (no --auth_tokens_file); nothing to reload");
  }
  return authenticator_->Reload();
}

bool MambaServer::draining() const {
  const ServingPhase phase = state_.phase();
  return phase == ServingPhase::kDraining || phase == ServingPhase::kStopped;
}

void MambaServer::Shutdown() {
  std::call_once(shutdown_once_, [this] {
    state_.BeginDrain();
    grpc::HealthCheckServiceInterface* health =
        server_ != nullptr ? server_->GetHealthCheckService() : nullptr;
    if (health != nullptr) {
      health->SetServingStatus(kReadinessService, false);
      health->SetServingStatus("", false);
    }
    const int64_t running = state_.active_generations();
    if (running > 0) {
      Logger().Info("draining", {{"streams", running},
                                 {"drain_seconds", absl::ToDoubleSeconds(options_.drain_timeout)}});
    }
    if (!state_.WaitForNoGenerations(absl::Now() + options_.drain_timeout)) {
      auto calls = state_.ActiveGenerations();
      Logger().Info("drain time is up: cancelling streams", {{"streams", calls.size()}});
      for (const auto& call : calls) call->CancelGeneration();
      calls.clear();
      if (!state_.WaitForNoGenerations(absl::Now() + kCancelGrace)) {
        calls = state_.ActiveGenerations();
        Logger().Warning("streams did not end after cancellation; ending them now",
                         {{"streams", calls.size()}});
        for (const auto& call : calls) {
          call->ForceFinish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "server is shutting down"));
        }
        calls.clear();
        state_.WaitForNoGenerations(absl::Now() + kCancelGrace);
      }
    }
    // Prompts still being tokenized find the server draining and are refused; none reaches the
    // engine after this.
    state_.prompt_dispatcher().Stop();
    if (engine_ != nullptr) {
      state_.WaitForNoEngineCalls(absl::Now() + kEngineCallGrace);
      // Ends whatever is still pending in the engine (session callbacks included).
      engine_->Shutdown();
      state_.WaitForNoEngineCalls(absl::Now() + kEngineCallGrace);
    }
    if (health != nullptr) health->Shutdown();
    if (server_ != nullptr) {
      server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
    }
    if (openai_http_ != nullptr) openai_http_->Stop();
    if (metrics_http_ != nullptr) metrics_http_->Stop();
    if (metrics_ != nullptr) metrics_->SetStatsSource(nullptr);
    state_.Stop();
    engine_.reset();
  });
}

}  // namespace mamba::server
