#include "engine/tokenizer/byte_level_alphabet.h"

#include <array>

#include "engine/tokenizer/unicode_classes.h"

namespace mamba::tokenizer::internal {
namespace {

constexpr bool StandsForItself(int b) {
  return (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
}

struct Tables {
  std::array<char32_t, 256> byte_to_cp{};
  std::array<int16_t, 0x200> cp_to_byte{};  // every code point of the alphabet is below U+0200
};

constexpr Tables MakeTables() {
  Tables t;
  for (auto& v : t.cp_to_byte) v = -1;
  char32_t next = 0x100;
  for (int b = 0; b < 256; ++b) {
    const char32_t cp = StandsForItself(b) ? static_cast<char32_t>(b) : next++;
    t.byte_to_cp[static_cast<size_t>(b)] = cp;
    t.cp_to_byte[cp] = static_cast<int16_t>(b);
  }
  return t;
}

constexpr Tables kTables = MakeTables();

}  // namespace

char32_t ByteToCodePoint(uint8_t b) { return kTables.byte_to_cp[b]; }

int CodePointToByte(char32_t c) { return c < 0x200 ? kTables.cp_to_byte[c] : -1; }

void AppendUtf8(char32_t c, std::string* out) {
  if (c < 0x80) {
    out->push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out->push_back(static_cast<char>(0xc0 | (c >> 6)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3f)));
  } else if (c < 0x10000) {
    out->push_back(static_cast<char>(0xe0 | (c >> 12)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3f)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3f)));
  } else {
    out->push_back(static_cast<char>(0xf0 | (c >> 18)));
    out->push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3f)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3f)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3f)));
  }
}

std::string BytesToAlphabet(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char b : bytes) AppendUtf8(ByteToCodePoint(static_cast<uint8_t>(b)), &out);
  return out;
}

bool AlphabetToBytes(std::string_view token, std::string* out) {
  out->clear();
  size_t i = 0;
  while (i < token.size()) {
    size_t next;
    const int b = CodePointToByte(DecodeCodePoint(token, i, &next));
    if (b < 0) return false;
    out->push_back(static_cast<char>(b));
    i = next;
  }
  return true;
}

}  // namespace mamba::tokenizer::internal
