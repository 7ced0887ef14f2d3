#include "client/load_http.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "grpcpp/support/status.h"

namespace mamba::client::load {
namespace {

namespace v1 = ::mambaserve::v1;
namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using json = nlohmann::json;

constexpr char kCompletionsPath[] = "/v1/completions";

// "HOST:PORT" or "[V6]:PORT" split; false when either part is missing.
bool SplitHostPort(absl::string_view address, std::string* host, std::string* port) {
  size_t colon;
  if (!address.empty() && address.front() == '[') {
    const size_t close = address.find(']');
    if (close == absl::string_view::npos || close + 1 >= address.size() ||
        address[close + 1] != ':') {
      return false;
    }
    *host = std::string(address.substr(1, close - 1));
    colon = close + 1;
  } else {
    colon = address.rfind(':');
    if (colon == absl::string_view::npos) return false;
    *host = std::string(address.substr(0, colon));
    if (host->find(':') != std::string::npos) return false;  // a bare IPv6 address: use [V6]
  }
  *port = std::string(address.substr(colon + 1));
  int port_number = 0;
  return !host->empty() && absl::SimpleAtoi(*port, &port_number) && port_number > 0 &&
         port_number < 65536;
}

int FinishReasonFromString(const std::string& reason) {
  if (reason == "length") return v1::FINISH_REASON_LENGTH;
  if (reason == "abort" || reason == "cancelled") return v1::FINISH_REASON_CANCELLED;
  return v1::FINISH_REASON_STOP;  // "stop" covers stop strings, stop tokens and EOS
}

// The member `key` of object `o`, or null when it has none (no copy, unlike json::value).
const json* Field(const json& o, const char* key) {
  auto it = o.find(key);
  return it == o.end() ? nullptr : &*it;
}

// One keep-alive connection, plaintext or TLS, and the bytes read past the last response.
struct Connection {
  // `tls` null: plaintext. Else the TLS stream checks the server's certificate against
  // `server_name` (a host name or an IP address) and sends it as SNI when it is a name.
  Connection(asio::io_context& io, ssl::context* tls, const std::string& server_name) {
    if (tls == nullptr) {
      plain.emplace(io);
      return;
    }
    secure.emplace(io, *tls);
    secure->set_verify_mode(ssl::verify_peer);
    secure->set_verify_callback(ssl::host_name_verification(server_name));
    beast::error_code ec;
    asio::ip::make_address(server_name, ec);
    if (ec) SSL_set_tlsext_host_name(secure->native_handle(), server_name.c_str());
  }
  beast::tcp_stream& tcp() { return secure ? beast::get_lowest_layer(*secure) : *plain; }
  // Calls f with the stream to read and write (the TLS stream, or the TCP one).
  template <typename F>
  void With(F&& f) {
    if (secure) {
      f(*secure);
    } else {
      f(*plain);
    }
  }
  std::optional<beast::tcp_stream> plain;
  std::optional<beast::ssl_stream<beast::tcp_stream>> secure;
  beast::flat_buffer buffer;
};

class HttpLoadClientImpl;

// One streaming completion. Owned by the handlers in flight (shared_from_this).
class HttpStream : public std::enable_shared_from_this<HttpStream> {
 public:
  HttpStream(HttpLoadClientImpl* client, std::unique_ptr<Connection> connection, bool reused,
             std::string body, absl::Duration timeout, HttpStreamCallbacks callbacks);
  void Start();

 private:
  void Connect();
  void Handshake();
  void Write();
  void ReadHeader();
  void ReadBody();
  void OnHeader();
  void Consume(const char* data, size_t n);
  void OnEvent(absl::string_view data);
  // A transport failure: retried once on a fresh connection when a reused one turns out to be
  // closed before the response began; else the end of the stream.
  void OnTransportError(const beast::error_code& ec);
  void Finish(bool keep_connection);
  // Puts the request's deadline (if any) on the connection's socket operations.
  void ArmDeadline();

