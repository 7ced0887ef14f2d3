// The byte-level tokenizer for models without tokenizer.json: ids 0..255 are bytes, then the
// special tokens, then (up to vocab_size) ids that decode to nothing.
#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/tokenizer/added_vocabulary.h"
#include "engine/tokenizer/byte_level_alphabet.h"
#include "engine/tokenizer/tokenizer.h"

namespace mamba::tokenizer {
namespace {

using internal::AddedTokenMatcher;
using internal::AddedTokenSpec;
using internal::AddedTokenSplit;

class ByteTokenizer final : public Tokenizer {
 public:
  ByteTokenizer(std::vector<std::string> specials, int32_t vocab_size)
      : specials_(std::move(specials)) {
    const auto named = static_cast<int32_t>(256 + specials_.size());
    vocab_size_ = std::max(vocab_size, named);
    std::vector<AddedTokenSpec> specs;
    for (size_t i = 0; i < specials_.size(); ++i) {
      const auto id = static_cast<int32_t>(256 + i);
      // The first of equal special tokens owns the text.
      if (specials_[i].empty() || special_ids_.contains(specials_[i])) continue;
      special_ids_.emplace(specials_[i], id);
      specs.push_back(AddedTokenSpec{specials_[i], id});
    }
    matcher_ = AddedTokenMatcher(specs);
    for (int b = 0; b < 256; ++b) {
      std::string spelling;
      internal::AppendUtf8(internal::ByteToCodePoint(static_cast<uint8_t>(b)), &spelling);
      byte_ids_.emplace(std::move(spelling), b);
    }
    if (const auto it = special_ids_.find("<|endoftext|>"); it != special_ids_.end()) {
      eos_id_ = it->second;
    }
  }

  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text,
                                              bool /*add_special_tokens*/) const override {
    if (const size_t bad = FirstInvalidUtf8Byte(text); bad != text.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("text is not valid UTF-8 (ill-formed sequence at byte ", bad, ")"));
    }
    std::vector<int32_t> ids;
    ids.reserve(text.size());
    auto add_bytes = [&ids](std::string_view bytes) {
      for (char c : bytes) ids.push_back(static_cast<uint8_t>(c));
    };
    if (matcher_.empty()) {
      add_bytes(text);
      return ids;
    }
    std::vector<AddedTokenSplit> splits;
    matcher_.Split(text, &splits);
    for (const AddedTokenSplit& split : splits) {
      if (split.id >= 0) {
        ids.push_back(split.id);
      } else {
        add_bytes(text.substr(split.begin, split.end - split.begin));
      }
    }
    return ids;
  }

  absl::StatusOr<std::string> DecodeBytes(absl::Span<const int32_t> ids,
                                          bool skip_special_tokens) const override {
    std::string out;
    for (size_t i = 0; i < ids.size(); ++i) {
      const int32_t id = ids[i];
      if (id < 0 || id >= vocab_size_) {
        return absl::InvalidArgumentError(absl::StrCat("token id ", id, " (at position ", i,
                                                       ") is outside [0, ", vocab_size_, ")"));
      }
      if (id < 256) {
        out.push_back(static_cast<char>(id));
      } else if (id < 256 + static_cast<int32_t>(specials_.size()) && !skip_special_tokens) {
        out += specials_[id - 256];
      }
    }
    return out;
  }

  int32_t vocab_size() const override { return vocab_size_; }

  std::optional<int32_t> TokenToId(std::string_view token) const override {
    const absl::string_view key(token.data(), token.size());
    if (const auto it = special_ids_.find(key); it != special_ids_.end()) return it->second;
    if (const auto it = byte_ids_.find(key); it != byte_ids_.end()) return it->second;
    return std::nullopt;
  }

  std::string IdToToken(int32_t id) const override {
    if (id >= 0 && id < 256) {
      std::string spelling;
      internal::AppendUtf8(internal::ByteToCodePoint(static_cast<uint8_t>(id)), &spelling);
      return spelling;
    }
    if (id >= 256 && id < 256 + static_cast<int32_t>(specials_.size())) return specials_[id - 256];
    return "";
  }

  std::optional<int32_t> eos_id() const override { return eos_id_; }

  bool IsSpecial(int32_t id) const override {
    return id >= 256 && id < 256 + static_cast<int32_t>(specials_.size());
  }

  std::string kind() const override { return "byte"; }

 private:
  std::vector<std::string> specials_;
  int32_t vocab_size_ = 0;
  absl::flat_hash_map<std::string, int32_t> special_ids_;
  absl::flat_hash_map<std::string, int32_t> byte_ids_;  // byte-level spelling -> byte
  AddedTokenMatcher matcher_;
  std::optional<int32_t> eos_id_;
};

}  // namespace

std::unique_ptr<Tokenizer> MakeByteTokenizer(std::vector<std::string> special_tokens,
                                             int32_t vocab_size) {
  return std::make_unique<ByteTokenizer>(std::move(special_tokens), vocab_size);
}

}  // namespace mamba::tokenizer
