// mamba-client's list flags (token ids, stop strings with escapes).
#include "client/flag_values.h"
#include "gtest/gtest.h"

namespace mamba::client {
namespace {

TEST(ClientFlagValuesTest, IdLists) {
  EXPECT_EQ(*ParseIdList("1,2,3", "ids"), (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(*ParseIdList(" 4 , 5 ", "ids"), (std::vector<int32_t>{4, 5}));
  EXPECT_TRUE(ParseIdList("", "ids")->empty());
  EXPECT_EQ(*ParseIdList("-1", "ids"), std::vector<int32_t>{-1});  // the server judges range
  absl::StatusOr<std::vector<int32_t>> bad = ParseIdList("1,x", "prompt_ids");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(std::string(bad.status().message()).find("--prompt_ids"), std::string::npos);
  EXPECT_FALSE(ParseIdList("1,,2", "ids").ok());
  EXPECT_FALSE(ParseIdList("99999999999", "ids").ok());
}

TEST(ClientFlagValuesTest, StringListsWithEscapes) {
  EXPECT_EQ(*ParseStringList("a,b", "stop"), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(*ParseStringList("\\n", "stop"), (std::vector<std::string>{"\n"}));
  EXPECT_EQ(*ParseStringList("x\\,y,\\\\,\\t", "stop"),
            (std::vector<std::string>{"x,y", "\\", "\t"}));
  EXPECT_TRUE(ParseStringList("", "stop")->empty());
  EXPECT_EQ(*ParseStringList("a,", "stop"), (std::vector<std::string>{"a", ""}));
  EXPECT_FALSE(ParseStringList("a\\", "stop").ok());
  EXPECT_FALSE(ParseStringList("\\q", "stop").ok());
}

}  // namespace
}  // namespace mamba::client