  HttpLoadClientImpl* client_;
  std::unique_ptr<Connection> connection_;
  bool reused_;
  bool retried_ = false;
  absl::Duration timeout_;
  HttpStreamCallbacks callbacks_;
  http::request<http::string_body> request_;
  std::optional<http::response_parser<http::buffer_body>> parser_;
  char chunk_[16384];
  int http_status_ = 0;
  std::string pending_;  // SSE bytes not yet ending an event
  bool done_event_ = false;
  bool usage_seen_ = false;  // record_.usage_* hold the usage chunk's counts
  int error_code_ = 0;       // from an error event, a gRPC code
  RequestRecord record_;
};

class HttpLoadClientImpl final : public HttpLoadClient {
 public:
  HttpLoadClientImpl(HttpTargetOptions options, std::string host)
      : options_(std::move(options)), host_(std::move(host)), work_(io_.get_executor()) {}

  ~HttpLoadClientImpl() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      idle_.clear();
    }
    work_.reset();
    io_.stop();
    for (std::thread& t : threads_) t.join();
  }

  absl::Status Init(const std::string& port) {
    beast::error_code ec;
    if (options_.tls) {
      absl::Status tls = MakeTlsContext();
      if (!tls.ok()) return tls;
    }
    server_name_ = options_.tls_server_name.empty() ? host_ : options_.tls_server_name;
    tcp::resolver resolver(io_);
    endpoints_ = resolver.resolve(host_, port, ec);
    if (ec) {
      return absl::UnavailableError(absl::StrCat("--http=", options_.address, ": cannot resolve '",
                                                 host_, "': ", ec.message()));
    }
    for (int i = 0; i < std::max(options_.threads, 1); ++i) {
      threads_.emplace_back([this] { io_.run(); });
    }
    return FetchModel();
  }

