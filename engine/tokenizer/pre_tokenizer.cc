#include "engine/tokenizer/pre_tokenizer.h"

#include <algorithm>

#include "engine/tokenizer/gpt2_pattern.h"
#include "engine/tokenizer/unicode_classes.h"

namespace mamba::tokenizer::internal {
namespace {

using Ranges = std::vector<std::pair<size_t, size_t>>;

// The pattern's matches and the gaps between them, covering `piece` in order (Hugging Face's
// Pattern::find_matches), with the match flags flipped when `invert`.
void FindMatches(const PreTokenizerStep& step, std::string_view piece, Ranges* ranges,
                 std::vector<bool>* is_match) {
  ranges->clear();
  is_match->clear();
  auto push = [&](size_t b, size_t e, bool m) {
    ranges->emplace_back(b, e);
    is_match->push_back(m != step.invert);
  };
  switch (step.kind) {
    case PreTokenizerStep::Kind::kSplitLiteral: {
      size_t prev = 0;
      size_t found;
      while ((found = piece.find(step.literal, prev)) != std::string_view::npos) {
        if (found > prev) push(prev, found, false);
        push(found, found + step.literal.size(), true);
        prev = found + step.literal.size();
      }
      if (prev < piece.size()) push(prev, piece.size(), false);
      break;
    }
    case PreTokenizerStep::Kind::kSplitGpt2: {
      for (size_t pos = 0; pos < piece.size();) {
        const size_t end = Gpt2MatchEnd(piece, pos);
        push(pos, end, true);
        pos = end;
      }
      break;
    }
    case PreTokenizerStep::Kind::kDigits: {
      // Each numeric code point is a match of its own; Contiguous joins them afterwards.
      size_t last = 0;
      for (size_t i = 0; i < piece.size();) {
        size_t next;
        const char32_t c = DecodeCodePoint(piece, i, &next);
        if (IsNumeric(c)) {
          if (last < i) push(last, i, false);
          push(i, next, true);
          last = next;
        }
        i = next;
      }
      if (last < piece.size()) push(last, piece.size(), false);
      break;
    }
    case PreTokenizerStep::Kind::kByteLevel:
    case PreTokenizerStep::Kind::kMetaspace:
      break;
  }
}

// Metaspace: spaces become the replacement, which is prepended as the scheme says unless the
// piece starts with one, and the piece is cut before each replacement when `split`
// (MergedWithNext).
void RunMetaspace(const PreTokenizerStep& step, std::string_view piece, bool first_piece,
                  std::string* buffer, absl::FunctionRef<void(std::string_view)> emit) {
  const std::string& repl = step.replacement;
  const bool prepend =
      (step.prepend_scheme == PreTokenizerStep::PrependScheme::kAlways ||
       (step.prepend_scheme == PreTokenizerStep::PrependScheme::kFirst && first_piece)) &&
      piece.front() != ' ' && piece.substr(0, repl.size()) != repl;
  buffer->clear();
  if (prepend) buffer->append(repl);
  for (size_t from = 0; from < piece.size();) {
    const size_t space = piece.find(' ', from);
    if (space == std::string_view::npos) {
      buffer->append(piece.substr(from));
      break;
    }
    buffer->append(piece.substr(from, space - from));
    buffer->append(repl);
    from = space + 1;
  }
  const std::string_view text = *buffer;
  if (!step.split) {
    emit(text);
    return;
  }
  size_t start = 0;
  for (size_t found = text.find(repl, 1); found != std::string_view::npos;
       found = text.find(repl, found + repl.size())) {
    if (found > start) emit(text.substr(start, found - start));
    start = found;
  }
  emit(text.substr(start));
}

// The ranges a split keeps (NormalizedString::split), following Hugging Face's folds exactly,
// including how they treat the first element.
void ApplyBehavior(SplitBehavior behavior, const Ranges& ranges, const std::vector<bool>& is_match,
                   Ranges* kept) {
  kept->clear();
  const size_t n = ranges.size();
  switch (behavior) {
    case SplitBehavior::kIsolated:
      *kept = ranges;
      return;
    case SplitBehavior::kRemoved:
      for (size_t i = 0; i < n; ++i) {
        if (!is_match[i]) kept->push_back(ranges[i]);
      }
      return;
    case SplitBehavior::kContiguous: {
      bool previous = false;
      for (size_t i = 0; i < n; ++i) {
        if (is_match[i] == previous && !kept->empty()) {
          kept->back().second = ranges[i].second;
        } else {
          kept->push_back(ranges[i]);
        }
        previous = is_match[i];
      }
      return;
    }
    case SplitBehavior::kMergedWithPrevious: {
      bool previous = false;
      for (size_t i = 0; i < n; ++i) {
        if (is_match[i] && !previous && !kept->empty()) {
          kept->back().second = ranges[i].second;
        } else {
          kept->push_back(ranges[i]);
        }
        previous = is_match[i];
      }
      return;
    }
    case SplitBehavior::kMergedWithNext: {
      bool previous = false;
      for (size_t j = n; j-- > 0;) {
        if (is_match[j] && !previous && !kept->empty()) {
          kept->back().first = ranges[j].first;
        } else {
          kept->push_back(ranges[j]);
        }
        previous = is_match[j];
      }
      std::reverse(kept->begin(), kept->end());
      return;
    }
  }
}

}  // namespace

void PreTokenizer::Run(std::string_view text, absl::FunctionRef<void(std::string_view)> emit,
                       Scratch* scratch, bool first_piece) const {
  if (text.empty()) return;
  if (steps_.empty()) {
    emit(text);
    return;
  }
  scratch->first_piece = first_piece;
  if (scratch->prefixed.size() < steps_.size()) {
    scratch->prefixed.resize(steps_.size());
    scratch->matches.resize(steps_.size());
    scratch->is_match.resize(steps_.size());
    scratch->kept.resize(steps_.size());
  }
  RunStep(0, text, emit, scratch);
}

void PreTokenizer::RunStep(size_t k, std::string_view piece,
                           absl::FunctionRef<void(std::string_view)> emit, Scratch* scratch) const {
  if (k == steps_.size()) {  // Split and Digits steps only: their pieces are the words
    emit(piece);
    return;
  }
  const PreTokenizerStep& step = steps_[k];
  if (step.kind == PreTokenizerStep::Kind::kMetaspace) {
    RunMetaspace(step, piece, scratch->first_piece, &scratch->prefixed[k], emit);
    return;
  }
  if (step.kind == PreTokenizerStep::Kind::kByteLevel) {
    std::string_view text = piece;
    if (step.add_prefix_space && piece.front() != ' ') {
      std::string& buffer = scratch->prefixed[k];
      buffer.assign(1, ' ');
      buffer.append(piece);
      text = buffer;
    }
    if (!step.use_regex) {
      emit(text);
      return;
    }
    for (size_t pos = 0; pos < text.size();) {
      const size_t end = Gpt2MatchEnd(text, pos);
      emit(text.substr(pos, end - pos));
      pos = end;
    }
    return;
  }
  Ranges& ranges = scratch->matches[k];
  std::vector<bool>& is_match = scratch->is_match[k];
  Ranges& kept = scratch->kept[k];
  FindMatches(step, piece, &ranges, &is_match);
  ApplyBehavior(step.behavior, ranges, is_match, &kept);
  // `kept` belongs to this level; deeper levels use their own buffers, so iterate by index.
  for (size_t i = 0; i < kept.size(); ++i) {
    const auto [begin, end] = kept[i];
    if (end > begin) RunStep(k + 1, piece.substr(begin, end - begin), emit, scratch);
  }
}

}  // namespace mamba::tokenizer::internal
