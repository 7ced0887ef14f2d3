// Unicode normalization of the text between added tokens (Hugging Face's NFC, NFD, NFKC and NFKD
// normalizers and Sequences of them), through ICU.
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

class Normalizer {
 public:
  // Applies `forms` in order (empty: the identity). Fails if ICU lacks its data.
  static absl::StatusOr<Normalizer> Create(std::vector<NormalizationForm> forms);

  bool is_identity() const { return forms_.empty(); }

  // The normalized form of `text` (valid UTF-8). Returns a view of `text` when nothing changes
  // (always for ASCII), else a view of `*storage`.
  std::string_view Apply(std::string_view text, std::string* storage) const;

 private:
  struct Form {
    const void* icu_normalizer;  // const icu::Normalizer2*, kept out of this header
  };
  std::vector<Form> forms_;
};

}  // namespace mamba::tokenizer::internal
