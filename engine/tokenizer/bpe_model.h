// The byte-level BPE model: merges applied to the bytes of one pre-tokenized word, lowest rank
// first, exactly as Hugging Face's BPE (Word::merge_all) applies them.
//
// The vocabulary arrives written in GPT-2's byte-level alphabet; the model works on raw bytes
// and ids instead (byte -> id table, (left id, right id) -> (rank, merged id) hash map), so no
// text is re-encoded per word. Encoded words are cached per thread: a table that grows with
// use, cleared at 65536 words (at most about 8 MB for a thread that encodes megabytes of
// varied text; a few hundred kB for one that encodes chat prompts).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"

namespace mamba::tokenizer::internal {

struct BpeOptions {
  bool ignore_merges = false;
  std::optional<int32_t> unk_id;  // id of unk_token for bytes missing from the vocabulary
  bool fuse_unk = false;
};

class BpeModel {
 public:
  // `vocab`: token (byte-level alphabet) -> id. `merges`: pairs of tokens in rank order (a pair
  // given twice keeps its last rank, as in the reference). Fails when a merge names a token, or
  // produces one, that is not in the vocabulary.
  static absl::StatusOr<BpeModel> Create(
      const absl::flat_hash_map<std::string, int32_t>& vocab,
      const std::vector<std::pair<std::string, std::string>>& merges, BpeOptions options);

  BpeModel(BpeModel&& other) noexcept = default;
  BpeModel& operator=(BpeModel&& other) noexcept = default;
  BpeModel(const BpeModel&) = delete;
  BpeModel& operator=(const BpeModel&) = delete;

  // Appends the ids of `word` (raw bytes, non-empty). Bytes whose single-byte token is missing
  // from the vocabulary become unk_id, or are dropped when there is none (as the reference does).
  void EncodeWord(std::string_view word, std::vector<int32_t>* out) const;

  size_t num_merges() const { return merges_.size(); }

 private:
  BpeModel() = default;
  void MergeWord(std::string_view word, std::vector<int32_t>* out) const;

  uint64_t cache_owner_ = 0;  // unique per model, keys the thread-local word cache
  int32_t byte_ids_[256];
  BpeOptions options_;
  // (left << 32 | right) -> (rank << 32 | merged id)
  absl::flat_hash_map<uint64_t, uint64_t> merges_;
  // ignore_merges: raw bytes of every vocabulary token -> id
  absl::flat_hash_map<std::string, int32_t> raw_vocab_;
};

}  // namespace mamba::tokenizer::internal
