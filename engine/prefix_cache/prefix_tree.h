// A radix tree over token ids: which token sequences have a cached state, found by the longest one
// that is a prefix of a request's tokens. Edges carry runs of tokens (a path compressed into one
// edge until it branches or holds an entry), so a lookup costs O(length of the tokens) and never
// more, whatever the number of entries. Entries are opaque ids; the tree stores no states.
//
// Thread-safety: none; the prefix cache uses it on the scheduler thread only.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "absl/types/span.h"

namespace mamba::prefix_cache {

class PrefixTree {
 public:
  PrefixTree();
  ~PrefixTree();
  PrefixTree(const PrefixTree&) = delete;
  PrefixTree& operator=(const PrefixTree&) = delete;

  struct Match {
    uint64_t entry = 0;  // 0: none
    int64_t length = 0;  // tokens of the entry's sequence
  };

  // The entry whose sequence is the longest prefix of `tokens` with at most `max_length` tokens
  // (entry 0 when none is).
  Match Longest(absl::Span<const int32_t> tokens, int64_t max_length) const;
  // The entry of exactly `tokens`, or 0.
  uint64_t Find(absl::Span<const int32_t> tokens) const;

  // Marks `tokens` (at least one) as held by `entry` (nonzero). Returns the entry already there,
  // leaving it, or `entry` when it was added.
  uint64_t Insert(absl::Span<const int32_t> tokens, uint64_t entry);
  // Removes the entry of exactly `tokens` (which must be `entry`) and prunes the nodes it no
  // longer needs. False when `tokens` does not hold `entry`.
  bool Erase(absl::Span<const int32_t> tokens, uint64_t entry);

  int64_t entries() const { return entries_; }
  // Nodes besides the root (for tests: pruning keeps it at most 2 x entries).
  int64_t nodes() const { return nodes_; }

 private:
  struct Node {
    std::vector<int32_t> label;  // the tokens of the edge from the parent
    std::map<int32_t, std::unique_ptr<Node>> children;  // by the first token of their label
    Node* parent = nullptr;
    uint64_t entry = 0;
  };
  // The node that ends exactly at `tokens`, or null.
  Node* FindNode(absl::Span<const int32_t> tokens) const;
  // Removes `node` if it holds no entry and has no children, and merges a parent left with one
  // child and no entry into that child; repeats upwards.
  void Prune(Node* node);

  std::unique_ptr<Node> root_;
  int64_t entries_ = 0;
  int64_t nodes_ = 0;
};

}  // namespace mamba::prefix_cache
