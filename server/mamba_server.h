// The whole service in one object: gRPC server (Generation, Sessions, Models, health,
// reflection), the engine, and the lifecycle that ties them together. main() and the
// in-process tests both run the server through this class.
//
// Lifecycle: Start() binds the port and answers health checks at once ("liveness" SERVING,
// "readiness" and "" NOT_SERVING; model RPCs get UNAVAILABLE); LoadModel() creates the engine,
// warms it up and turns readiness SERVING; Shutdown() drains and stops.
//
// Thread-safety: Shutdown may be called from any thread; the other methods from the owning one.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/engine.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/server.h"
#include "server/http/http_server.h"
#include "server/metrics/metrics_http_server.h"
#include "server/metrics/registry.h"
#include "server/metrics/serving_metrics.h"
#include "server/request_validation.h"
#include "server/serving_state.h"
#include "server/tls_credentials.h"
#include "server/token_auth.h"

namespace mamba::server {

namespace openai {
class OpenAiService;
}  // namespace openai

class GenerationService;
class SessionService;
class ModelService;

// Health service names (grpc.health.v1). "" follows readiness.
inline constexpr char kLivenessService[] = "liveness";
inline constexpr char kReadinessService[] = "readiness";

struct ServerOptions {
  std::string host = "0.0.0.0";
  int32_t port = 50051;  // 0 picks a free port
  // The /metrics, /healthz and /readyz HTTP endpoint. "" binds the gRPC host; port 0 picks a
  // free port; a negative port serves no endpoint (metrics are still recorded).
  std::string metrics_host;
  int32_t metrics_port = 8080;
  // The OpenAI-compatible HTTP API (server/openai/). "" binds the gRPC host; port 0 picks a free
  // port; a negative port serves no API. TLS and bearer tokens as on the gRPC port.
  std::string http_host;
  int32_t http_port = 8000;
  // Threads of the HTTP server (socket completions and handlers; connections hold none).
  int32_t http_threads = 2;
  // The model id the HTTP API lists and requests name; "" = the model's name.
  std::string served_model_name;
  // A Jinja chat template file for the chat endpoint, replacing the model's own; "" = the
  // chat_template of the model folder's tokenizer_config.json, if any.
  std::string chat_template_file;
  RequestLimits limits;
  // How long running streams may go on after a shutdown signal before they are cancelled.
  absl::Duration drain_timeout = absl::Seconds(30);
  // Largest request accepted. ImportSession carries a whole state (2.8b in f32: about 25 MB),
  // so the default leaves room for it.
  int32_t max_receive_message_bytes = 64 << 20;
  // Threads that send engine output to clients (0: the default, one).
  int32_t stream_threads = 0;
  // Threads that tokenize long text prompts (longer than kInlinePromptBytes) off the gRPC threads.
  int32_t prompt_threads = 2;
  // Default sampling seeds derived from engine.seed instead of random ones.
  bool deterministic_seeds = false;
  // Server-side keepalive: ping idle connections so dead peers free their streams.
  absl::Duration keepalive_time = absl::Seconds(60);
  absl::Duration keepalive_timeout = absl::Seconds(20);
  // TLS on the gRPC port (off when the certificate and key are "").
  TlsFiles tls;
  // Bearer-token authentication from this file (see server/token_auth.h); "" = off, every call
  // then belongs to the tenant "".
  std::string auth_tokens_file;

  EngineOptions engine;
};

// "HOST:PORT", with brackets around an IPv6 host.
std::string JoinHostPort(const std::string& host, int port);

class MambaServer {
 public:
  // Binds host:port and starts serving health checks. Fails when the address cannot be bound, or
  // when a TLS or auth tokens file cannot be read or is invalid (the error names the file).
  static absl::StatusOr<std::unique_ptr<MambaServer>> Start(ServerOptions options);
  ~MambaServer();  // Shutdown()
  MambaServer(const MambaServer&) = delete;
  MambaServer& operator=(const MambaServer&) = delete;

  // Loads and warms up the model (blocking; the engine warms its backend), then marks
  // readiness SERVING. Call once.
  absl::Status LoadModel();

  // The bound port (the chosen one when options.port was 0) and "HOST:PORT".
  int port() const { return port_; }
  std::string address() const { return JoinHostPort(options_.host, port_); }
  // The metrics endpoint's bound port and "HOST:PORT" (-1 and "" without one).
  int metrics_port() const { return metrics_http_ ? metrics_http_->port() : -1; }
  std::string metrics_address() const { return metrics_http_ ? metrics_http_->address() : ""; }
  // The HTTP API's bound port and "HOST:PORT" (-1 and "" without one).
  int http_port() const { return openai_http_ ? openai_http_->port() : -1; }
  std::string http_address() const { return openai_http_ ? openai_http_->address() : ""; }
  metrics::Registry& registry() { return registry_; }
  const ServerOptions& options() const { return options_; }
  // Null until LoadModel succeeds and after Shutdown.
  Engine* engine() const { return state_.engine(); }
  ServingState& state() { return state_; }
  grpc::Server* grpc_server() { return server_.get(); }

  // Readiness NOT_SERVING and new calls UNAVAILABLE; running streams may finish for
  // drain_timeout, then are cancelled (their last message says FINISH_REASON_CANCELLED); then
  // the engine and the gRPC server stop. Blocks until done. Idempotent.
  void Shutdown();
  // True once Shutdown has begun.
  bool draining() const;

  // Re-reads the auth tokens file (SIGHUP). On error the tokens in use stay as they were.
  // FAILED_PRECONDITION when authentication is off.
  absl::Status ReloadAuthTokens();
  bool tls_enabled() const { return options_.tls.enabled(); }

 private:
  explicit MambaServer(ServerOptions options);
  void ReportCall(const metrics::RequestRecord& record) const;

  ServerOptions options_;
  metrics::Registry registry_;
  std::unique_ptr<metrics::ServingMetrics> metrics_;  // the engine's observer: outlives it
  std::unique_ptr<metrics::MetricsHttpServer> metrics_http_;
  std::unique_ptr<openai::OpenAiService> openai_;
  std::unique_ptr<http::HttpServer> openai_http_;
  std::shared_ptr<TokenAuthenticator> authenticator_;  // null when auth is off
  ServingState state_;
  std::unique_ptr<GenerationService> generation_service_;
  std::unique_ptr<SessionService> session_service_;
  std::unique_ptr<ModelService> model_service_;
  std::unique_ptr<grpc::Server> server_;  // after the services: destroyed before them
  std::unique_ptr<Engine> engine_;        // destroyed first (Shutdown resets it anyway)
  int port_ = 0;
  std::once_flag shutdown_once_;
};

}  // namespace mamba::server
