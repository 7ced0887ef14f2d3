#include "engine/tokenizer/decoder_chain.h"

#include <algorithm>

namespace mamba::tokenizer::internal {
namespace {

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

void ApplyStep(const DecoderStep& step, std::string_view in, bool first, std::string* out) {
  out->clear();
  switch (step.kind) {
    case DecoderStep::Kind::kReplace: {
      size_t from = 0;
      for (size_t found = in.find(step.pattern); found != std::string_view::npos;
           found = in.find(step.pattern, from)) {
        out->append(in.substr(from, found - from));
        out->append(step.content);
        from = found + step.pattern.size();
      }
      out->append(in.substr(from));
      return;
    }
    case DecoderStep::Kind::kStrip: {
      size_t from = 0;
      for (int32_t n = 0; n < step.strip_start && StartsWith(in.substr(from), step.strip); ++n) {
        from += step.strip.size();
      }
      out->append(in.substr(from));
      return;
    }
    case DecoderStep::Kind::kMetaspace: {
      // Every replacement character becomes a space, or, in the first element, vanishes.
      const bool vanish = first && !step.prepend_never;
      size_t from = 0;
      for (size_t found = in.find(step.replacement); found != std::string_view::npos;
           found = in.find(step.replacement, from)) {
        out->append(in.substr(from, found - from));
        if (!vanish) out->push_back(' ');
        from = found + step.replacement.size();
      }
      out->append(in.substr(from));
      return;
    }
  }
}

}  // namespace

bool DecoderChain::FirstIsSpecial() const {
  auto has_metaspace = [](const std::vector<DecoderStep>& steps) {
    return std::any_of(steps.begin(), steps.end(), [](const DecoderStep& s) {
      return s.kind == DecoderStep::Kind::kMetaspace && !s.prepend_never;
    });
  };
  return has_metaspace(token_steps) || has_metaspace(element_steps);
}

std::string DecoderChain::Apply(const std::vector<DecoderStep>& steps, std::string_view element,
                                bool first) {
  std::string current(element);
  std::string next;
  for (const DecoderStep& step : steps) {
    ApplyStep(step, current, first, &next);
    current.swap(next);
  }
  return current;
}

int DecoderChain::ByteTokenValue(std::string_view token) {
  if (token.size() != 6 || !StartsWith(token, "<0x") || token.back() != '>') return -1;
  const char a = token[3];
  const char b = token[4];
  if (a == '+') return HexDigit(b);
  const int high = HexDigit(a);
  const int low = HexDigit(b);
  return high < 0 || low < 0 ? -1 : high * 16 + low;
}

void DecoderChain::AppendWithTextSteps(std::string_view text, std::vector<int32_t>* strip_left,
                                       std::string* out) const {
  for (size_t k = 0; k < text_steps.size() && !text.empty(); ++k) {
    int32_t& left = (*strip_left)[k];
    if (left == 0) continue;
    const std::string& strip = text_steps[k].strip;
    while (left > 0 && StartsWith(text, strip)) {
      text.remove_prefix(strip.size());
      --left;
    }
    // Once another character went through, the text's start is behind.
    if (!text.empty()) left = 0;
  }
  out->append(text);
}

}  // namespace mamba::tokenizer::internal