  void Generate(const v1::GenerateRequest& request, absl::Duration timeout,
                HttpStreamCallbacks callbacks) override {
    std::unique_ptr<Connection> connection;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!idle_.empty()) {
        connection = std::move(idle_.back());
        idle_.pop_back();
      }
    }
    const bool reused = connection != nullptr;
    if (!reused) connection = NewConnection();
    std::make_shared<HttpStream>(this, std::move(connection), reused,
                                 CompletionBody(request, model_).dump(), timeout,
                                 std::move(callbacks))
        ->Start();
  }

  std::unique_ptr<Connection> NewConnection() {
    return std::make_unique<Connection>(io_, tls_.get(), server_name_);
  }
  void Release(std::unique_ptr<Connection> connection) {
    std::lock_guard<std::mutex> lock(mu_);
    idle_.push_back(std::move(connection));
  }
  const tcp::resolver::results_type& endpoints() const { return endpoints_; }
  const std::string& host_header() const { return options_.address; }
  const std::string& bearer_token() const { return options_.bearer_token; }

 private:
  // GET /v1/models on a connection of its own, synchronously (before any load).
  absl::Status FetchModel() {
    Connection connection(io_, tls_.get(), server_name_);
    beast::tcp_stream& tcp = connection.tcp();
    tcp.expires_after(std::chrono::seconds(10));
    beast::error_code ec;
    tcp.connect(endpoints_, ec);
    if (ec) {
      return absl::UnavailableError(absl::StrCat("--http=", options_.address,
                                                 ": cannot connect: ", ec.message()));
    }
    if (connection.secure) {
      connection.secure->handshake(ssl::stream_base::client, ec);
      if (ec) {
        return absl::UnavailableError(absl::StrCat("--http=", options_.address,
                                                   ": TLS handshake failed: ", ec.message()));
      }
    }
    http::request<http::empty_body> get(http::verb::get, "/v1/models", 11);
    get.set(http::field::host, host_header());
    if (!options_.bearer_token.empty()) {
      get.set(http::field::authorization, absl::StrCat("Bearer ", options_.bearer_token));
    }
    beast::flat_buffer buffer;
    http::response<http::string_body> response;
    connection.With([&](auto& stream) {
      http::write(stream, get, ec);
      if (!ec) http::read(stream, buffer, response, ec);
    });
    if (ec) {
      return absl::UnavailableError(absl::StrCat("--http=", options_.address,
                                                 ": GET /v1/models failed: ", ec.message()));
    }
    const json body = json::parse(response.body(), nullptr, /*allow_exceptions=*/false);
    if (response.result_int() != 200) {
      std::string message = response.body();
      if (body.is_object() && body.contains("error") && body["error"].is_object() &&
          body["error"].value("message", json()).is_string()) {
        message = body["error"]["message"].get<std::string>();
      }
      return absl::Status(
          static_cast<absl::StatusCode>(GrpcCodeForHttpStatus(response.result_int())),
          absl::StrCat("--http=", options_.address, ": GET /v1/models answered ",
                       response.result_int(), ": ", message));
    }
    if (!body.is_object() || !body.contains("data") || !body["data"].is_array() ||
        body["data"].empty() || !body["data"][0].is_object() ||
        !body["data"][0].value("id", json()).is_string()) {
      return absl::UnavailableError(absl::StrCat(
          "--http=", options_.address,
          ": GET /v1/models did not list a model (is this an OpenAI-compatible server?)"));
    }
    model_ = body["data"][0]["id"].get<std::string>();
    tcp.socket().shutdown(tcp::socket::shutdown_both, ec);
    return absl::OkStatus();
  }

  absl::Status MakeTlsContext() {
    tls_ = std::make_unique<ssl::context>(ssl::context::tls_client);
    beast::error_code ec;
    if (!options_.tls_ca.empty()) {
      tls_->load_verify_file(options_.tls_ca, ec);
      if (ec) {
        return absl::InvalidArgumentError(absl::StrCat("--tls_ca=", options_.tls_ca,
                                                       ": cannot load: ", ec.message()));
      }
    } else {
      tls_->set_default_verify_paths(ec);
    }
    if (!options_.tls_cert.empty()) {
      tls_->use_certificate_chain_file(options_.tls_cert, ec);
      if (!ec) tls_->use_private_key_file(options_.tls_key, ssl::context::pem, ec);
      if (ec) {
        return absl::InvalidArgumentError(
            absl::StrCat("--tls_cert=", options_.tls_cert, " --tls_key=", options_.tls_key,
                         ": cannot load: ", ec.message()));
      }
    }
    return absl::OkStatus();
  }

  HttpTargetOptions options_;
  std::string host_;
  std::string server_name_;  // what the server's certificate must name
  std::unique_ptr<ssl::context> tls_;  // null: plaintext
  std::string model_;
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  tcp::resolver::results_type endpoints_;
  std::vector<std::thread> threads_;
  mutable std::mutex mu_;
  std::vector<std::unique_ptr<Connection>> idle_;
};

HttpStream::HttpStream(HttpLoadClientImpl* client, std::unique_ptr<Connection> connection,
                       bool reused, std::string body, absl::Duration timeout,
                       HttpStreamCallbacks callbacks)
    : client_(client),
      connection_(std::move(connection)),
      reused_(reused),
      timeout_(timeout),
      callbacks_(std::move(callbacks)),
      request_(http::verb::post, kCompletionsPath, 11) {
  request_.set(http::field::host, client_->host_header());
  request_.set(http::field::content_type, "application/json");
  request_.set(http::field::accept, "text/event-stream");
  if (!client_->bearer_token().empty()) {
    request_.set(http::field::authorization, absl::StrCat("Bearer ", client_->bearer_token()));
  }
  request_.keep_alive(true);
  request_.body() = std::move(body);
  request_.prepare_payload();
}

void HttpStream::ArmDeadline() {
  if (timeout_ > absl::ZeroDuration()) {
    connection_->tcp().expires_after(absl::ToChronoNanoseconds(timeout_));
  } else {
    connection_->tcp().expires_never();
  }
}

void HttpStream::Start() {
  record_.send_s = callbacks_.now_s();
  ArmDeadline();
  if (reused_) {
    Write();
  } else {
    Connect();
  }
}

