#include "engine/tokenizer/normalizer.h"

#include <unicode/bytestream.h>
#include <unicode/normalizer2.h>
#include <unicode/stringpiece.h>
#include <unicode/uchar.h>

#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/tokenizer/unicode_classes.h"

namespace mamba::tokenizer::internal {
namespace {

const icu::Normalizer2* GetIcuNormalizer(NormalizationForm form, UErrorCode* error) {
  switch (form) {
    case NormalizationForm::kNfc:
      return icu::Normalizer2::getNFCInstance(*error);
    case NormalizationForm::kNfd:
      return icu::Normalizer2::getNFDInstance(*error);
    case NormalizationForm::kNfkc:
      return icu::Normalizer2::getNFKCInstance(*error);
    case NormalizationForm::kNfkd:
      return icu::Normalizer2::getNFKDInstance(*error);
  }
  return nullptr;
}

bool IsAscii(std::string_view s) {
  for (char c : s) {
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  }
  return true;
}

// True for characters the reference's normalization tables (Unicode 9.0) do not have.
bool NewerThanUnicode9(char32_t c) {
  UVersionInfo age;
  u_charAge(static_cast<UChar32>(c), age);
  return age[0] > 9 || (age[0] == 9 && (age[1] > 0 || age[2] > 0));
}

// Appends the ICU normalization of `text` (valid UTF-8) to *out.
void AppendIcuNormalized(const icu::Normalizer2* normalizer, std::string_view text,
                         std::string* out) {
  const icu::StringPiece piece(text.data(), static_cast<int32_t>(text.size()));
  UErrorCode error = U_ZERO_ERROR;
  if (normalizer->isNormalizedUTF8(piece, error) && U_SUCCESS(error)) {
    out->append(text);
    return;
  }
  std::string normalized;
  icu::StringByteSink<std::string> sink(&normalized);
  error = U_ZERO_ERROR;
  normalizer->normalizeUTF8(0, piece, sink, nullptr, error);
  // ICU fails only on invalid UTF-8 or out of memory; callers pass valid UTF-8, so keep the
  // text rather than lose it.
  out->append(U_SUCCESS(error) ? std::string_view(normalized) : text);
}

// The reference's normalization of `text` into *out: ICU's, with characters newer than Unicode
// 9.0 kept verbatim as barriers (see normalizer.h). Returns false, leaving *out unspecified,
// when `text` is already normalized (the common case, checked without copying).
bool NormalizeLikeReference(const icu::Normalizer2* normalizer, std::string_view text,
                            std::string* out) {
  // ASCII needs no work, but an ASCII character can combine with what follows it, and each
  // ASCII character starts a new normalization segment. So only the runs of non-ASCII text,
  // each with the character before it, are checked.
  std::vector<size_t> newer;  // offsets of the characters the reference does not know
  bool normalized = true;
  for (size_t i = 0; i < text.size();) {
    if (static_cast<unsigned char>(text[i]) < 0x80) {
      ++i;
      continue;
    }
    const size_t segment_start = i > 0 ? i - 1 : 0;
    size_t j = i;
    while (j < text.size() && static_cast<unsigned char>(text[j]) >= 0x80) {
      size_t next;
      if (NewerThanUnicode9(DecodeCodePoint(text, j, &next))) newer.push_back(j);
      j = next;
    }
    if (normalized && newer.empty()) {
      const icu::StringPiece piece(text.data() + segment_start,
                                   static_cast<int32_t>(j - segment_start));
      UErrorCode error = U_ZERO_ERROR;
      normalized = normalizer->isNormalizedUTF8(piece, error) && U_SUCCESS(error);
    }
    i = j;
  }
  if (normalized && newer.empty()) return false;
  out->clear();
  size_t piece_start = 0;
  for (size_t at : newer) {
    size_t next;
    DecodeCodePoint(text, at, &next);
    AppendIcuNormalized(normalizer, text.substr(piece_start, at - piece_start), out);
    out->append(text.substr(at, next - at));
    piece_start = next;
  }
  AppendIcuNormalized(normalizer, text.substr(piece_start), out);
  return *out != text;
}

}  // namespace

absl::StatusOr<Normalizer> Normalizer::Create(std::vector<NormalizerStep> steps) {
  Normalizer normalizer;
  for (NormalizerStep& step : steps) {
    Step compiled{step.kind, nullptr, std::move(step.text), std::move(step.content)};
    if (step.kind == NormalizerStep::Kind::kForm) {
      UErrorCode error = U_ZERO_ERROR;
      compiled.icu_normalizer = GetIcuNormalizer(step.form, &error);
      if (U_FAILURE(error) || compiled.icu_normalizer == nullptr) {
        return absl::InternalError(
            absl::StrCat("ICU normalizer unavailable: ", u_errorName(error)));
      }
    } else {
      normalizer.forms_only_ = false;
      if (step.kind == NormalizerStep::Kind::kReplace && compiled.text.empty()) {
        return absl::InvalidArgumentError("an empty Replace pattern");
      }
    }
    normalizer.steps_.push_back(std::move(compiled));
  }
  return normalizer;
}

std::string_view Normalizer::Apply(std::string_view text, std::string* storage) const {
  // Every normalization form leaves ASCII unchanged.
  if (steps_.empty() || (forms_only_ && IsAscii(text))) return text;
  std::string_view current = text;
  std::string next;
  for (const Step& step : steps_) {
    switch (step.kind) {
      case NormalizerStep::Kind::kForm: {
        const auto* icu_normalizer = static_cast<const icu::Normalizer2*>(step.icu_normalizer);
        if (!NormalizeLikeReference(icu_normalizer, current, &next)) continue;
        break;
      }
      case NormalizerStep::Kind::kPrepend:
        // The reference prepends to non-empty text only.
        if (current.empty()) continue;
        next.assign(step.text);
        next.append(current);
        break;
      case NormalizerStep::Kind::kReplace: {
        size_t found = current.find(step.text);
        if (found == std::string_view::npos) continue;
        next.clear();
        size_t from = 0;
        for (; found != std::string_view::npos; found = current.find(step.text, from)) {
          next.append(current.substr(from, found - from));
          next.append(step.content);
          from = found + step.text.size();
        }
        next.append(current.substr(from));
        break;
      }
    }
    storage->swap(next);
    current = *storage;
  }
  return current;
}

}  // namespace mamba::tokenizer::internal
