#include "server/metrics/metrics_http_server.h"

#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/metrics/registry.h"
#include "tests/unit/http/raw_client.h"
#include "tests/unit/metrics/exposition_parser.h"

namespace mamba::metrics {
namespace {

using ::testing::HasSubstr;

class MetricsHttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    requests_ = *registry_.AddCounter("demo_requests_total", "Requests.");
    MetricsHttpOptions options;
    options.host = "127.0.0.1";
    options.port = 0;
    options.ready = [this] { return ready_.load(); };
    auto server = MetricsHttpServer::Start(&registry_, options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  httplib::Client Client() { return httplib::Client("127.0.0.1", server_->port()); }

  Registry registry_;
  Counter* requests_ = nullptr;
  std::atomic<bool> ready_{false};
  std::unique_ptr<MetricsHttpServer> server_;
};

TEST_F(MetricsHttpServerTest, ServesMetricsOnTheChosenPort) {
  EXPECT_GT(server_->port(), 0);
  EXPECT_EQ(server_->address(), "127.0.0.1:" + std::to_string(server_->port()));
  requests_->Increment(41);
  requests_->Increment();
  httplib::Client client = Client();
  auto res = client.Get("/metrics");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  auto parsed = testing::ParseExposition(res->body);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed->Value("demo_requests_total"), 42);
}

TEST_F(MetricsHttpServerTest, CompressesForScrapersThatAskForGzip) {
  httplib::Client client = Client();
  client.set_decompress(false);
  auto res = client.Get("/metrics", {{"Accept-Encoding", "gzip"}});
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Content-Encoding"), "gzip");
  // And a client that decompresses gets the text back.
  httplib::Client plain = Client();
  auto res2 = plain.Get("/metrics", {{"Accept-Encoding", "gzip"}});
  ASSERT_TRUE(res2);
  EXPECT_THAT(res2->body, HasSubstr("# TYPE demo_requests_total counter"));
}

TEST_F(MetricsHttpServerTest, GzipOnlyWhenAccepted) {
  httplib::Client client = Client();
  client.set_decompress(false);
  for (const char* refused : {"gzip;q=0", "identity", "br", "deflate, gzip; q=0.0"}) {
    auto res = client.Get("/metrics", {{"Accept-Encoding", refused}});
    ASSERT_TRUE(res);
    EXPECT_EQ(res->get_header_value("Content-Encoding"), "") << refused;
    EXPECT_THAT(res->body, HasSubstr("# TYPE demo_requests_total counter")) << refused;
  }
  for (const char* accepted : {"GZIP", "br;q=1.0, gzip;q=0.5", "*"}) {
    auto res = client.Get("/metrics", {{"Accept-Encoding", accepted}});
    ASSERT_TRUE(res);
    EXPECT_EQ(res->get_header_value("Content-Encoding"), "gzip") << accepted;
  }
}

TEST_F(MetricsHttpServerTest, IdleAndSlowClientsDoNotStarveScrapesAndProbes) {
  // 50 idle keep-alive connections and 20 clients sending their request a header at a time: with
  // a thread per connection these took every thread and /readyz waited seconds.
  auto others = std::make_unique<mamba::testing::IdleAndSlowClients>(server_->port(), 50, 20,
                                                                       "GET /metrics HTTP/1.1");
  ASSERT_TRUE(mamba::testing::WaitFor([&] { return server_->open_connections() == 70; },
                                      std::chrono::seconds(5)));
  ready_ = true;
  std::vector<double> ms;
  for (int i = 0; i < 11; ++i) {
    for (const char* path : {"/metrics", "/readyz"}) {
      httplib::Client client = Client();
      const auto start = std::chrono::steady_clock::now();
      auto res = client.Get(path);
      ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() -
                                                             start).count());
      ASSERT_TRUE(res) << path;
      EXPECT_EQ(res->status, 200) << path;
    }
  }
  others.reset();
  std::sort(ms.begin(), ms.end());
  // Within 100 ms; a loaded test machine gets slack on the worst one.
  EXPECT_LT(ms[ms.size() / 2], 100.0);
  EXPECT_LT(ms.back(), 1000.0);
}

