#include "engine/prefix_cache/prefix_tree.h"

#include <algorithm>
#include <utility>

namespace mamba::prefix_cache {
namespace {

// Tokens `label` and `tokens` share from the start.
size_t Common(const std::vector<int32_t>& label, absl::Span<const int32_t> tokens) {
  const size_t n = std::min(label.size(), tokens.size());
  size_t i = 0;
  while (i < n && label[i] == tokens[i]) ++i;
  return i;
}

}  // namespace

PrefixTree::PrefixTree() : root_(std::make_unique<Node>()) {}
PrefixTree::~PrefixTree() = default;

PrefixTree::Match PrefixTree::Longest(absl::Span<const int32_t> tokens, int64_t max_length) const {
  Match best;
  const Node* node = root_.get();
  size_t pos = 0;
  while (true) {
    if (node->entry != 0 && static_cast<int64_t>(pos) <= max_length) {
      best = {node->entry, static_cast<int64_t>(pos)};
    }
    if (pos >= tokens.size() || static_cast<int64_t>(pos) >= max_length) break;
    auto it = node->children.find(tokens[pos]);
    if (it == node->children.end()) break;
    const Node* child = it->second.get();
    if (Common(child->label, tokens.subspan(pos)) < child->label.size()) break;
    pos += child->label.size();
    node = child;
  }
  return best;
}

PrefixTree::Node* PrefixTree::FindNode(absl::Span<const int32_t> tokens) const {
  Node* node = root_.get();
  size_t pos = 0;
  while (pos < tokens.size()) {
    auto it = node->children.find(tokens[pos]);
    if (it == node->children.end()) return nullptr;
    Node* child = it->second.get();
    if (Common(child->label, tokens.subspan(pos)) < child->label.size()) return nullptr;
    pos += child->label.size();
    node = child;
  }
  return node;
}

uint64_t PrefixTree::Find(absl::Span<const int32_t> tokens) const {
  const Node* node = FindNode(tokens);
  return node == nullptr ? 0 : node->entry;
}

uint64_t PrefixTree::Insert(absl::Span<const int32_t> tokens, uint64_t entry) {
  if (tokens.empty() || entry == 0) return 0;
  Node* node = root_.get();
  size_t pos = 0;
  while (pos < tokens.size()) {
    const absl::Span<const int32_t> rest = tokens.subspan(pos);
    auto it = node->children.find(rest[0]);
    if (it == node->children.end()) {
      auto leaf = std::make_unique<Node>();
      leaf->label.assign(rest.begin(), rest.end());
      leaf->parent = node;
      node = (node->children[rest[0]] = std::move(leaf)).get();
      ++nodes_;
      pos = tokens.size();
      break;
    }
    Node* child = it->second.get();
    const size_t common = Common(child->label, rest);
    if (common < child->label.size()) {
      // Split the edge: a new node for the shared part, the old child below it.
      auto middle = std::make_unique<Node>();
      middle->label.assign(child->label.begin(), child->label.begin() + common);
      middle->parent = node;
      std::unique_ptr<Node> old = std::move(it->second);
      old->label.erase(old->label.begin(), old->label.begin() + common);
      old->parent = middle.get();
      middle->children[old->label.front()] = std::move(old);
      child = (it->second = std::move(middle)).get();
      ++nodes_;
    }
    pos += common;
    node = child;
  }
  if (node->entry != 0) return node->entry;
  node->entry = entry;
  ++entries_;
  return entry;
}

bool PrefixTree::Erase(absl::Span<const int32_t> tokens, uint64_t entry) {
  Node* node = FindNode(tokens);
  if (node == nullptr || node == root_.get() || node->entry != entry || entry == 0) return false;
  node->entry = 0;
  --entries_;
  Prune(node);
  return true;
}

void PrefixTree::Prune(Node* node) {
  while (node != root_.get() && node->entry == 0) {
    Node* parent = node->parent;
    if (node->children.empty()) {
      parent->children.erase(node->label.front());  // destroys `node`
      --nodes_;
      node = parent;
      continue;
    }
    if (node->children.size() == 1) {
      // Merge the only child into this node's edge.
      std::unique_ptr<Node> child = std::move(node->children.begin()->second);
      node->children.clear();
      node->label.insert(node->label.end(), child->label.begin(), child->label.end());
      node->entry = child->entry;
      node->children = std::move(child->children);
      for (auto& [first, grandchild] : node->children) grandchild->parent = node;
      --nodes_;
    }
    break;
  }
}

}  // namespace mamba::prefix_cache
