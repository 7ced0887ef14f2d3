#include "server/metrics/request_log.h"

#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mamba::metrics {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;

absl::Time FixedTime() { return absl::FromUnixMillis(1767323045678); }  // 2026-01-02T03:04:05.678Z

class LogCapture {
 public:
  Logger::Sink Sink() {
    return [this](std::string_view line) {
      std::lock_guard<std::mutex> lock(mu_);
      lines_.emplace_back(line);
    };
  }
  std::vector<std::string> lines() {
    std::lock_guard<std::mutex> lock(mu_);
    return lines_;
  }

 private:
  std::mutex mu_;
  std::vector<std::string> lines_;
};

TEST(LogLevelTest, Parses) {
  struct Case {
    const char* text;
    LogLevel level;
  } cases[] = {{"debug", LogLevel::kDebug},  {"info", LogLevel::kInfo},
               {"INFO", LogLevel::kInfo},    {"warning", LogLevel::kWarning},
               {"warn", LogLevel::kWarning}, {"error", LogLevel::kError}};
  for (const Case& c : cases) {
    absl::StatusOr<LogLevel> l = ParseLogLevel(c.text);
    ASSERT_TRUE(l.ok()) << c.text;
    EXPECT_EQ(*l, c.level) << c.text;
  }
  for (const char* bad : {"", "verbose", "fatal", "inf"}) {
    absl::StatusOr<LogLevel> l = ParseLogLevel(bad);
    EXPECT_EQ(l.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(std::string(l.status().message()), HasSubstr("debug, info, warning, error"));
  }
}

TEST(LoggerTest, FormatsOneJsonObjectPerLine) {
  LogCapture capture;
  Logger logger(LogLevel::kInfo, capture.Sink(), FixedTime);
  logger.Info("hello", {{"n", 3},
                        {"ratio", 0.5},
                        {"ok", true},
                        {"name", "x\"y\\z\n"},
                        {"none", nullptr},
                        {"nan", std::nan("")},
                        {"msg", "collides"}});
  ASSERT_EQ(capture.lines().size(), 1u);
  const std::string line = capture.lines()[0];
  ASSERT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1);  // escaped, never a raw line feed inside
  EXPECT_EQ(
      line.rfind("{\"ts\":\"2026-01-02T03:04:05.678Z\",\"level\":\"info\",\"msg\":\"hello\",", 0),
      0u)
      << line;
  Json j = Json::parse(line);
  EXPECT_EQ(j["n"], 3);
  EXPECT_EQ(j["ratio"], 0.5);
  EXPECT_EQ(j["ok"], true);
  EXPECT_EQ(j["name"], "x\"y\\z\n");
  EXPECT_TRUE(j["none"].is_null());
  EXPECT_TRUE(j["nan"].is_null());
  EXPECT_EQ(j["msg"], "hello");      // the standard field wins
  EXPECT_EQ(j["_msg"], "collides");  // the caller's is kept under another name
}

TEST(LoggerTest, ReplacesInvalidUtf8) {
  LogCapture capture;
  Logger logger(LogLevel::kInfo, capture.Sink(), FixedTime);
  logger.Warning("bad bytes", {{"value", "ok\xff\xfe"}});
  ASSERT_EQ(capture.lines().size(), 1u);
  Json j = Json::parse(capture.lines()[0]);
  EXPECT_EQ(j["value"], "ok\xef\xbf\xbd\xef\xbf\xbd");  // two U+FFFD
  EXPECT_EQ(j["level"], "warning");
}

TEST(LoggerTest, FiltersByLevel) {
  LogCapture capture;
  Logger logger(LogLevel::kWarning, capture.Sink(), FixedTime);
  logger.Debug("d");
  logger.Info("i");
  logger.Warning("w");
  logger.Error("e");
  ASSERT_EQ(capture.lines().size(), 2u);
  EXPECT_THAT(capture.lines()[0], HasSubstr("\"msg\":\"w\""));
  EXPECT_THAT(capture.lines()[1], HasSubstr("\"level\":\"error\""));
  logger.set_level(LogLevel::kDebug);
  logger.Debug("d2");
  EXPECT_EQ(capture.lines().size(), 3u);
  EXPECT_TRUE(logger.enabled(LogLevel::kDebug));
}

TEST(LoggerTest, LinesFromManyThreadsStayWhole) {
  LogCapture capture;
  Logger logger(LogLevel::kInfo, capture.Sink());
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&logger, t] {
      for (int i = 0; i < 200; ++i) logger.Info("tick", {{"thread", t}, {"i", i}});
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_EQ(capture.lines().size(), 1600u);
  for (const std::string& l : capture.lines()) {
    EXPECT_FALSE(Json::parse(l, nullptr, false).is_discarded()) << l;
  }
}

