// The BPE model: merges applied to the symbols of one pre-tokenized word, lowest rank first,
// exactly as Hugging Face's BPE (Word::merge_all) applies them. Two kinds of vocabulary:
//
//   byte-level  written in GPT-2's byte-level alphabet; the model works on raw bytes and ids
//               instead (byte -> id table), so no text is re-encoded per word.
//   characters  plain text (SentencePiece-converted files, "▁" for spaces): a word's symbols
//               are its characters; one without a token becomes the <0xNN> tokens of its UTF-8
//               bytes (byte_fallback), else unk_token, else nothing.
//
// Merges are a (left id, right id) -> (rank, merged id) hash map. Encoded words are cached per
// thread: a table that grows with use, cleared at 65536 words (at most about 8 MB for a thread
// that encodes megabytes of varied text; a few hundred kB for one that encodes chat prompts).
//
// Files without a pre-tokenizer make every piece of text one long word. Such a word is cut
// where no merge can ever join the characters on both sides (no merge has that pair of
// characters at its junction, and both characters have tokens): merging the parts alone gives
// the same ids, and the parts, words in practice, hit the cache.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"

namespace mamba::tokenizer::internal {

struct BpeOptions {
  bool ignore_merges = false;
  std::optional<int32_t> unk_id;  // id of unk_token for bytes missing from the vocabulary
  bool fuse_unk = false;
  bool byte_level = true;      // false: a vocabulary of characters
  bool byte_fallback = false;  // characters only: <0xNN> tokens for characters without a token
};

class BpeModel {
 public:
  // `vocab`: token (byte-level alphabet, or characters) -> id. `merges`: pairs of tokens in rank
  // order (a pair given twice keeps its last rank, as in the reference). Fails when a merge
  // names a token, or produces one, that is not in the vocabulary.
  static absl::StatusOr<BpeModel> Create(
      const absl::flat_hash_map<std::string, int32_t>& vocab,
      const std::vector<std::pair<std::string, std::string>>& merges, BpeOptions options);

  BpeModel(BpeModel&& other) noexcept = default;
  BpeModel& operator=(BpeModel&& other) noexcept = default;
  BpeModel(const BpeModel&) = delete;
  BpeModel& operator=(const BpeModel&) = delete;

  // Appends the ids of `word` (raw bytes, or valid UTF-8 for a vocabulary of characters;
  // non-empty). Bytes (characters) without a token become unk_id, or are dropped when there is
  // none (as the reference does).
  void EncodeWord(std::string_view word, std::vector<int32_t>* out) const;

  size_t num_merges() const { return merges_.size(); }

 private:
  BpeModel() = default;
  // Byte-level: the bytes' symbols, merged.
  void MergeWord(std::string_view word, std::vector<int32_t>* out) const;
  // Characters: ignore_merges, then the cache, then MergeCharacters, part by part.
  void EncodeCharacterWord(std::string_view word, std::vector<int32_t>* out) const;
  // Characters: one part of a word through the cache.
  void EncodeCharacterPart(std::string_view part, std::vector<int32_t>* out) const;
  void MergeCharacters(std::string_view word, std::vector<int32_t>* out) const;
  // Merges `symbols` (the scratch's) in rank order and appends the ids left.
  void MergeSymbols(std::vector<int32_t>* out) const;
  // The token of one character, or -1.
  int32_t CharacterId(char32_t c) const {
    if (c < 0x80) return ascii_ids_[c];
    const auto it = char_ids_.find(c);
    return it == char_ids_.end() ? -1 : it->second;
  }

  uint64_t cache_owner_ = 0;  // unique per model, keys the thread-local word cache
  int32_t byte_ids_[256];
  BpeOptions options_;
  // (left << 32 | right) -> (rank << 32 | merged id)
  absl::flat_hash_map<uint64_t, uint64_t> merges_;
  // ignore_merges: raw bytes of every vocabulary token -> id
  absl::flat_hash_map<std::string, int32_t> raw_vocab_;
  // Characters: tokens of single characters (ASCII in a table), and of <0xNN> bytes (-1: none).
  int32_t ascii_ids_[128];
  absl::flat_hash_map<char32_t, int32_t> char_ids_;
  int32_t fallback_ids_[256];
  // Characters: (last character of left << 32 | first character of right) of every merge.
  absl::flat_hash_set<uint64_t> junctions_;
};

}  // namespace mamba::tokenizer::internal
