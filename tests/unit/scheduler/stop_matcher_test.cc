#include "engine/scheduler/stop_matcher.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace mamba {
namespace {

// Feeds `pieces` one by one; returns everything emitted (including the flush when no stop hit)
// and whether a stop string was hit.
std::pair<std::string, bool> Feed(std::vector<std::string> stops, std::vector<std::string> pieces) {
  scheduler::StopMatcher m(std::move(stops));
  std::string out;
  for (const std::string& p : pieces) {
    bool hit = false;
    out += m.Add(p, &hit);
    if (hit) return {out, true};
  }
  return {out + m.Flush(), false};
}

TEST(StopMatcherTest, Table) {
  struct Case {
    std::vector<std::string> stops;
    std::vector<std::string> pieces;
    std::string want;
    bool want_hit;
  };
  const std::vector<Case> cases = {
      {{}, {"Hello", " world"}, "Hello world", false},
      {{"\n"}, {"Hello", "\n", "more"}, "Hello", true},
      {{"END"}, {"abc E", "N", "D tail"}, "abc ", true},
      {{"END"}, {"abc E", "N", "x"}, "abc ENx", false},
      {{"END"}, {"abc EN"}, "abc EN", false},    // never completed: flushed at the end
      {{"###", "##"}, {"a#", "#b"}, "a", true},  // earliest occurrence wins
      {{"xyz", "yz"}, {"axyz"}, "a", true},
      {{"é"}, {"caf", "é au lait"}, "caf", true},
      {{"stop"}, {"stostop"}, "sto", true},
      {{""}, {"empty stop strings are ignored"}, "empty stop strings are ignored", false},
  };
  for (const Case& c : cases) {
    auto [got, hit] = Feed(c.stops, c.pieces);
    EXPECT_EQ(got, c.want) << "pieces[0]=" << c.pieces[0];
    EXPECT_EQ(hit, c.want_hit) << "pieces[0]=" << c.pieces[0];
  }
}

TEST(StopMatcherTest, HoldsBackOnlyPossibleStopPrefixes) {
  scheduler::StopMatcher m({"STOP"});
  bool hit = false;
  EXPECT_EQ(m.Add("abc S", &hit), "abc ");
  EXPECT_FALSE(hit);
  EXPECT_EQ(m.Add("T", &hit), "");
  EXPECT_EQ(m.Add("x", &hit), "STx");
  EXPECT_EQ(m.Flush(), "");
}

}  // namespace
}  // namespace mamba
