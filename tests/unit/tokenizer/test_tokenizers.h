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

}  // namespace mamba::testing
