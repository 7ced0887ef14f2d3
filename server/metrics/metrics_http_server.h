// The HTTP side of observability: GET /metrics (the registry in Prometheus text format 0.0.4,
// gzip-compressed when the scraper accepts it), GET /healthz (the process is alive) and GET /readyz
// (the `ready` callback says the model is loaded and the server is not draining). Any other path
// is 404 and any other method 405. Served by http::HttpServer (asynchronous, on its own small pool
// apart from the gRPC threads), so idle keep-alive connections and slow clients hold no thread
// and cannot delay a scrape or a probe.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/http/http_server.h"
#include "server/metrics/registry.h"

namespace mamba::metrics {

struct MetricsHttpOptions {
  std::string host = "0.0.0.0";  // interface to bind; "::" for all IPv6 interfaces
  int32_t port = 8080;           // 0 picks a free port; see MetricsHttpServer::port()
  int32_t threads = 2;           // handler and I/O threads; connections take none
  // A client has this long to send a request (keep-alive: the next one) and to take the
  // response; then it is disconnected.
  absl::Duration io_timeout = absl::Seconds(5);
  int32_t max_connections = 1024;  // open at once; more are closed at accept
  // /readyz answers 200 while this returns true and 503 otherwise; unset means always ready.
  // Called on a request thread; must be thread-safe and quick.
  std::function<bool()> ready;
};

class MetricsHttpServer {
 public:
  // Binds host:port and starts serving `registry` (which must outlive the server). Fails with
  // INVALID_ARGUMENT for a port outside [0, 65535] or threads < 1, and UNAVAILABLE when the
  // address cannot be bound (in use, or not an address of this machine).
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(const Registry* registry,
                                                                  MetricsHttpOptions options);
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  // The bound port (the chosen one when the options asked for port 0).
  int32_t port() const { return http_->port(); }
  // "host:port" as bound, with IPv6 hosts in brackets, e.g. "0.0.0.0:8080" or "[::1]:9100".
  std::string address() const { return http_->address(); }
  // Connections open now (scrapers, probes, idle keep-alives).
  int64_t open_connections() const { return http_->open_connections(); }

  // Stops accepting, closes every connection and joins the threads. Idempotent.
  void Stop() { http_->Stop(); }

  // One request's answer; public for tests that need no socket.
  static http::HttpResponse Handle(const Registry* registry, const std::function<bool()>& ready,
                                   const http::HttpRequest& request);

 private:
  explicit MetricsHttpServer(std::unique_ptr<http::HttpServer> http) : http_(std::move(http)) {}

  std::unique_ptr<http::HttpServer> http_;
};

}  // namespace mamba::metrics
