// The HTTP side of observability: GET /metrics (the registry in Prometheus text format 0.0.4,
// gzip-compressed when the scraper accepts it), GET /healthz (the process is alive) and GET /readyz
// (the `ready` callback says the model is loaded and the server is not draining). Any other path
// is 404. Runs on its own small thread pool, apart from the gRPC threads.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/metrics/registry.h"

namespace mamba::metrics {

struct MetricsHttpOptions {
  std::string host = "0.0.0.0";  // interface to bind; "::" for all IPv6 interfaces
  int32_t port = 8080;           // 0 picks a free port; see MetricsHttpServer::port()
  int32_t threads = 2;           // request threads (scrapes and probes are rare and quick)
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
  ~MetricsHttpServer();  // Stop()
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  // The bound port (the chosen one when the options asked for port 0).
  int32_t port() const { return port_; }
  // "host:port" as bound, with IPv6 hosts in brackets, e.g. "0.0.0.0:8080" or "[::1]:9100".
  std::string address() const;

  // Stops accepting, finishes the requests in flight and joins the threads. Idempotent.
  void Stop();

 private:
  class Impl;
  explicit MetricsHttpServer(std::unique_ptr<Impl> impl, std::string host, int32_t port);

  std::unique_ptr<Impl> impl_;
  const std::string host_;
  const int32_t port_;
};

}  // namespace mamba::metrics
