#include "engine/prefix_cache/prefix_tree.h"

#include <cstdint>
#include <map>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace mamba::prefix_cache {
namespace {

using Tokens = std::vector<int32_t>;

TEST(PrefixTreeTest, LongestPrefixWithinTheLimit) {
  PrefixTree tree;
  EXPECT_EQ(tree.Insert({1, 2, 3}, 10), 10u);
  EXPECT_EQ(tree.Insert({1, 2, 3, 4, 5}, 11), 11u);
  EXPECT_EQ(tree.Insert({1, 2, 9}, 12), 12u);  // splits the edge 1 2 3
  EXPECT_EQ(tree.Insert({1, 2, 3}, 13), 10u);  // already there: the old entry stays
  EXPECT_EQ(tree.entries(), 3);

  const Tokens query = {1, 2, 3, 4, 5, 6};
  EXPECT_EQ(tree.Longest(query, 100).entry, 11u);
  EXPECT_EQ(tree.Longest(query, 100).length, 5);
  EXPECT_EQ(tree.Longest(query, 4).entry, 10u);  // 5 tokens would exceed the limit
  EXPECT_EQ(tree.Longest(query, 2).entry, 0u);
  EXPECT_EQ(tree.Longest({1, 2, 9, 9}, 100).entry, 12u);
  EXPECT_EQ(tree.Longest({1, 2}, 100).entry, 0u);   // a prefix of entries is not an entry
  EXPECT_EQ(tree.Longest({7}, 100).entry, 0u);
  EXPECT_EQ(tree.Find({1, 2, 3, 4, 5}), 11u);
  EXPECT_EQ(tree.Find({1, 2, 3, 4}), 0u);
}

TEST(PrefixTreeTest, EraseOnlyTheRightEntryAndPrune) {
  PrefixTree tree;
  tree.Insert({1, 2, 3}, 1);
  tree.Insert({1, 2, 3, 4}, 2);
  tree.Insert({1, 5}, 3);
  EXPECT_FALSE(tree.Erase({1, 2, 3}, 2));  // another entry's tokens
  EXPECT_FALSE(tree.Erase({1, 2}, 1));     // not an entry
  EXPECT_TRUE(tree.Erase({1, 2, 3}, 1));
  EXPECT_EQ(tree.Longest({1, 2, 3, 4}, 10).entry, 2u);
  EXPECT_EQ(tree.Longest({1, 2, 3}, 10).entry, 0u);
  EXPECT_TRUE(tree.Erase({1, 2, 3, 4}, 2));
  EXPECT_TRUE(tree.Erase({1, 5}, 3));
  EXPECT_EQ(tree.entries(), 0);
  EXPECT_EQ(tree.nodes(), 0);
}

// Random operations against a naive map of sequences: the same answers, and pruning keeps the
// tree at most twice as many nodes as entries.
TEST(PrefixTreeTest, AgreesWithANaiveModel) {
  std::mt19937 rng(7);
  PrefixTree tree;
  std::map<Tokens, uint64_t> model;
  uint64_t next = 1;
  auto random_tokens = [&](int max_len) {
    Tokens t(1 + rng() % max_len);
    for (int32_t& x : t) x = static_cast<int32_t>(rng() % 3);  // few tokens: many shared prefixes
    return t;
  };
  for (int step = 0; step < 20000; ++step) {
    const int op = static_cast<int>(rng() % 4);
    const Tokens t = random_tokens(8);
    if (op == 0) {
      const uint64_t got = tree.Insert(t, next);
      auto [it, inserted] = model.emplace(t, next);
      EXPECT_EQ(got, it->second);
      if (inserted) ++next;
    } else if (op == 1 && !model.empty()) {
      auto it = model.begin();
      std::advance(it, rng() % model.size());
      EXPECT_TRUE(tree.Erase(it->first, it->second));
      model.erase(it);
    } else {
      const int64_t limit = static_cast<int64_t>(rng() % 10);
      PrefixTree::Match expected;
      for (const auto& [seq, id] : model) {
        if (static_cast<int64_t>(seq.size()) <= limit && seq.size() <= t.size() &&
            std::equal(seq.begin(), seq.end(), t.begin()) &&
            static_cast<int64_t>(seq.size()) > expected.length) {
          expected = {id, static_cast<int64_t>(seq.size())};
        }
      }
      const PrefixTree::Match got = tree.Longest(t, limit);
      EXPECT_EQ(got.entry, expected.entry);
      EXPECT_EQ(got.length, expected.length);
      auto exact = model.find(t);
      EXPECT_EQ(tree.Find(t), exact == model.end() ? 0u : exact->second);
    }
    ASSERT_EQ(tree.entries(), static_cast<int64_t>(model.size()));
    ASSERT_LE(tree.nodes(), 2 * tree.entries());
  }
}

}  // namespace
}  // namespace mamba::prefix_cache
