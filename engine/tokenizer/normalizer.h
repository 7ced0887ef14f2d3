// The normalizer applied to the text between added tokens: Hugging Face's NFC, NFD, NFKC and
// NFKD (through ICU), Prepend and Replace (a literal pattern), and Sequences of them.
//
// `tokenizers` normalizes with tables of Unicode 9.0: characters assigned later have no
// decomposition, combining class or compositions there. ICU knows them, so text is cut at each
// such character, the pieces between are normalized by ICU (normalization is stable for
// characters of Unicode 9.0, so ICU's answer is the reference's), and the newer characters are
// kept as they are, which is what the reference does with characters it does not know.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace mamba::tokenizer::internal {

enum class NormalizationForm { kNfc, kNfd, kNfkc, kNfkd };

struct NormalizerStep {
  enum class Kind {
    kForm,     // Unicode normalization `form`
    kPrepend,  // `text` before a non-empty piece (Prepend("▁"))
    kReplace,  // every occurrence of `text` (non-empty), leftmost first, becomes `content`
  };
  Kind kind = Kind::kForm;
  NormalizationForm form = NormalizationForm::kNfc;
  std::string text;
  std::string content;
};

class Normalizer {
 public:
  // Applies `steps` in order (empty: the identity). Fails if ICU lacks its data, or a Replace
  // pattern is empty.
  static absl::StatusOr<Normalizer> Create(std::vector<NormalizerStep> steps);

  bool is_identity() const { return steps_.empty(); }

  // The normalized form of `text` (valid UTF-8). Returns a view of `text` when nothing changes
  // (always for ASCII under the Unicode forms alone), else a view of `*storage`.
  std::string_view Apply(std::string_view text, std::string* storage) const;

 private:
  struct Step {
    NormalizerStep::Kind kind;
    const void* icu_normalizer;  // kForm: const icu::Normalizer2*, kept out of this header
    std::string text;
    std::string content;
  };
  std::vector<Step> steps_;
  bool forms_only_ = true;  // every step is a Unicode form: ASCII text is left as it is
};

}  // namespace mamba::tokenizer::internal
