// The load tester's guards: which targets count as loopback, which plans are complete, and the
// shape of client-chosen session ids.
#include "client/load_runner.h"

#include <regex>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mamba::client::load {
namespace {

using ::testing::HasSubstr;

TEST(LoopbackTargetTest, AcceptsLocalTargets) {
  for (const char* target :
       {"127.0.0.1:50051", "127.3.4.5:1", "localhost:50051", "[::1]:50051", "::1",
        "dns:///localhost:50051", "dns:localhost:5", "ipv4:127.0.0.1:1,127.0.0.2:2",
        "ipv6:[::1]:7", "unix:/run/mamba.sock", "unix-abstract:mamba"}) {
    EXPECT_TRUE(CheckLoopbackTarget(target).ok()) << target << ": " << CheckLoopbackTarget(target);
  }
}

TEST(LoopbackTargetTest, RefusesOtherAddressesNamingThem) {
  for (const char* target : {"10.1.2.3:50051", "8.8.8.8:53", "[2001:db8::1]:50051",
                             "ipv4:127.0.0.1:1,192.168.0.1:2", "dns:///10.0.0.7:80",
                             "[::ffff:10.0.0.1]:5"}) {
    absl::Status status = CheckLoopbackTarget(target);
    ASSERT_FALSE(status.ok()) << target;
    EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied) << target;
    EXPECT_THAT(std::string(status.message()), HasSubstr("not a loopback address")) << target;
    EXPECT_THAT(std::string(status.message()), HasSubstr("--allow_remote")) << target;
  }
  EXPECT_FALSE(CheckLoopbackTarget(":50051").ok());
  EXPECT_FALSE(CheckLoopbackTarget("xds:///service").ok());
}

TEST(RunPlanTest, NeedsABoundUnlessSessions) {
  RunPlan closed;
  closed.concurrency = 4;
  absl::Status unbounded = ValidatePlan(closed);
  ASSERT_FALSE(unbounded.ok());
  EXPECT_THAT(std::string(unbounded.message()), HasSubstr("--requests=N and/or --duration"));
  closed.max_requests = 10;
  EXPECT_TRUE(ValidatePlan(closed).ok());
  closed.max_requests = 0;
  closed.duration = absl::Seconds(3);
  EXPECT_TRUE(ValidatePlan(closed).ok());
  closed.concurrency = 0;
  EXPECT_FALSE(ValidatePlan(closed).ok());

  RunPlan open;
  open.mode = RunPlan::Mode::kOpen;
  open.max_requests = 5;
  open.concurrency = 0;  // no cap
  EXPECT_FALSE(ValidatePlan(open).ok());  // no rate
  open.rate = 2.5;
  EXPECT_TRUE(ValidatePlan(open).ok());
  open.burstiness = 0;
  EXPECT_FALSE(ValidatePlan(open).ok());

  RunPlan sessions;
  sessions.mode = RunPlan::Mode::kSessions;
  sessions.sessions = 3;
  sessions.turns = 2;
  EXPECT_TRUE(ValidatePlan(sessions).ok());  // bounded by sessions x turns
  sessions.turns = 0;
  EXPECT_FALSE(ValidatePlan(sessions).ok());
}

TEST(SessionIdTest, ThirtyTwoLowercaseHexDigitsAndFresh) {
  const std::string a = RandomSessionId();
  const std::string b = RandomSessionId();
  EXPECT_TRUE(std::regex_match(a, std::regex("[0-9a-f]{32}"))) << a;
  EXPECT_NE(a, b);
}

}  // namespace
}  // namespace mamba::client::load
