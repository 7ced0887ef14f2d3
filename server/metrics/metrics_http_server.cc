#include "server/metrics/metrics_http_server.h"

#include <zlib.h>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "server/metrics/text_format.h"

namespace mamba::metrics {
namespace {

http::HttpResponse Text(int status, std::string body) {
  http::HttpResponse response;
  response.status = status;
  response.body = std::move(body);
  return response;
}

// True when an Accept-Encoding value accepts gzip: a "gzip" (or "*") coding whose q is not 0.
bool AcceptsGzip(absl::string_view accept_encoding) {
  for (absl::string_view coding : absl::StrSplit(accept_encoding, ',')) {
    std::vector<absl::string_view> parts = absl::StrSplit(coding, ';');
    const absl::string_view name = absl::StripAsciiWhitespace(parts[0]);
    if (!absl::EqualsIgnoreCase(name, "gzip") && name != "*") continue;
    double q = 1.0;
    for (size_t i = 1; i < parts.size(); ++i) {
      absl::string_view param = absl::StripAsciiWhitespace(parts[i]);
      if (absl::ConsumePrefix(&param, "q=") && !absl::SimpleAtod(param, &q)) q = 0;
    }
    if (q > 0) return true;
  }
  return false;
}

// `text` as a gzip member (RFC 1952); false when zlib fails (the caller then sends it plain).
bool Gzip(std::string_view text, std::string* out) {
  z_stream stream{};
  // 15 window bits + 16: a gzip header and trailer rather than zlib's.
  if (deflateInit2(&stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) !=
      Z_OK) {
    return false;
  }
  out->resize(deflateBound(&stream, static_cast<uLong>(text.size())) + 32);
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(text.data()));
  stream.avail_in = static_cast<uInt>(text.size());
  stream.next_out = reinterpret_cast<Bytef*>(out->data());
  stream.avail_out = static_cast<uInt>(out->size());
  const int rc = deflate(&stream, Z_FINISH);
  out->resize(stream.total_out);
  deflateEnd(&stream);
  return rc == Z_STREAM_END;
}

}  // namespace

http::HttpResponse MetricsHttpServer::Handle(const Registry* registry,
                                             const std::function<bool()>& ready,
                                             const http::HttpRequest& request) {
  if (request.method != "GET" && request.method != "HEAD") {
    http::HttpResponse response = Text(405, "only GET and HEAD are served\n");
    response.headers.emplace_back("Allow", "GET, HEAD");
    return response;
  }
  if (request.path == "/metrics") {
    http::HttpResponse response;
    response.content_type = kTextFormatContentType;
    std::string text = registry->Expose();
    std::string compressed;
    if (AcceptsGzip(request.Header("Accept-Encoding")) && Gzip(text, &compressed)) {
      response.body = std::move(compressed);
      response.headers.emplace_back("Content-Encoding", "gzip");
    } else {
      response.body = std::move(text);
    }
    response.headers.emplace_back("Vary", "Accept-Encoding");
    return response;
  }
  if (request.path == "/healthz") return Text(200, "ok\n");
  if (request.path == "/readyz") {
    return !ready || ready() ? Text(200, "ready\n") : Text(503, "not ready\n");
  }
  return Text(404, "not found; this server serves /metrics, /healthz and /readyz\n");
}

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const Registry* registry, MetricsHttpOptions options) {
  if (registry == nullptr) return absl::InvalidArgumentError("metrics server needs a registry");
  http::HttpServerOptions http_options;
  http_options.host = options.host;
  http_options.port = options.port;
  http_options.threads = options.threads;
  http_options.io_timeout = options.io_timeout;
  http_options.max_connections = options.max_connections;
  // Probes and scrapes are bodiless GETs.
  http_options.max_request_bytes = 16 << 10;
  auto server = http::HttpServer::Start(
      std::move(http_options),
      [registry, ready = std::move(options.ready)](const http::HttpRequest& request) {
        return Handle(registry, ready, request);
      });
  if (!server.ok()) {
    return absl::Status(server.status().code(),
                        absl::StrCat("metrics endpoint: ", server.status().message()));
  }
  return std::unique_ptr<MetricsHttpServer>(new MetricsHttpServer(*std::move(server)));
}

}  // namespace mamba::metrics
