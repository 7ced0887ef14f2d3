#include "tests/unit/tokenizer/test_tokenizers.h"

#include <algorithm>

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

std::string ByteToken(int b) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  return std::string{'<', '0', 'x', kHex[(b >> 4) & 15], kHex[b & 15], '>'};
}

nlohmann::json SpmBpeDocument(const std::vector<std::string>& tokens,
                              const std::vector<std::pair<std::string, std::string>>& merges,
                              const SpmOptions& options) {
  nlohmann::json vocab = nlohmann::json::object();
  auto add = [&vocab](const std::string& token) {
    if (!vocab.contains(token)) vocab[token] = vocab.size();
  };
  for (const char* special : {"<unk>", "<s>", "</s>"}) add(special);
  for (int b = 0; b < 256; ++b) {
    if (std::find(options.missing_bytes.begin(), options.missing_bytes.end(), b) ==
        options.missing_bytes.end()) {
      add(ByteToken(b));
    }
  }
  for (const std::string& token : tokens) add(token);
  nlohmann::json merge_list = nlohmann::json::array();
  for (const auto& [left, right] : merges) {
    add(left + right);
    merge_list.push_back({left, right});
  }
  nlohmann::json added = nlohmann::json::array();
  for (const char* special : {"<unk>", "<s>", "</s>"}) {
    added.push_back({{"id", vocab[special]},
                     {"content", special},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  }
  const nlohmann::json metaspace = {{"type", "Metaspace"},
                                    {"replacement", kMeta},
                                    {"prepend_scheme", options.prepend_scheme},
                                    {"split", options.split}};
  nlohmann::json doc = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single",
         {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
          {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
        {"pair",
         {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
          {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
          {{"SpecialToken", {{"id", "<s>"}, {"type_id", 1}}}},
          {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
        {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}}}}},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", "<unk>"},
        {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr},
        {"fuse_unk", options.fuse_unk},
        {"byte_fallback", options.byte_fallback},
        {"ignore_merges", options.ignore_merges},
        {"vocab", vocab},
        {"merges", merge_list}}},
  };
  if (options.layout == SpmOptions::Layout::kLlama) {
    doc["normalizer"] = {
        {"type", "Sequence"},
        {"normalizers",
         {{{"type", "Prepend"}, {"prepend", kMeta}},
          {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", kMeta}}}}};
    doc["pre_tokenizer"] = nullptr;
    doc["decoder"] = {{"type", "Sequence"},
                      {"decoders",
                       {{{"type", "Replace"}, {"pattern", {{"String", kMeta}}}, {"content", " "}},
                        {{"type", "ByteFallback"}},
                        {{"type", "Fuse"}},
                        {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}};
  } else {
    doc["normalizer"] = nullptr;
    doc["pre_tokenizer"] = metaspace;
    doc["decoder"] = metaspace;
  }
  return doc;
}

int IdOf(const nlohmann::json& doc, const std::string& token) {
  for (const auto& t : doc["added_tokens"]) {
    if (t["content"] == token) return t["id"].get<int>();
  }
  return doc["model"]["vocab"].at(token).get<int>();
}

}  // namespace mamba::testing