TEST_F(MetricsHttpServerTest, OtherMethodsAre405) {
  httplib::Client client = Client();
  auto res = client.Post("/metrics", "x", "text/plain");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 405);
  EXPECT_EQ(res->get_header_value("Allow"), "GET, HEAD");
}

TEST_F(MetricsHttpServerTest, HealthAndReadiness) {
  httplib::Client client = Client();
  auto healthz = client.Get("/healthz");
  ASSERT_TRUE(healthz);
  EXPECT_EQ(healthz->status, 200);
  auto not_ready = client.Get("/readyz");
  ASSERT_TRUE(not_ready);
  EXPECT_EQ(not_ready->status, 503);
  EXPECT_EQ(not_ready->body, "not ready\n");
  ready_ = true;
  auto ready = client.Get("/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200);
  ready_ = false;  // draining
  auto draining = client.Get("/readyz");
  ASSERT_TRUE(draining);
  EXPECT_EQ(draining->status, 503);
}

TEST_F(MetricsHttpServerTest, UnknownPathsAre404) {
  httplib::Client client = Client();
  auto res = client.Get("/nope");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
  EXPECT_THAT(res->body, HasSubstr("/metrics"));
}

TEST_F(MetricsHttpServerTest, ConcurrentScrapesWhileRecording) {
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    while (!stop.load()) requests_->Increment();
  });
  std::vector<std::thread> scrapers;
  std::atomic<int> ok{0};
  for (int t = 0; t < 4; ++t) {
    scrapers.emplace_back([&] {
      httplib::Client client = Client();
      double last = -1;
      for (int i = 0; i < 25; ++i) {
        auto res = client.Get("/metrics");
        if (!res || res->status != 200) continue;
        auto parsed = testing::ParseExposition(res->body);
        if (!parsed.ok()) continue;
        const double v = *parsed->Value("demo_requests_total");
        EXPECT_GE(v, last);  // a counter never goes back
        last = v;
        ok.fetch_add(1);
      }
    });
  }
  for (auto& s : scrapers) s.join();
  stop = true;
  writer.join();
  EXPECT_EQ(ok.load(), 100);
}

TEST_F(MetricsHttpServerTest, StopIsIdempotentAndFreesThePort) {
  const int port = server_->port();
  server_->Stop();
  server_->Stop();
  httplib::Client client("127.0.0.1", port);
  client.set_connection_timeout(1);
  EXPECT_FALSE(client.Get("/healthz"));
  // The port can be bound again.
  MetricsHttpOptions options;
  options.host = "127.0.0.1";
  options.port = port;
  auto again = MetricsHttpServer::Start(&registry_, options);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ((*again)->port(), port);
}

TEST(MetricsHttpServerErrorsTest, ReportsBadOptions) {
  Registry registry;
  MetricsHttpOptions options;
  options.host = "127.0.0.1";

  options.port = 70000;
  EXPECT_EQ(MetricsHttpServer::Start(&registry, options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.port = 0;
  options.threads = 0;
  EXPECT_EQ(MetricsHttpServer::Start(&registry, options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.threads = 1;
  EXPECT_EQ(MetricsHttpServer::Start(nullptr, options).status().code(),
            absl::StatusCode::kInvalidArgument);

  // A port already in use.
  auto first = MetricsHttpServer::Start(&registry, options);
  ASSERT_TRUE(first.ok());
  options.port = (*first)->port();
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> second =
      MetricsHttpServer::Start(&registry, options);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(second.status().message()), HasSubstr(std::to_string(options.port)));

  // An address that is not this machine's (TEST-NET-1, RFC 5737).
  options.host = "192.0.2.1";
  options.port = 0;
  EXPECT_EQ(MetricsHttpServer::Start(&registry, options).status().code(),
            absl::StatusCode::kUnavailable);
}

TEST(MetricsHttpServerIpv6Test, BracketsIpv6Addresses) {
  Registry registry;
  MetricsHttpOptions options;
  options.host = "::1";
  options.port = 0;
  auto server = MetricsHttpServer::Start(&registry, options);
  if (!server.ok()) GTEST_SKIP() << "no IPv6 loopback here: " << server.status();
  EXPECT_EQ((*server)->address(), "[::1]:" + std::to_string((*server)->port()));
}

}  // namespace
}  // namespace mamba::metrics
