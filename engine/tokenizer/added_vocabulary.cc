#include "engine/tokenizer/added_vocabulary.h"

#include <algorithm>
#include <cstring>

#include "engine/tokenizer/unicode_classes.h"

namespace mamba::tokenizer::internal {
namespace {

bool EndsWithWordChar(std::string_view s) {
  if (s.empty()) return false;
  const size_t start = PreviousCodePointStart(s, s.size());
  size_t next;
  return IsWordChar(DecodeCodePoint(s, start, &next));
}

bool StartsWithWordChar(std::string_view s) {
  if (s.empty()) return false;
  size_t next;
  return IsWordChar(DecodeCodePoint(s, 0, &next));
}

// Start of the white space that ends `s` (Rust regex `\s*$`).
size_t TrailingSpaceStart(std::string_view s) {
  size_t i = s.size();
  while (i > 0) {
    const size_t start = PreviousCodePointStart(s, i);
    size_t next;
    if (!IsWhiteSpace(DecodeCodePoint(s, start, &next))) break;
    i = start;
  }
  return i;
}

// Length of the white space that starts `s` (Rust regex `^\s*`).
size_t LeadingSpaceLength(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    size_t next;
    if (!IsWhiteSpace(DecodeCodePoint(s, i, &next))) break;
    i = next;
  }
  return i;
}

}  // namespace

AddedTokenMatcher::AddedTokenMatcher(const std::vector<AddedTokenSpec>& tokens) {
  terminal_.push_back(-1);
  next_.push_back({});
  for (const AddedTokenSpec& token : tokens) {
    if (token.pattern.empty()) continue;
    int32_t node = 0;
    for (char c : token.pattern) {
      const auto b = static_cast<uint8_t>(c);
      const uint64_t key = (static_cast<uint64_t>(node) << 8) | b;
      auto it = edges_.find(key);
      if (it == edges_.end()) {
        const auto child = static_cast<int32_t>(terminal_.size());
        terminal_.push_back(-1);
        next_.push_back({});
        next_[node][b >> 6] |= uint64_t{1} << (b & 63);
        it = edges_.emplace(key, child).first;
      }
      node = it->second;
    }
    if (terminal_[node] >= 0) {
      tokens_[terminal_[node]] = token;
    } else {
      terminal_[node] = static_cast<int32_t>(tokens_.size());
      tokens_.push_back(token);
    }
  }
  int first_bytes = 0;
  for (int b = 0; b < 256; ++b) {
    const auto it = edges_.find(static_cast<uint64_t>(b));
    root_child_[b] = it == edges_.end() ? -1 : it->second;
    if (root_child_[b] >= 0) {
      ++first_bytes;
      single_first_byte_ = b;
    }
  }
  if (first_bytes != 1) single_first_byte_ = -1;
}

size_t AddedTokenMatcher::LongestAt(std::string_view text, size_t pos, int32_t* token) const {
  int32_t node = root_child_[static_cast<uint8_t>(text[pos])];
  size_t best = 0;
  if (terminal_[node] >= 0) {
    best = 1;
    *token = terminal_[node];
  }
  for (size_t i = pos + 1; i < text.size(); ++i) {
    const auto b = static_cast<uint8_t>(text[i]);
    if (((next_[node][b >> 6] >> (b & 63)) & 1) == 0) break;
    node = edges_.find((static_cast<uint64_t>(node) << 8) | b)->second;
    if (terminal_[node] >= 0) {
      best = i + 1 - pos;
      *token = terminal_[node];
    }
  }
  return best;
}

void AddedTokenMatcher::Split(std::string_view text, std::vector<AddedTokenSplit>* out) const {
  out->clear();
  size_t start_offset = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    if (single_first_byte_ >= 0) {
      // One possible first byte (GPT-NeoX's "<|...|>" specials, or its space runs): memchr.
      const void* found = std::memchr(text.data() + pos, single_first_byte_, text.size() - pos);
      if (found == nullptr) break;
      pos = static_cast<size_t>(static_cast<const char*>(found) - text.data());
    } else if (root_child_[static_cast<uint8_t>(text[pos])] < 0) {
      ++pos;
      continue;
    }
    int32_t index = -1;
    const size_t length = LongestAt(text, pos, &index);
    if (length == 0) {
      ++pos;
      continue;
    }
    const AddedTokenSpec& token = tokens_[index];
    size_t start = pos;
    size_t stop = pos + length;
    pos = stop;  // the search resumes after the match, whatever the flags decide
    if (token.single_word) {
      const bool space_before = start == 0 || !EndsWithWordChar(text.substr(0, start));
      const bool space_after = stop == text.size() || !StartsWithWordChar(text.substr(stop));
      if (!space_before || !space_after) continue;
    }
    if (token.lstrip) {
      start = std::max(TrailingSpaceStart(text.substr(0, start)), start_offset);
    }
    if (token.rstrip) stop += LeadingSpaceLength(text.substr(stop));
    if (start_offset < start) out->push_back({start_offset, start, -1});
    out->push_back({start, stop, token.id});
    start_offset = stop;
  }
  if (start_offset != text.size()) out->push_back({start_offset, text.size(), -1});
}

}  // namespace mamba::tokenizer::internal
