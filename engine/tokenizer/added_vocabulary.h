// Finding added tokens (special or not) in text, as Hugging Face's AddedVocabulary does: the
// leftmost match wins, the longest token among those starting there, and matches do not
// overlap; then each token's flags apply:
//   single_word  the match counts only when no word character (Rust regex \w) touches it
//   lstrip       the match takes the white space before it (not reaching into an earlier match)
//   rstrip       the match takes the white space after it
// A match dropped by single_word still consumes its text, exactly as the reference does.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"

namespace mamba::tokenizer::internal {

struct AddedTokenSpec {
  std::string pattern;  // what is matched (the content, normalized when the token is)
  int32_t id = 0;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
};

// A piece of the text: an added token (id >= 0) or text to encode further (id == -1), as a byte
// range of the searched text. Ranges are in order; with rstrip they can overlap the next one,
// as in the reference implementation.
struct AddedTokenSplit {
  size_t begin;
  size_t end;
  int32_t id;
};

class AddedTokenMatcher {
 public:
  AddedTokenMatcher() : AddedTokenMatcher(std::vector<AddedTokenSpec>()) {}
  // Tokens with an empty pattern are ignored; for equal patterns the last one wins.
  explicit AddedTokenMatcher(const std::vector<AddedTokenSpec>& tokens);

  bool empty() const { return tokens_.empty(); }

  // Splits `text` (valid UTF-8) around the tokens it contains; writes the splits to *out.
  void Split(std::string_view text, std::vector<AddedTokenSplit>* out) const;

 private:
  // Length of the longest token starting at text[pos] (0: none); *token gets its index.
  size_t LongestAt(std::string_view text, size_t pos, int32_t* token) const;

  std::vector<AddedTokenSpec> tokens_;
  // A byte trie: key (node << 8 | byte) -> child node; node 0 is the root. Most text bytes
  // start no token, and most that do are not followed by a second byte of one (a space before
  // a word, with GPT-NeoX's space-run tokens), so the root's children are a table and every
  // node has a bitmap of the bytes that continue it: the hash map is only asked for edges
  // that exist.
  absl::flat_hash_map<uint64_t, int32_t> edges_;
  std::vector<int32_t> terminal_;              // node -> index into tokens_, or -1
  std::vector<std::array<uint64_t, 4>> next_;  // node -> bytes with an edge
  int32_t root_child_[256];
  int single_first_byte_ = -1;  // the first byte of every token, when they share one
};

}  // namespace mamba::tokenizer::internal
