// An asynchronous HTTP/1.1 server (Boost.Beast on Asio) for the server's HTTP endpoints. A
// connection costs no thread: accepts, reads and writes are asynchronous on a small pool, every
// read and write has a deadline (an idle or slow client is disconnected when it passes, never
// waited on by a thread), and the number of open connections is bounded. So a handful of idle
// keep-alive connections or slow senders cannot delay a scrape or a probe.
//
// Requests are answered by one handler, called on a pool thread; it must be quick and must not
// block (it runs between other connections' reads and writes).
//
// Thread-safety: the accessors may be called from any thread; Stop (and the destructor) must not
// run concurrently with other calls on the same server.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace mamba::http {

struct HttpRequest {
  std::string method;  // "GET"
  std::string target;  // "/metrics?x=1"
  std::string path;    // the target without its query
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;

  // The value of header `name` (case-insensitive), "" when absent.
  std::string Header(std::string_view name) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::vector<std::pair<std::string, std::string>> headers;  // besides Content-Type/Length
  std::string body;
};

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

struct HttpServerOptions {
  std::string host = "0.0.0.0";  // an address or a name; "::" for every IPv6 interface
  int32_t port = 0;              // 0 picks a free port
  int32_t threads = 2;           // handlers and I/O completions; connections need none
  // Time a client has to send a whole request (keep-alive connections: the next one), and to
  // take a response. Past it the connection is closed.
  absl::Duration io_timeout = absl::Seconds(5);
  int64_t max_request_bytes = 64 << 10;  // header and body; larger: 413 and close
  int32_t max_connections = 1024;        // open at once; more are closed at accept
};

class HttpServer {
 public:
  // Binds host:port and starts serving. INVALID_ARGUMENT for a port outside [0, 65535], threads,
  // max_connections or max_request_bytes < 1, a non-positive io_timeout, an empty host or no
  // handler; UNAVAILABLE when the address cannot be bound (in use, or not an address
  // of this machine).
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(HttpServerOptions options,
                                                           HttpHandler handler);
  ~HttpServer();  // Stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // The bound port (the chosen one when the options asked for port 0).
  int32_t port() const { return port_; }
  // "host:port" as bound, with IPv6 hosts in brackets, e.g. "0.0.0.0:8080" or "[::1]:9100".
  std::string address() const;
  // Connections open now.
  int64_t open_connections() const;

  // Stops accepting, closes every connection and joins the threads; the port is free when it
  // returns. Idempotent.
  void Stop();

  class Impl;  // the .cc's; public only so its connection type can name it

 private:
  HttpServer(std::unique_ptr<Impl> impl, std::string host, int32_t port);

  std::unique_ptr<Impl> impl_;
  const std::string host_;
  const int32_t port_;
};

}  // namespace mamba::http
