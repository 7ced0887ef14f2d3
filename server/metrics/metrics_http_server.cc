#include "server/metrics/metrics_http_server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"
#include "server/metrics/text_format.h"

namespace mamba::metrics {

class MetricsHttpServer::Impl {
 public:
  httplib::Server server;
  std::thread thread;
  std::atomic<bool> loop_exited{false};
  std::atomic<bool> stopped{false};
};

namespace {

void ServeText(httplib::Response& res, int status, const char* body) {
  res.status = status;
  res.set_content(body, "text/plain; charset=utf-8");
}

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const Registry* registry, MetricsHttpOptions options) {
  if (registry == nullptr) return absl::InvalidArgumentError("metrics server needs a registry");
  if (options.port < 0 || options.port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics port ", options.port, " is outside [0, 65535] (0 picks one)"));
  }
  if (options.threads < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics server threads must be at least 1, got ", options.threads));
  }
  if (options.host.empty()) {
    return absl::InvalidArgumentError("metrics host is empty (use 0.0.0.0 for every interface)");
  }

  auto impl = std::make_unique<Impl>();
  httplib::Server& server = impl->server;
  const int32_t threads = options.threads;
  server.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  // Probes and scrapes come from a few well-behaved clients; do not let a stuck one hold a thread.
  server.set_read_timeout(5);
  server.set_write_timeout(5);
  server.set_keep_alive_timeout(5);
  // httplib's default also sets SO_REUSEPORT, which would let a second server bind the same port
  // and silently take half the scrapes. SO_REUSEADDR alone allows a quick restart.
  server.set_socket_options([](socket_t sock) {
    const int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });

  server.Get("/metrics", [registry](const httplib::Request&, httplib::Response& res) {
    res.status = 200;
    res.set_content(registry->Expose(), kTextFormatContentType);
  });
  server.Get("/healthz",
             [](const httplib::Request&, httplib::Response& res) { ServeText(res, 200, "ok\n"); });
  server.Get("/readyz",
             [ready = std::move(options.ready)](const httplib::Request&, httplib::Response& res) {
               if (!ready || ready()) {
                 ServeText(res, 200, "ready\n");
               } else {
                 ServeText(res, 503, "not ready\n");
               }
             });
  server.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (res.status == 404) {
      ServeText(res, 404, "not found; this server serves /metrics, /healthz and /readyz\n");
    }
  });

  int port = options.port;
  if (port == 0) {
    port = server.bind_to_any_port(options.host);
  } else if (!server.bind_to_port(options.host, port)) {
    port = -1;
  }
  if (port < 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot bind the metrics endpoint to ", options.host, ":", options.port,
                     " (the port is in use, or the host is not an address of this machine)"));
  }

  // stop() only takes effect once the accept loop runs, so wait for it: then Stop() can never be
  // lost. Connections made meanwhile wait in the listen backlog.
  impl->thread = std::thread([&server, &exited = impl->loop_exited] {
    server.listen_after_bind();
    exited.store(true);
  });
  while (!server.is_running()) {
    if (impl->loop_exited.load()) {
      impl->thread.join();
      return absl::InternalError(absl::StrCat("the metrics endpoint on ", options.host, ":", port,
                                              " stopped as soon as it started"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return std::unique_ptr<MetricsHttpServer>(
      new MetricsHttpServer(std::move(impl), options.host, port));
}

MetricsHttpServer::MetricsHttpServer(std::unique_ptr<Impl> impl, std::string host, int32_t port)
    : impl_(std::move(impl)), host_(std::move(host)), port_(port) {}

MetricsHttpServer::~MetricsHttpServer() { Stop(); }

std::string MetricsHttpServer::address() const {
  if (host_.find(':') != std::string::npos) return absl::StrCat("[", host_, "]:", port_);
  return absl::StrCat(host_, ":", port_);
}

void MetricsHttpServer::Stop() {
  if (impl_->stopped.exchange(true)) return;
  impl_->server.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

}  // namespace mamba::metrics
