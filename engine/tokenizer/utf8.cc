#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "engine/tokenizer/tokenizer.h"

namespace mamba::tokenizer {
namespace {

// What the bytes at s[i] hold: a whole valid character of `len` bytes, an invalid sequence
// whose longest valid-looking prefix is `len` bytes (the "maximal subpart" that Unicode's
// recommended U+FFFD substitution replaces as one unit), or a valid prefix cut off by the end.
struct Utf8Sequence {
  enum Kind { kValid, kInvalid, kTruncated } kind;
  int len;
};

Utf8Sequence ScanSequence(std::string_view s, size_t i) {
  const auto b0 = static_cast<uint8_t>(s[i]);
  if (b0 < 0x80) return {Utf8Sequence::kValid, 1};
  int len;
  uint8_t lo = 0x80, hi = 0xbf;  // allowed range of the second byte
  if (b0 >= 0xc2 && b0 <= 0xdf) {
    len = 2;
  } else if (b0 >= 0xe0 && b0 <= 0xef) {
    len = 3;
    if (b0 == 0xe0) lo = 0xa0;  // no overlongs
    if (b0 == 0xed) hi = 0x9f;  // no surrogates
  } else if (b0 >= 0xf0 && b0 <= 0xf4) {
    len = 4;
    if (b0 == 0xf0) lo = 0x90;  // no overlongs
    if (b0 == 0xf4) hi = 0x8f;  // <= U+10FFFF
  } else {
    return {Utf8Sequence::kInvalid, 1};
  }
  for (int k = 1; k < len; ++k) {
    if (i + k >= s.size()) return {Utf8Sequence::kTruncated, k};
    const auto b = static_cast<uint8_t>(s[i + k]);
    if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xbf)) {
      return {Utf8Sequence::kInvalid, k};
    }
  }
  return {Utf8Sequence::kValid, len};
}

// Index of the first byte >= 0x80 at or after `i`, or s.size(). Eight bytes at a time: English
// text is almost all ASCII, and this is on every Encode's path.
size_t SkipAscii(std::string_view s, size_t i) {
  while (i + 8 <= s.size()) {
    uint64_t word;
    std::memcpy(&word, s.data() + i, 8);
    if (word & 0x8080808080808080ull) break;
    i += 8;
  }
  while (i < s.size() && static_cast<uint8_t>(s[i]) < 0x80) ++i;
  return i;
}

constexpr std::string_view kReplacementCharacter = "\xef\xbf\xbd";  // U+FFFD

}  // namespace

bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  while (true) {
    i = SkipAscii(s, i);
    if (i >= s.size()) return true;
    const Utf8Sequence seq = ScanSequence(s, i);
    if (seq.kind != Utf8Sequence::kValid) return false;
    i += static_cast<size_t>(seq.len);
  }
}

size_t FirstInvalidUtf8Byte(std::string_view s) {
  size_t i = 0;
  while (true) {
    i = SkipAscii(s, i);
    if (i >= s.size()) return s.size();
    const Utf8Sequence seq = ScanSequence(s, i);
    if (seq.kind != Utf8Sequence::kValid) return i;
    i += static_cast<size_t>(seq.len);
  }
}

size_t CompleteUtf8Prefix(std::string_view s) {
  // Only the last three bytes can start an incomplete sequence.
  const size_t start = s.size() > 3 ? s.size() - 3 : 0;
  for (size_t i = start; i < s.size(); ++i) {
    const auto b = static_cast<uint8_t>(s[i]);
    if ((b & 0xc0) == 0x80) continue;  // continuation byte
    if (b >= 0x80 && ScanSequence(s, i).kind == Utf8Sequence::kTruncated) return i;
  }
  return s.size();
}

void AppendUtf8Lossy(std::string_view s, std::string* out) {
  size_t i = 0;
  while (i < s.size()) {
    const size_t ascii_end = SkipAscii(s, i);
    size_t j = ascii_end;
    // Extend over valid multi-byte characters too, so valid text is appended in one piece.
    while (j < s.size()) {
      if (static_cast<uint8_t>(s[j]) < 0x80) {
        j = SkipAscii(s, j);
        continue;
      }
      const Utf8Sequence seq = ScanSequence(s, j);
      if (seq.kind != Utf8Sequence::kValid) break;
      j += static_cast<size_t>(seq.len);
    }
    out->append(s.data() + i, j - i);
    if (j >= s.size()) break;
    out->append(kReplacementCharacter);
    i = j + static_cast<size_t>(ScanSequence(s, j).len);
  }
}

std::string ToValidUtf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  AppendUtf8Lossy(s, &out);
  return out;
}

}  // namespace mamba::tokenizer
