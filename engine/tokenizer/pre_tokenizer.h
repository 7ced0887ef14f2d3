// Pre-tokenization: splitting normalized text into the words that BPE encodes separately, as
// Hugging Face's ByteLevel, Split, Digits and Sequence pre-tokenizers do.
//
// A pipeline is a list of steps applied in order (a Sequence, flattened), each one splitting
// every piece the previous step produced. The last step is always ByteLevel: it prepends a space
// when asked, splits with the GPT-2 pattern when asked, and hands each word to BPE as raw bytes
// (the byte-level alphabet is applied to the vocabulary instead, once, at load time).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"

namespace mamba::tokenizer::internal {

// How a Split step treats the matches of its pattern (Hugging Face's SplitDelimiterBehavior).
enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

struct PreTokenizerStep {
  enum class Kind {
    kSplitLiteral,  // Split with {"String": literal}
    kSplitGpt2,     // Split with {"Regex": the GPT-2 pattern}
    kDigits,        // Digits (individual_digits: Isolated, else Contiguous)
    kByteLevel,
  };
  Kind kind = Kind::kByteLevel;
  std::string literal;  // kSplitLiteral; never empty
  SplitBehavior behavior = SplitBehavior::kIsolated;
  bool invert = false;
  bool add_prefix_space = false;  // kByteLevel
  bool use_regex = true;          // kByteLevel
};

class PreTokenizer {
 public:
  // Buffers reused across pieces of one Encode call.
  struct Scratch {
    std::vector<std::string> prefixed;
    std::vector<std::vector<std::pair<size_t, size_t>>> matches;
    std::vector<std::vector<bool>> is_match;
    std::vector<std::vector<std::pair<size_t, size_t>>> kept;
  };

  // `steps` must be non-empty and end with the only kByteLevel step (the parser checks).
  explicit PreTokenizer(std::vector<PreTokenizerStep> steps) : steps_(std::move(steps)) {}

  // Calls `emit` with each word of `text`, in order; words are never empty. A word's view is
  // valid only during its `emit` call.
  void Run(std::string_view text, absl::FunctionRef<void(std::string_view)> emit,
           Scratch* scratch) const;

 private:
  void RunStep(size_t k, std::string_view piece, absl::FunctionRef<void(std::string_view)> emit,
               Scratch* scratch) const;

  std::vector<PreTokenizerStep> steps_;
};

}  // namespace mamba::tokenizer::internal