void HttpStream::Connect() {
  connection_->tcp().async_connect(
      client_->endpoints(),
      [self = shared_from_this()](const beast::error_code& ec, const tcp::endpoint&) {
        if (ec) {
          self->OnTransportError(ec);
          return;
        }
        beast::error_code ignored;
        self->connection_->tcp().socket().set_option(tcp::no_delay(true), ignored);
        self->Handshake();
      });
}

void HttpStream::Handshake() {
  if (!connection_->secure) {
    Write();
    return;
  }
  connection_->secure->async_handshake(ssl::stream_base::client,
                                       [self = shared_from_this()](const beast::error_code& ec) {
                                         if (ec) {
                                           self->OnTransportError(ec);
                                           return;
                                         }
                                         self->Write();
                                       });
}

void HttpStream::Write() {
  connection_->With([this](auto& stream) {
    http::async_write(stream, request_,
                      [self = shared_from_this()](const beast::error_code& ec, size_t) {
                        if (ec) {
                          self->OnTransportError(ec);
                          return;
                        }
                        self->ReadHeader();
                      });
  });
}

void HttpStream::ReadHeader() {
  parser_.emplace();
  parser_->body_limit(boost::none);  // a stream is as long as its generation
  connection_->With([this](auto& stream) {
    http::async_read_header(stream, connection_->buffer, *parser_,
                            [self = shared_from_this()](const beast::error_code& ec, size_t) {
                              if (ec) {
                                self->OnTransportError(ec);
                                return;
                              }
                              self->OnHeader();
                            });
  });
}

void HttpStream::OnHeader() {
  http_status_ = static_cast<int>(parser_->get().result_int());
  ReadBody();
}

void HttpStream::ReadBody() {
  if (parser_->is_done()) {
    Finish(parser_->get().keep_alive());
    return;
  }
  parser_->get().body().data = chunk_;
  parser_->get().body().size = sizeof(chunk_);
  // read_some, not read: read returns only when the buffer is full or the message is over, which
  // would hold every event back until the stream ends.
  connection_->With([this](auto& stream) {
    http::async_read_some(
        stream, connection_->buffer, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) {
          if (ec == http::error::need_buffer) ec = {};
          const size_t used = sizeof(self->chunk_) - self->parser_->get().body().size;
          if (used > 0) self->Consume(self->chunk_, used);
          if (ec) {
            self->OnTransportError(ec);
            return;
          }
          self->ReadBody();
        });
  });
}

void HttpStream::Consume(const char* data, size_t n) {
  if (http_status_ != 200) return;  // an error answer: its status is what counts
  if (std::memchr(data, '\r', n) == nullptr) {
    pending_.append(data, n);
  } else {  // CRLF line ends: events end with a blank line either way
    std::copy_if(data, data + n, std::back_inserter(pending_), [](char c) { return c != '\r'; });
  }
  size_t start = 0;
  for (size_t end; (end = pending_.find("\n\n", start)) != std::string::npos; start = end + 2) {
    std::string joined;  // only for an event of several data lines
    absl::string_view data_view;
    int data_lines = 0;
    absl::string_view event(pending_.data() + start, end - start);
    while (!event.empty()) {
      const size_t nl = event.find('\n');
      absl::string_view line = event.substr(0, nl);
      event = nl == absl::string_view::npos ? absl::string_view() : event.substr(nl + 1);
      if (line.substr(0, 5) != "data:") continue;  // comments, event names, ids
      line.remove_prefix(5);
      if (!line.empty() && line.front() == ' ') line.remove_prefix(1);
      if (++data_lines == 1) {
        data_view = line;
        continue;
      }
      if (data_lines == 2) joined.assign(data_view.data(), data_view.size());
      joined.push_back('\n');
      joined.append(line.data(), line.size());
    }
    if (data_lines > 1) data_view = joined;
    if (!data_view.empty()) OnEvent(data_view);
  }
  pending_.erase(0, start);
}

