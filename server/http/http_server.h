// An asynchronous HTTP/1.1 server (Boost.Beast on Asio) for the server's HTTP endpoints: metrics
// and health on one port, the OpenAI-compatible API on another. A connection costs no thread:
// accepts, handshakes, reads and writes are asynchronous on a small pool, every read and write of
// a request or response has a deadline (an idle or slow client is disconnected when it passes,
// never waited on by a thread), and the number of open connections is bounded. So a handful of
// idle keep-alive connections or slow senders cannot delay a scrape, a probe or a stream.
//
// A request is answered through its HttpExchange, at once or later and from any thread: a whole
// response, or a stream (chunked transfer encoding; server-sent events). While a response is
// pending the connection watches its socket, so a client that goes away is noticed at once and
// the exchange's abort callback runs (a generation can then stop at its next step).
//
// Optional TLS (OpenSSL through Asio) with the same PEM files as the gRPC port.
//
// Thread-safety: the accessors may be called from any thread; Stop (and the destructor) must not
// run concurrently with other calls on the same server. Exchanges may be used from any thread,
// also after Stop (they do nothing then).
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

using HeaderList = std::vector<std::pair<std::string, std::string>>;

struct HttpRequest {
  std::string method;  // "GET"
  std::string target;  // "/metrics?x=1"
  std::string path;    // the target without its query
  HeaderList headers;
  std::string body;
  std::string peer;  // the client's address, "127.0.0.1:53412"

  // The value of header `name` (case-insensitive), "" when absent.
  std::string Header(std::string_view name) const;
  // Whether header `name` is present (case-insensitive).
  bool HasHeader(std::string_view name) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  HeaderList headers;  // besides Content-Type/Length
  std::string body;
};

// One request and the means to answer it. Answer exactly once: Respond, or BeginStream followed
// by any number of Send and one EndStream. Every method may be called from any thread and returns
// at once (the writes happen on the connection's I/O thread, in call order).
class HttpExchange {
 public:
  virtual ~HttpExchange() = default;

  virtual const HttpRequest& request() const = 0;

  // Sends a whole response. Ignored when the exchange was answered or aborted.
  virtual void Respond(HttpResponse response) = 0;
  // Sends the status line and headers of a streamed response (chunked for HTTP/1.1 clients; for
  // HTTP/1.0 the body runs to the end of the connection).
  virtual void BeginStream(int status, std::string content_type, HeaderList headers = {}) = 0;
  // Queues `data` as the next piece of the stream. False when the client is gone (or has fallen
  // so far behind that the connection was closed): the data is dropped and the producer should
  // stop.
  virtual bool Send(std::string data) = 0;
  // Ends the stream; the connection then serves the client's next request (keep-alive).
  virtual void EndStream() = 0;

  // `callback` runs once, on an I/O thread, when the client disconnects (or the connection is
  // closed for being too slow, or the server stops) before the answer is complete; at once, on
  // the calling thread, when that already happened. Must be quick and must not call back into
  // this exchange synchronously with a lock held that the producer also takes.
  virtual void OnAbort(std::function<void()> callback) = 0;
  virtual bool aborted() const = 0;
};

// Takes each request. Runs on an I/O thread: it must be quick and must not block (answer later,
// from another thread, for anything slow).
using HttpExchangeHandler = std::function<void(std::shared_ptr<HttpExchange>)>;
// A handler that answers at once.
using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

// TLS on an HTTP port, as PEM text (the caller reads the files and names them in errors).
struct HttpTlsOptions {
  std::string cert_chain_pem;  // server certificate chain, leaf first; "" = plain HTTP
  std::string private_key_pem;
  std::string client_ca_pem;  // "" = client certificates not asked for; else required and checked

  bool enabled() const { return !cert_chain_pem.empty(); }
};

struct HttpServerOptions {
  std::string host = "0.0.0.0";  // an address or a name; "::" for every IPv6 interface
  int32_t port = 0;              // 0 picks a free port
  int32_t threads = 2;           // handlers and I/O completions; connections need none
  // Time a client has to send a whole request (keep-alive connections: the next one), to
  // complete a TLS handshake, and to take each write of a response. Past it the connection is
  // closed.
  absl::Duration io_timeout = absl::Seconds(5);
  int64_t max_request_bytes = 64 << 10;  // header and body; larger: 413 and close
  int32_t max_connections = 1024;        // open at once; more are closed at accept
  // A streamed response whose unsent data passes this (a client that stopped reading) is
  // aborted and its connection closed.
  int64_t max_stream_backlog_bytes = 8 << 20;
  HttpTlsOptions tls;
  // The answer to a request over max_request_bytes (the connection closes after it); null: a
  // plain-text 413.
  std::function<HttpResponse(int64_t max_request_bytes)> too_large;
};

class HttpServer {
 public:
  // Binds host:port and starts serving. INVALID_ARGUMENT for a port outside [0, 65535], threads,
  // max_connections, max_request_bytes or max_stream_backlog_bytes < 1, a non-positive
  // io_timeout, an empty host, no handler, or TLS PEM text that does not load (the message says
  // which part); UNAVAILABLE when the address cannot be bound (in use, or not an address of this
  // machine).
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(HttpServerOptions options,
                                                           HttpExchangeHandler handler);
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

  // Stops accepting, closes every connection (aborting unanswered exchanges) and joins the
  // threads; the port is free when it returns. Idempotent.
  void Stop();

  class Impl;  // the .cc's; public only so its connection type can name it

 private:
  HttpServer(std::unique_ptr<Impl> impl, std::string host, int32_t port);

  std::unique_ptr<Impl> impl_;
  const std::string host_;
  const int32_t port_;
};

}  // namespace mamba::http
