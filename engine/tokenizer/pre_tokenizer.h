// Pre-tokenization: splitting normalized text into the words that BPE encodes separately, as
// Hugging Face's ByteLevel, Metaspace, Split, Digits and Sequence pre-tokenizers do.
//
// A pipeline is a list of steps applied in order (a Sequence, flattened), each one splitting
// every piece the previous step produced. In byte-level files the last step is ByteLevel: it
// prepends a space when asked, splits with the GPT-2 pattern when asked, and hands each word to
// BPE as raw bytes (the byte-level alphabet is applied to the vocabulary instead, once, at load
// time). In the others the pipeline is empty (the whole piece is one word), Split and Digits
// steps, or Metaspace alone: spaces become its replacement character ("▁"), which is prepended
// to the piece as its prepend_scheme says, and the piece is split before each one when asked.
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
    kMetaspace,
  };
  enum class PrependScheme { kAlways, kFirst, kNever };
  Kind kind = Kind::kByteLevel;
  std::string literal;  // kSplitLiteral; never empty
  SplitBehavior behavior = SplitBehavior::kIsolated;
  bool invert = false;
  bool add_prefix_space = false;                          // kByteLevel
  bool use_regex = true;                                  // kByteLevel
  std::string replacement;                                // kMetaspace: one character, as UTF-8
  PrependScheme prepend_scheme = PrependScheme::kAlways;  // kMetaspace
  bool split = true;                                      // kMetaspace
};

class PreTokenizer {
 public:
  // Buffers reused across pieces of one Encode call.
  struct Scratch {
    std::vector<std::string> prefixed;
    std::vector<std::vector<std::pair<size_t, size_t>>> matches;
    std::vector<std::vector<bool>> is_match;
    std::vector<std::vector<std::pair<size_t, size_t>>> kept;
    bool first_piece = false;  // the piece being split starts the original text
  };

  // `steps` may be empty; a kByteLevel step can only be last, and a kMetaspace step only alone
  // (the parser checks).
  explicit PreTokenizer(std::vector<PreTokenizerStep> steps) : steps_(std::move(steps)) {}

  // Calls `emit` with each word of `text`, in order; words are never empty. A word's view is
  // valid only during its `emit` call. `first_piece`: `text` starts the original text (before
  // added tokens were cut out), which Metaspace's prepend_scheme "first" asks.
  void Run(std::string_view text, absl::FunctionRef<void(std::string_view)> emit, Scratch* scratch,
           bool first_piece = false) const;

 private:
  void RunStep(size_t k, std::string_view piece, absl::FunctionRef<void(std::string_view)> emit,
               Scratch* scratch) const;

  std::vector<PreTokenizerStep> steps_;
};

}  // namespace mamba::tokenizer::internal