void HttpStream::OnEvent(absl::string_view data) {
  if (data == "[DONE]") {
    done_event_ = true;
    return;
  }
  const json event = json::parse(data.begin(), data.end(), nullptr, /*allow_exceptions=*/false);
  if (!event.is_object()) return;
  if (auto e = event.find("error"); e != event.end() && e->is_object()) {
    const json* type = Field(*e, "type");
    error_code_ = GrpcCodeForErrorType(type != nullptr && type->is_string()
                                           ? type->get_ref<const std::string&>()
                                           : std::string());
    return;
  }
  const double now = callbacks_.now_s();
  if (auto choices = event.find("choices"); choices != event.end() && choices->is_array()) {
    for (const json& choice : *choices) {
      if (!choice.is_object()) continue;
      const json* text = Field(choice, "text");
      if (text != nullptr && text->is_string() && !text->get_ref<const std::string&>().empty()) {
        RecordTokenArrival(&record_, now, 1);
        callbacks_.tokens(1);
      }
      const json* reason = Field(choice, "finish_reason");
      if (reason != nullptr && reason->is_string()) {
        record_.finished = true;
        record_.finish_reason = FinishReasonFromString(reason->get_ref<const std::string&>());
        record_.end_s = now;
      }
    }
  }
  if (auto usage = event.find("usage"); usage != event.end() && usage->is_object()) {
    usage_seen_ = true;
    const int64_t prompt = usage->value("prompt_tokens", int64_t{0});
    const int64_t completion = usage->value("completion_tokens", int64_t{0});
    int64_t cached = 0;
    if (auto details = usage->find("prompt_tokens_details");
        details != usage->end() && details->is_object()) {
      cached = details->value("cached_tokens", int64_t{0});
    }
    // The gRPC usage counts prompt tokens computed; OpenAI's includes the cached ones.
    record_.usage_prompt_tokens = static_cast<int32_t>(prompt - cached);
    record_.usage_generated_tokens = static_cast<int32_t>(completion);
    record_.usage_cached_tokens = cached;
  }
}

void HttpStream::OnTransportError(const beast::error_code& ec) {
  if (reused_ && !retried_ && http_status_ == 0 && record_.tokens_received == 0 &&
      ec != beast::error::timeout) {
    // A pooled connection the server closed while it was idle: once more on a new one.
    retried_ = true;
    reused_ = false;
    connection_ = client_->NewConnection();
    ArmDeadline();
    Connect();
    return;
  }
  record_.status_code = ec == beast::error::timeout ? grpc::StatusCode::DEADLINE_EXCEEDED
                                                    : grpc::StatusCode::UNAVAILABLE;
  Finish(false);
}

void HttpStream::Finish(bool keep_connection) {
  if (record_.status_code == 0) {
    if (http_status_ != 200) {
      record_.status_code = GrpcCodeForHttpStatus(http_status_);
    } else if (error_code_ != 0) {
      record_.status_code = error_code_;
    } else if (!done_event_) {
      record_.finished = false;  // the stream ended without its terminator
    }
  }
  if (!record_.finished) record_.end_s = callbacks_.now_s();
  if (usage_seen_) {
    // Events carry text, not token counts (a character split over tokens comes as one event, a
    // held-back partial character as one more at the end); the usage chunk has the count.
    const int64_t counted = record_.usage_generated_tokens;
    if (counted > record_.tokens_received) callbacks_.tokens(counted - record_.tokens_received);
    record_.tokens_received = counted;
  }
  if (keep_connection && record_.status_code == 0) {
    connection_->tcp().expires_never();
    client_->Release(std::move(connection_));
  } else {
    // Without a TLS close_notify: the connection is dropped, not reused.
    beast::error_code ignored;
    connection_->tcp().socket().shutdown(tcp::socket::shutdown_both, ignored);
    connection_->tcp().close();
  }
  callbacks_.done(std::move(record_));
}

}  // namespace

