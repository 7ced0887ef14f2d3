// `mamba-client load --http=HOST:PORT`: the load tester's streams over the OpenAI-compatible HTTP
// API instead of gRPC, in plaintext or over TLS (the same flags as gRPC, mutual TLS too). Each
// request is a streaming POST /v1/completions (the workload's prompt as token ids or text, its
// sampling and stopping fields, `stream_options.include_usage`), read as server-sent events on
// an HTTP/1.1 keep-alive connection. Connections are pooled: a finished stream's connection
// serves the next request, so a closed loop of N streams holds N connections. Boost.Beast on a
// few threads running one io_context: no thread per stream.
//
// What each stream records matches the gRPC path (load_stats.h), with two differences the SSE
// format forces: a token-carrying event is one arrival (an event may hold more than one token
// when a character spans tokens, so ITL is the gap between text events), and the token count
// of a finished request is its usage.completion_tokens.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/load_stats.h"
#include "mambaserve/v1/generation.pb.h"
#include "nlohmann/json.hpp"

namespace mamba::client::load {

struct HttpTargetOptions {
  std::string address;       // HOST:PORT or [V6]:PORT
  std::string bearer_token;  // sent as `Authorization: Bearer TOKEN` when not empty
  int32_t threads = 1;       // threads running the event loop
  // HTTPS: the server's certificate is checked against `tls_ca` (PEM; the system's roots when
  // empty) and against `tls_server_name` (the address's host when empty); `tls_cert` and
  // `tls_key` present a client certificate.
  bool tls = false;
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
  std::string tls_server_name;
};

// What a stream reports while it runs and when it ends (on one of the client's threads).
struct HttpStreamCallbacks {
  std::function<double()> now_s;          // seconds since the phase began
  std::function<void(int64_t)> tokens;    // tokens arrived (a progress counter)
  std::function<void(RequestRecord)> done;
};

class HttpLoadClient {
 public:
  // Resolves the address, starts the threads and asks GET /v1/models for the model to name in
  // requests: UNAVAILABLE when the server cannot be reached, UNAUTHENTICATED (and the server's
  // message) when it refuses the token.
  static absl::StatusOr<std::unique_ptr<HttpLoadClient>> Create(const HttpTargetOptions& options);
  virtual ~HttpLoadClient() = default;

  // Starts one streaming completion; `callbacks.done` runs exactly once, when it has ended
  // (status_code is a gRPC code: HTTP errors map as the server maps gRPC codes to HTTP).
  virtual void Generate(const mambaserve::v1::GenerateRequest& request, absl::Duration timeout,
                        HttpStreamCallbacks callbacks) = 0;
};

// The body of the POST /v1/completions that `request` becomes (exposed for tests).
nlohmann::json CompletionBody(const mambaserve::v1::GenerateRequest& request,
                              const std::string& model);

// The gRPC code an HTTP error status stands for, and the one an OpenAI error `type` (in a
// stream's error event) stands for.
int GrpcCodeForHttpStatus(int http_status);
int GrpcCodeForErrorType(const std::string& type);

}  // namespace mamba::client::load