TEST(RequestLogTest, GenerateRequestLine) {
  LogCapture capture;
  Logger logger(LogLevel::kInfo, capture.Sink(), FixedTime);
  RequestRecord r;
  r.request_id = "req-7";
  r.session_id = "0123456789abcdef0123456789abcdef";
  r.method = "Generate";
  r.prompt_tokens = 12;
  r.generated_tokens = 16;
  r.cached_tokens = 40;
  r.time_to_first_token = absl::Microseconds(12345);
  r.e2e = absl::Milliseconds(456);
  r.finish_reason = "length";
  LogRequest(logger, r);
  ASSERT_EQ(capture.lines().size(), 1u);
  EXPECT_EQ(capture.lines()[0],
            "{\"ts\":\"2026-01-02T03:04:05.678Z\",\"level\":\"info\",\"msg\":\"request\","
            "\"request_id\":\"req-7\",\"session_id\":\"0123456789abcdef0123456789abcdef\","
            "\"protocol\":\"grpc\",\"method\":\"Generate\",\"code\":\"OK\",\"error\":null,"
            "\"prompt_tokens\":12,"
            "\"generated_tokens\":16,\"cached_tokens\":40,\"ttft_seconds\":0.012345,"
            "\"e2e_seconds\":0.456,\"finish_reason\":\"length\"}\n");
}

TEST(RequestLogTest, FailedRequestLine) {
  LogCapture capture;
  Logger logger(LogLevel::kInfo, capture.Sink(), FixedTime);
  RequestRecord r;
  r.request_id = "req-8";
  r.method = "Generate";
  r.code = absl::StatusCode::kInvalidArgument;
  r.error_message = "max_tokens 0 is outside [1, 4096]";
  r.e2e = absl::Microseconds(80);
  LogRequest(logger, r);
  ASSERT_EQ(capture.lines().size(), 1u);
  Json j = Json::parse(capture.lines()[0]);
  EXPECT_EQ(j["code"], "INVALID_ARGUMENT");
  EXPECT_EQ(j["error"], "max_tokens 0 is outside [1, 4096]");
  EXPECT_EQ(j["session_id"], "");
  EXPECT_TRUE(j["ttft_seconds"].is_null());
  EXPECT_TRUE(j["finish_reason"].is_null());
  EXPECT_EQ(j["e2e_seconds"], 0.00008);
  EXPECT_EQ(j["generated_tokens"], 0);
}

// A server fault is logged at error level; client-supplied strings are bounded.
TEST(RequestLogTest, ServerFaultsAreErrorsAndClientStringsAreBounded) {
  LogCapture capture;
  Logger logger(LogLevel::kWarning, capture.Sink(), FixedTime);
  RequestRecord r;
  r.method = "Generate";
  r.session_id = std::string(5 << 20, 'a');  // a 5 MB malformed id
  r.request_id = std::string(300, 'r');
  r.code = absl::StatusCode::kInternal;
  r.error_message = "generation failed: the logits are not finite";
  LogRequest(logger, r);
  ASSERT_EQ(capture.lines().size(), 1u);  // shown although the level is warning
  EXPECT_LT(capture.lines()[0].size(), 2048u);
  Json j = Json::parse(capture.lines()[0]);
  EXPECT_EQ(j["level"], "error");
  EXPECT_EQ(j["session_id"], std::string(kMaxLoggedIdBytes, 'a') + "...(5242880 bytes)");
  EXPECT_EQ(j["request_id"], std::string(kMaxLoggedIdBytes, 'r') + "...(300 bytes)");
  r.code = absl::StatusCode::kInvalidArgument;  // a client's mistake: info, hidden here
  LogRequest(logger, r);
  EXPECT_EQ(capture.lines().size(), 1u);
  // Cutting never splits a UTF-8 character.
  EXPECT_EQ(BoundedForLog("\xc3\xa9\xc3\xa9", 3), "\xc3\xa9...(4 bytes)");
}

TEST(RequestLogTest, SilentAboveInfo) {
  LogCapture capture;
  Logger logger(LogLevel::kWarning, capture.Sink(), FixedTime);
  LogRequest(logger, RequestRecord{});
  EXPECT_TRUE(capture.lines().empty());
}

TEST(RequestLogTest, GrpcCodeNames) {
  EXPECT_STREQ(GrpcCodeName(absl::StatusCode::kOk), "OK");
  EXPECT_STREQ(GrpcCodeName(absl::StatusCode::kDeadlineExceeded), "DEADLINE_EXCEEDED");
  EXPECT_STREQ(GrpcCodeName(absl::StatusCode::kUnauthenticated), "UNAUTHENTICATED");
  EXPECT_STREQ(GrpcCodeName(static_cast<absl::StatusCode>(17)), "UNKNOWN");
  // Every gRPC code 0..16 has its own name.
  std::set<std::string> names;
  for (int c = 0; c <= 16; ++c) names.insert(GrpcCodeName(static_cast<absl::StatusCode>(c)));
  EXPECT_EQ(names.size(), 17u);
}

}  // namespace
}  // namespace mamba::metrics
