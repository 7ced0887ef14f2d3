// GPT-2's byte-level alphabet: each byte is written as one printable code point, so that a
// vocabulary of byte strings can be stored as text. Printable Latin-1 bytes ('!'..'~',
// 0xA1..0xAC, 0xAE..0xFF) stand for themselves; the other 68 bytes take U+0100.. in order
// (a space is U+0120 'Ġ', a newline U+010A 'Ċ').
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace mamba::tokenizer::internal {

// The code point that stands for byte `b`.
char32_t ByteToCodePoint(uint8_t b);
// The byte that code point `c` stands for, or -1 when `c` is not in the alphabet.
int CodePointToByte(char32_t c);

// `bytes` written in the alphabet (valid UTF-8).
std::string BytesToAlphabet(std::string_view bytes);
// The bytes a token written in the alphabet stands for; false (and *out unspecified) when
// `token` has a character outside the alphabet. `token` must be valid UTF-8.
bool AlphabetToBytes(std::string_view token, std::string* out);

// Appends the UTF-8 encoding of `c`.
void AppendUtf8(char32_t c, std::string* out);

}  // namespace mamba::tokenizer::internal
