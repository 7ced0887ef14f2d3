// One io_context, `threads` threads running it. The acceptor's loop opens a Connection per
// socket; a Connection reads one request (beast::http::async_read under a deadline), calls the
// handler, writes the response (under a deadline) and, for keep-alive, reads again. Every
// operation of a connection runs on its strand, so a connection needs no lock. Stop() closes the
// acceptor, stops the context and joins the threads; destroying the context then destroys the
// pending operations and with them the connections they hold.
#include "server/http/http_server.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <optional>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "boost/asio/bind_executor.hpp"
#include "boost/asio/dispatch.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/strand.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"

namespace mamba::http {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = boost::asio::ip::tcp;

}  // namespace

std::string HttpRequest::Header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (absl::EqualsIgnoreCase(key, absl::string_view(name.data(), name.size()))) return value;
  }
  return "";
}

class HttpServer::Impl {
 public:
  Impl(HttpServerOptions options, HttpHandler handler)
      : options(std::move(options)), handler(std::move(handler)), acceptor(io) {}

  void Accept();

  const HttpServerOptions options;
  const HttpHandler handler;
  // Declared before the context: destroying the context destroys connections, which count down.
  std::atomic<int64_t> open{0};
  std::atomic<bool> stopped{false};
  asio::io_context io;
  tcp::acceptor acceptor;
  std::vector<std::thread> threads;
};

namespace {

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(tcp::socket socket, HttpServer::Impl* server)
      : stream_(std::move(socket)), server_(server) {
    server_->open.fetch_add(1, std::memory_order_relaxed);
  }
  ~Connection() { server_->open.fetch_sub(1, std::memory_order_relaxed); }

  void Start() {
    asio::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->Read(); });
  }

 private:
  std::chrono::steady_clock::duration Timeout() const {
    return absl::ToChronoNanoseconds(server_->options.io_timeout);
  }

  void Read() {
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(
        std::min<int64_t>(server_->options.max_request_bytes, uint32_t{1} << 30)));
    parser_->body_limit(static_cast<uint64_t>(server_->options.max_request_bytes));
    stream_.expires_after(Timeout());
    bhttp::async_read(stream_, buffer_, *parser_,
                      beast::bind_front_handler(&Connection::OnRead, shared_from_this()));
  }

  void OnRead(beast::error_code ec, size_t) {
    if (ec == bhttp::error::header_limit || ec == bhttp::error::body_limit) {
      HttpResponse too_large;
      too_large.status = 413;
      too_large.body = absl::StrCat("request larger than ", server_->options.max_request_bytes,
                                    " bytes\n");
      return Respond(too_large, /*keep_alive=*/false, 11);
    }
    if (ec) return Close();  // end of stream, timeout, reset, malformed request
    bhttp::request<bhttp::string_body> message = parser_->release();
    HttpRequest request;
    request.method = std::string(message.method_string());
    request.target = std::string(message.target());
    request.path = request.target.substr(0, request.target.find('?'));
    for (const auto& field : message) {
      request.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
    }
    request.body = std::move(message.body());
    Respond(server_->handler(request), message.keep_alive(), message.version(),
            /*head=*/message.method() == bhttp::verb::head);
  }

  // A HEAD response carries the headers a GET would, Content-Length included, and no body.
  void Respond(const HttpResponse& r, bool keep_alive, unsigned version, bool head = false) {
    response_ = bhttp::response<bhttp::string_body>();
    response_.version(version);
    response_.result(static_cast<unsigned>(r.status));
    response_.set(bhttp::field::content_type, r.content_type);
    for (const auto& [name, value] : r.headers) response_.set(name, value);
    response_.keep_alive(keep_alive);
    response_.body() = r.body;
    response_.prepare_payload();
    if (head) response_.body().clear();
    stream_.expires_after(Timeout());
    bhttp::async_write(stream_, response_,
                       beast::bind_front_handler(&Connection::OnWrite, shared_from_this(),
                                                 keep_alive));
  }

  void OnWrite(bool keep_alive, beast::error_code ec, size_t) {
    if (ec || !keep_alive || server_->stopped.load(std::memory_order_relaxed)) return Close();
    Read();
  }

  void Close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
  }

  beast::tcp_stream stream_;
  HttpServer::Impl* const server_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  bhttp::response<bhttp::string_body> response_;
};

}  // namespace