json CompletionBody(const v1::GenerateRequest& request, const std::string& model) {
  json body = {{"model", model}, {"stream", true}, {"stream_options", {{"include_usage", true}}}};
  if (request.has_token_ids()) {
    body["prompt"] = json(std::vector<int32_t>(request.token_ids().ids().begin(),
                                               request.token_ids().ids().end()));
  } else {
    body["prompt"] = request.text();
  }
  const v1::StoppingCriteria& stop = request.stopping();
  if (stop.has_max_tokens()) body["max_tokens"] = stop.max_tokens();
  if (stop.stop_size() > 0) {
    body["stop"] = json(std::vector<std::string>(stop.stop().begin(), stop.stop().end()));
  }
  if (stop.stop_token_ids_size() > 0) {
    body["stop_token_ids"] = json(std::vector<int32_t>(stop.stop_token_ids().begin(),
                                                       stop.stop_token_ids().end()));
  }
  if (stop.ignore_eos()) body["ignore_eos"] = true;
  if (request.has_sampling()) {
    const v1::SamplingParams& s = request.sampling();
    body["temperature"] = s.temperature();
    if (s.top_k() != 0) body["top_k"] = s.top_k();
    if (s.has_top_p()) body["top_p"] = s.top_p();
    if (s.min_p() != 0) body["min_p"] = s.min_p();
    if (s.has_repetition_penalty()) body["repetition_penalty"] = s.repetition_penalty();
    if (s.has_seed()) body["seed"] = s.seed();
    if (s.presence_penalty() != 0) body["presence_penalty"] = s.presence_penalty();
    if (s.frequency_penalty() != 0) body["frequency_penalty"] = s.frequency_penalty();
  } else {
    // The gRPC API's default (a request without sampling is sampled at temperature 1).
    body["temperature"] = 1.0;
  }
  return body;
}

int GrpcCodeForHttpStatus(int http_status) {
  switch (http_status) {
    case 200:
      return grpc::StatusCode::OK;
    case 400:
    case 413:
    case 422:
      return grpc::StatusCode::INVALID_ARGUMENT;
    case 401:
      return grpc::StatusCode::UNAUTHENTICATED;
    case 403:
      return grpc::StatusCode::PERMISSION_DENIED;
    case 404:
      return grpc::StatusCode::NOT_FOUND;
    case 409:
      return grpc::StatusCode::FAILED_PRECONDITION;
    case 429:
      return grpc::StatusCode::RESOURCE_EXHAUSTED;
    case 499:
      return grpc::StatusCode::CANCELLED;
    case 501:
      return grpc::StatusCode::UNIMPLEMENTED;
    case 503:
      return grpc::StatusCode::UNAVAILABLE;
    case 504:
      return grpc::StatusCode::DEADLINE_EXCEEDED;
    default:
      return http_status >= 400 && http_status < 500 ? grpc::StatusCode::INVALID_ARGUMENT
                                                     : grpc::StatusCode::INTERNAL;
  }
}

int GrpcCodeForErrorType(const std::string& type) {
  if (type == "invalid_request_error") return grpc::StatusCode::INVALID_ARGUMENT;
  if (type == "authentication_error") return grpc::StatusCode::UNAUTHENTICATED;
  if (type == "permission_error") return grpc::StatusCode::PERMISSION_DENIED;
  if (type == "not_found_error") return grpc::StatusCode::NOT_FOUND;
  if (type == "conflict_error") return grpc::StatusCode::FAILED_PRECONDITION;
  if (type == "rate_limit_error") return grpc::StatusCode::RESOURCE_EXHAUSTED;
  if (type == "service_unavailable") return grpc::StatusCode::UNAVAILABLE;
  if (type == "timeout_error") return grpc::StatusCode::DEADLINE_EXCEEDED;
  if (type == "cancelled") return grpc::StatusCode::CANCELLED;
  return grpc::StatusCode::INTERNAL;
}

absl::StatusOr<std::unique_ptr<HttpLoadClient>> HttpLoadClient::Create(
    const HttpTargetOptions& options) {
  std::string host, port;
  if (!SplitHostPort(options.address, &host, &port)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--http=", options.address, " is not an address; use HOST:PORT or [V6]:PORT"));
  }
  auto client = std::make_unique<HttpLoadClientImpl>(options, host);
  absl::Status status = client->Init(port);
  if (!status.ok()) return status;
  return std::unique_ptr<HttpLoadClient>(std::move(client));
}

}  // namespace mamba::client::load
