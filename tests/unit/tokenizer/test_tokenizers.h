// Small hand-made tokenizer.json documents for the tokenizer tests.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace mamba::testing {

// A byte-level BPE document: ids 0..255 are the bytes (in GPT-2's alphabet), then one id per
// merge result in order, NeoX-style components (NFC, ByteLevel without prefix space, regex on).
// `merges` are pairs of tokens in the alphabet ("\u0120" is a space).
nlohmann::json ByteLevelBpeDocument(const std::vector<std::pair<std::string, std::string>>& merges);

// Appends an added token with the next id.
void AddToken(nlohmann::json* doc, const std::string& content, bool special,
              nlohmann::json flags = nlohmann::json::object());

// The id the document gives `token` (model vocabulary or added tokens).
int IdOf(const nlohmann::json& doc, const std::string& token);

// A token of raw bytes written in the byte-level alphabet.
std::string Alphabet(const std::string& bytes);

// SentencePiece's space, U+2581.
inline const std::string kMeta = "\xe2\x96\x81";

// The byte-fallback token of byte `b`: "<0xE4>".
std::string ByteToken(int b);

struct SpmOptions {
  enum class Layout {
    kLlama,      // Prepend + Replace normalizer, no pre-tokenizer, Replace/ByteFallback/Fuse/Strip
    kMetaspace,  // Metaspace pre-tokenizer and decoder
  };
  Layout layout = Layout::kLlama;
  std::string prepend_scheme = "first";  // kMetaspace
  bool split = false;                    // kMetaspace
  bool byte_fallback = true;
  bool fuse_unk = true;
  bool ignore_merges = false;
  std::vector<int> missing_bytes;  // byte tokens left out of the vocabulary
};

// A SentencePiece-converted BPE document as Llama-2's and Mistral's: <unk> <s> </s> (special
// added tokens) are 0..2, then <0x00>..<0xFF>, then `tokens`, then the merge results in order;
// TemplateProcessing "<s> $A".
nlohmann::json SpmBpeDocument(const std::vector<std::string>& tokens,
                              const std::vector<std::pair<std::string, std::string>>& merges,
                              const SpmOptions& options = {});

}  // namespace mamba::testing