void HttpServer::Impl::Accept() {
  acceptor.async_accept(asio::make_strand(io), [this](beast::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || stopped.load()) return;
    if (!ec) {
      if (open.load(std::memory_order_relaxed) >= options.max_connections) {
        beast::error_code ignored;
        socket.close(ignored);  // past the bound: refused rather than queued
      } else {
        std::make_shared<Connection>(std::move(socket), this)->Start();
      }
    }
    Accept();
  });
}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(HttpServerOptions options,
                                                              HttpHandler handler) {
  if (options.port < 0 || options.port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("HTTP port ", options.port, " is outside [0, 65535] (0 picks one)"));
  }
  if (options.threads < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("HTTP server threads must be at least 1, got ", options.threads));
  }
  if (options.host.empty()) {
    return absl::InvalidArgumentError("HTTP host is empty (use 0.0.0.0 for every interface)");
  }
  if (options.max_connections < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "HTTP max_connections must be at least 1, got ", options.max_connections));
  }
  if (options.io_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat("HTTP io_timeout must be positive, got ",
                                                   absl::FormatDuration(options.io_timeout)));
  }
  if (options.max_request_bytes < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "HTTP max_request_bytes must be at least 1, got ", options.max_request_bytes));
  }
  if (!handler) return absl::InvalidArgumentError("HTTP server needs a handler");
  const std::string host = options.host;
  auto impl = std::make_unique<Impl>(std::move(options), std::move(handler));
  auto unavailable = [&](const beast::error_code& ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot bind ", host, ":", impl->options.port, ": ", ec.message(),
                     " (the port is in use, or the host is not an address of this machine)"));
  };
  beast::error_code ec;
  tcp::resolver resolver(impl->io);
  const auto endpoints = resolver.resolve(host, std::to_string(impl->options.port),
                                          tcp::resolver::passive | tcp::resolver::numeric_service,
                                          ec);
  if (ec || endpoints.empty()) return unavailable(ec);
  const tcp::endpoint endpoint = endpoints.begin()->endpoint();
  impl->acceptor.open(endpoint.protocol(), ec);
  if (ec) return unavailable(ec);
  // SO_REUSEADDR allows a quick restart; never SO_REUSEPORT, which would let a second server bind
  // the same port and silently take half the requests.
  impl->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  impl->acceptor.bind(endpoint, ec);
  if (ec) return unavailable(ec);
  impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return unavailable(ec);
  const int32_t port = impl->acceptor.local_endpoint().port();
  impl->Accept();
  for (int i = 0; i < impl->options.threads; ++i) {
    impl->threads.emplace_back([io = &impl->io] { io->run(); });
  }
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl), host, port));
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl, std::string host, int32_t port)
    : impl_(std::move(impl)), host_(std::move(host)), port_(port) {}

HttpServer::~HttpServer() { Stop(); }

std::string HttpServer::address() const {
  if (host_.find(':') != std::string::npos) return absl::StrCat("[", host_, "]:", port_);
  return absl::StrCat(host_, ":", port_);
}

int64_t HttpServer::open_connections() const {
  return impl_ == nullptr ? 0 : impl_->open.load(std::memory_order_relaxed);
}

void HttpServer::Stop() {
  if (impl_ == nullptr) return;
  impl_->stopped.store(true);
  asio::post(impl_->io, [impl = impl_.get()] {
    beast::error_code ignored;
    impl->acceptor.close(ignored);
  });
  impl_->io.stop();
  for (std::thread& t : impl_->threads) t.join();
  // Destroying the context destroys the pending operations and the connections they hold, so
  // every socket, the listening one included, is closed once this returns.
  impl_.reset();
}

}  // namespace mamba::http
