#include "tests/unit/tokenizer/test_tokenizers.h"

#include "engine/tokenizer/byte_level_alphabet.h"

namespace mamba::testing {

std::string Alphabet(const std::string& bytes) {
  return tokenizer::internal::BytesToAlphabet(bytes);
}

nlohmann::json ByteLevelBpeDocument(
    const std::vector<std::pair<std::string, std::string>>& merges) {
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[Alphabet(std::string(1, static_cast<char>(b)))] = b;
  nlohmann::json merge_list = nlohmann::json::array();
  for (const auto& [left, right] : merges) {
    if (!vocab.contains(left + right)) vocab[left + right] = vocab.size();
    merge_list.push_back({left, right});
  }
  const nlohmann::json byte_level = {{"type", "ByteLevel"},
                                     {"add_prefix_space", false},
                                     {"trim_offsets", true},
                                     {"use_regex", true}};
  return {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", nlohmann::json::array()},
      {"normalizer", {{"type", "NFC"}}},
      {"pre_tokenizer", byte_level},
      {"post_processor", byte_level},
      {"decoder", byte_level},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", nullptr},
        {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr},
        {"fuse_unk", false},
        {"byte_fallback", false},
        {"ignore_merges", false},
        {"vocab", vocab},
        {"merges", merge_list}}},
  };
}

void AddToken(nlohmann::json* doc, const std::string& content, bool special, nlohmann::json flags) {
  nlohmann::json& vocab = (*doc)["model"]["vocab"];
  // As the reference assigns them: vocabulary tokens keep their id, the others are numbered
  // from the vocabulary's size.
  int id = static_cast<int>(vocab.size());
  for (const auto& t : (*doc)["added_tokens"]) {
    if (!vocab.contains(t["content"].get<std::string>())) ++id;
  }
  if (vocab.contains(content)) id = vocab[content].get<int>();
  nlohmann::json token = {{"id", id},          {"content", content}, {"single_word", false},
                          {"lstrip", false},   {"rstrip", false},    {"normalized", !special},
                          {"special", special}};
  for (const auto& [key, value] : flags.items()) token[key] = value;
  (*doc)["added_tokens"].push_back(token);
}

int IdOf(const nlohmann::json& doc, const std::string& token) {
  for (const auto& t : doc["added_tokens"]) {
    if (t["content"] == token) return t["id"].get<int>();
  }
  return doc["model"]["vocab"].at(token).get<int>();
}

}  // namespace mamba::testing
