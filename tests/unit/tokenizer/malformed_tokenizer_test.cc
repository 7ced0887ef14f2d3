// Malformed and unsupported tokenizer.json files give clear errors, never a crash.
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/tokenizer/tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/tokenizer/test_tokenizers.h"

namespace mamba {
namespace {

using ::mamba::testing::ByteLevelBpeDocument;
using ::mamba::testing::kMeta;
using ::mamba::testing::SpmBpeDocument;
using ::testing::HasSubstr;

struct MalformedCase {
  std::string name;
  std::function<std::string()> make;  // the file's text
  absl::StatusCode code;
  std::string message;  // a phrase the error must contain
};

// A valid document with one change.
std::function<std::string()> Edit(std::function<void(nlohmann::json*)> edit) {
  return [edit] {
    nlohmann::json doc = ByteLevelBpeDocument({{"a", "b"}});
    edit(&doc);
    return doc.dump();
  };
}

std::function<std::string()> Text(std::string text) {
  return [text] { return text; };
}

TEST(MalformedTokenizerTest, Table) {
  using C = absl::StatusCode;
  const std::vector<MalformedCase> cases = {
      {"not_json", Text("this is not json"), C::kInvalidArgument, "not valid JSON"},
      {"truncated", Text("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 1"),
       C::kInvalidArgument, "not valid JSON"},
      {"empty_file", Text(""), C::kInvalidArgument, "not valid JSON"},
      {"root_array", Text("[1, 2]"), C::kInvalidArgument, "expected an object"},
      {"invalid_utf8_in_string", Text("{\"model\": \"\xff\"}"), C::kInvalidArgument,
       "not valid JSON"},
      {"deep_nesting", Text(std::string(100000, '[') + std::string(100000, ']')),
       C::kInvalidArgument, "nested deeper"},
      {"missing_model", Text("{\"version\": \"1.0\"}"), C::kInvalidArgument, "model: missing"},
      {"bad_version", Edit([](nlohmann::json* d) { (*d)["version"] = "2.0"; }), C::kUnimplemented,
       "version"},
      {"model_not_object", Edit([](nlohmann::json* d) { (*d)["model"] = 42; }), C::kInvalidArgument,
       "expected an object"},
      {"model_wordpiece", Edit([](nlohmann::json* d) { (*d)["model"]["type"] = "WordPiece"; }),
       C::kUnimplemented, "unsupported model \"WordPiece\""},
      {"vocab_missing", Edit([](nlohmann::json* d) { (*d)["model"].erase("vocab"); }),
       C::kInvalidArgument, "model.vocab: missing"},
      {"vocab_array", Edit([](nlohmann::json* d) {
         (*d)["model"]["vocab"] = {1, 2};
       }),
       C::kInvalidArgument, "expected an object of token -> id"},
      {"vocab_id_string", Edit([](nlohmann::json* d) { (*d)["model"]["vocab"]["x"] = "7"; }),
       C::kInvalidArgument, "expected a token id"},
      {"vocab_id_negative", Edit([](nlohmann::json* d) { (*d)["model"]["vocab"]["x"] = -3; }),
       C::kInvalidArgument, "outside"},
      {"vocab_id_float", Edit([](nlohmann::json* d) { (*d)["model"]["vocab"]["x"] = 2.5; }),
       C::kInvalidArgument, "expected a token id"},
      {"vocab_id_huge",
       Edit([](nlohmann::json* d) { (*d)["model"]["vocab"]["x"] = 18446744073709551615ull; }),
       C::kInvalidArgument, "outside"},
      {"vocab_sparse", Edit([](nlohmann::json* d) { (*d)["model"]["vocab"]["x"] = 16000000; }),
       C::kInvalidArgument, "only"},
      {"merges_missing", Edit([](nlohmann::json* d) { (*d)["model"].erase("merges"); }),
       C::kInvalidArgument, "model.merges: missing"},
      {"merges_not_array", Edit([](nlohmann::json* d) { (*d)["model"]["merges"] = "a b"; }),
       C::kInvalidArgument, "expected an array"},
      {"merge_unknown_left", Edit([](nlohmann::json* d) {
         (*d)["model"]["merges"].push_back({"zz", "b"});
       }),
       C::kInvalidArgument, "\"zz\", which is not in the vocabulary"},
      {"merge_unknown_result", Edit([](nlohmann::json* d) {
         (*d)["model"]["merges"].push_back({"b", "a"});
       }),
       C::kInvalidArgument, "makes \"ba\""},
      {"merges_mixed", Edit([](nlohmann::json* d) { (*d)["model"]["merges"].push_back("a b"); }),
       C::kInvalidArgument, "all pairs"},
      {"merge_pair_of_three", Edit([](nlohmann::json* d) {
         (*d)["model"]["merges"][0] = {"a", "b", "c"};
       }),
       C::kInvalidArgument, "pair of token strings"},
      {"merge_string_no_space", Edit([](nlohmann::json* d) { (*d)["model"]["merges"] = {"ab"}; }),
       C::kInvalidArgument, "not two tokens"},
      {"merge_string_two_spaces",
       Edit([](nlohmann::json* d) { (*d)["model"]["merges"] = {"a b c"}; }), C::kInvalidArgument,
       "not two tokens"},
      {"dropout", Edit([](nlohmann::json* d) { (*d)["model"]["dropout"] = 0.1; }),
       C::kUnimplemented, "dropout"},
      {"dropout_out_of_range", Edit([](nlohmann::json* d) { (*d)["model"]["dropout"] = 7; }),
       C::kInvalidArgument, "[0, 1]"},
      {"byte_fallback_missing_byte", Edit([](nlohmann::json* d) {
         (*d)["model"]["byte_fallback"] = true;
         (*d)["model"]["vocab"].erase(testing::Alphabet("\xff"));
       }),
       C::kUnimplemented, "byte_fallback"},
      {"byte_fallback_wrong_type",
       Edit([](nlohmann::json* d) { (*d)["model"]["byte_fallback"] = "yes"; }), C::kInvalidArgument,
       "expected true or false"},
      {"subword_prefix",
       Edit([](nlohmann::json* d) { (*d)["model"]["continuing_subword_prefix"] = "##"; }),
       C::kUnimplemented, "continuing_subword_prefix"},
      {"unk_not_in_vocab", Edit([](nlohmann::json* d) { (*d)["model"]["unk_token"] = "<unk>"; }),
       C::kInvalidArgument, "unk_token"},
      {"normalizer_lowercase", Edit([](nlohmann::json* d) {
         (*d)["normalizer"] = {{"type", "Lowercase"}};
       }),
       C::kUnimplemented, "unsupported normalizer \"Lowercase\""},
      {"normalizer_without_type", Edit([](nlohmann::json* d) {
         (*d)["normalizer"] = {{"x", 1}};
       }),
       C::kInvalidArgument, "missing \"type\""},
      {"pre_tokenizer_missing", Edit([](nlohmann::json* d) { (*d)["pre_tokenizer"] = nullptr; }),
       C::kUnimplemented, "ByteLevel pre_tokenizer"},
      {"pre_tokenizer_whitespace", Edit([](nlohmann::json* d) {
         (*d)["pre_tokenizer"] = {{"type", "Whitespace"}};
       }),
       C::kUnimplemented, "unsupported pre_tokenizer \"Whitespace\""},
      {"split_other_regex", Edit([](nlohmann::json* d) {
         (*d)["pre_tokenizer"] = {{"type", "Sequence"},
                                  {"pretokenizers",
                                   {{{"type", "Split"},
                                     {"pattern", {{"Regex", "\\s+"}}},
                                     {"behavior", "Isolated"},
                                     {"invert", false}},
                                    (*d)["decoder"]}}};
       }),
       C::kUnimplemented, "unsupported Split regex"},
      {"split_bad_behavior", Edit([](nlohmann::json* d) {
         (*d)["pre_tokenizer"] = {{"type", "Sequence"},
                                  {"pretokenizers",
                                   {{{"type", "Split"},
                                     {"pattern", {{"String", "x"}}},
                                     {"behavior", "Sideways"},
                                     {"invert", false}},
                                    (*d)["decoder"]}}};
       }),
       C::kInvalidArgument, "unknown behavior \"Sideways\""},
      {"byte_level_not_last", Edit([](nlohmann::json* d) {
         (*d)["pre_tokenizer"] = {
             {"type", "Sequence"},
             {"pretokenizers",
              {(*d)["decoder"], {{"type", "Digits"}, {"individual_digits", true}}}}};
       }),
       C::kUnimplemented, "as the last step"},
      {"too_many_steps", Edit([](nlohmann::json* d) {
         nlohmann::json steps = nlohmann::json::array();
         for (int i = 0; i < 100000; ++i) {
           steps.push_back({{"type", "Digits"}, {"individual_digits", false}});
         }
         steps.push_back((*d)["decoder"]);
         (*d)["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", steps}};
       }),
       C::kUnimplemented, "more than 64 steps"},
      {"decoder_missing", Edit([](nlohmann::json* d) { d->erase("decoder"); }), C::kUnimplemented,
       "ByteLevel decoder"},
      {"decoder_wordpiece", Edit([](nlohmann::json* d) {
         (*d)["decoder"] = {{"type", "WordPiece"}};
       }),
       C::kUnimplemented, "unsupported decoder \"WordPiece\""},
      {"post_processor_bert", Edit([](nlohmann::json* d) {
         (*d)["post_processor"] = {{"type", "BertProcessing"}};
       }),
       C::kUnimplemented, "unsupported post_processor \"BertProcessing\""},
      {"template_unknown_special", Edit([](nlohmann::json* d) {
         (*d)["post_processor"] = {{"type", "TemplateProcessing"},
                                   {"single",
                                    {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                                     {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
                                   {"special_tokens", nlohmann::json::object()}};
       }),
       C::kInvalidArgument, "missing from special_tokens"},
      {"template_bad_id", Edit([](nlohmann::json* d) {
         (*d)["post_processor"] = {{"type", "TemplateProcessing"},
                                   {"single",
                                    {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                                     {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
                                   {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {9999}}}}}}};
       }),
       C::kInvalidArgument, "not in the vocabulary"},
      {"added_tokens_not_array", Edit([](nlohmann::json* d) {
         (*d)["added_tokens"] = {{"content", "x"}};
       }),
       C::kInvalidArgument, "added_tokens: expected an array"},
      {"added_token_content_number", Edit([](nlohmann::json* d) {
         (*d)["added_tokens"] = {{{"id", 300}, {"content", 5}, {"special", true}}};
       }),
       C::kInvalidArgument, "added_tokens[0].content: expected a string"},
      {"added_token_flag_string", Edit([](nlohmann::json* d) {
         (*d)["added_tokens"] = {{{"id", 300}, {"content", "<x>"}, {"lstrip", "no"}}};
       }),
       C::kInvalidArgument, "added_tokens[0].lstrip"},
  };
  for (const MalformedCase& c : cases) {
    SCOPED_TRACE(c.name);
    absl::StatusOr<std::unique_ptr<tokenizer::Tokenizer>> t =
        tokenizer::ParseTokenizerJson(c.make(), "bad.json");
    ASSERT_FALSE(t.ok());
    EXPECT_EQ(t.status().code(), c.code) << t.status();
    EXPECT_THAT(std::string(t.status().message()), HasSubstr(c.message));
    EXPECT_THAT(std::string(t.status().message()), HasSubstr("bad.json"));
  }
}

// A valid SentencePiece-converted document with one change.
std::function<std::string()> SpmEdit(std::function<void(nlohmann::json*)> edit) {
  return [edit] {
    nlohmann::json doc = SpmBpeDocument({kMeta, "a", "b"}, {{"a", "b"}});
    edit(&doc);
    return doc.dump();
  };
}

nlohmann::json Metaspace(const std::string& scheme) {
  return {
      {"type", "Metaspace"}, {"replacement", kMeta}, {"prepend_scheme", scheme}, {"split", true}};
}

TEST(MalformedTokenizerTest, SentencePieceComponents) {
  using C = absl::StatusCode;
  auto decoders = [](nlohmann::json list) {
    return nlohmann::json{{"type", "Sequence"}, {"decoders", std::move(list)}};
  };
  const nlohmann::json fuse = {{"type", "Fuse"}};
  const nlohmann::json byte_fallback = {{"type", "ByteFallback"}};
  const nlohmann::json replace = {
      {"type", "Replace"}, {"pattern", {{"String", kMeta}}}, {"content", " "}};
  const std::vector<MalformedCase> cases = {
      {"metaspace_scheme",
       SpmEdit([](nlohmann::json* d) { (*d)["pre_tokenizer"] = Metaspace("sometimes"); }),
       C::kInvalidArgument, "unknown prepend_scheme \"sometimes\""},
      {"metaspace_add_prefix_space_mismatch", SpmEdit([](nlohmann::json* d) {
         (*d)["pre_tokenizer"] = Metaspace("always");
         (*d)["pre_tokenizer"]["add_prefix_space"] = false;
       }),
       C::kInvalidArgument, "does not match prepend_scheme"},
      {"metaspace_two_characters", SpmEdit([](nlohmann::json* d) {
         (*d)["pre_tokenizer"] = Metaspace("first");
         (*d)["pre_tokenizer"]["replacement"] = "__";
       }),
       C::kInvalidArgument, "pre_tokenizer.replacement: expected one character"},
      {"metaspace_in_sequence", SpmEdit([](nlohmann::json* d) {
         (*d)["pre_tokenizer"] = {
             {"type", "Sequence"},
             {"pretokenizers",
              {{{"type", "Digits"}, {"individual_digits", true}}, Metaspace("first")}}};
       }),
       C::kUnimplemented, "Metaspace pre-tokenizer is supported alone"},
      {"metaspace_with_byte_level", SpmEdit([](nlohmann::json* d) {
         (*d)["pre_tokenizer"] = {
             {"type", "Sequence"},
             {"pretokenizers",
              {Metaspace("first"), {{"type", "ByteLevel"}, {"add_prefix_space", false}}}}};
       }),
       C::kUnimplemented, "ByteLevel pre-tokenizer"},
      {"byte_level_decoder", SpmEdit([](nlohmann::json* d) {
         (*d)["decoder"] = {{"type", "ByteLevel"}};
       }),
       C::kUnimplemented, "needs a ByteLevel pre_tokenizer"},
      {"metaspace_decoder_with_byte_level",
       Edit([](nlohmann::json* d) { (*d)["decoder"] = Metaspace("always"); }), C::kUnimplemented,
       "unsupported decoder \"Metaspace\" with a ByteLevel pre_tokenizer"},
      {"decoder_missing", SpmEdit([](nlohmann::json* d) { d->erase("decoder"); }),
       C::kUnimplemented, "a decoder is required"},
      {"decoder_ctc", SpmEdit([](nlohmann::json* d) {
         (*d)["decoder"] = {{"type", "CTC"}};
       }),
       C::kUnimplemented, "unsupported decoder \"CTC\""},
      {"strip_stop", SpmEdit([&](nlohmann::json* d) {
         (*d)["decoder"] =
             decoders({fuse, {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 1}}});
       }),
       C::kUnimplemented, "stop > 0"},
      {"strip_missing_stop", SpmEdit([&](nlohmann::json* d) {
         (*d)["decoder"] = decoders({{{"type", "Strip"}, {"content", " "}, {"start", 1}}});
       }),
       C::kInvalidArgument, "missing \"stop\""},
      {"strip_negative", SpmEdit([&](nlohmann::json* d) {
         (*d)["decoder"] =
             decoders({{{"type", "Strip"}, {"content", " "}, {"start", -1}, {"stop", 0}}});
       }),
       C::kInvalidArgument, "decoder.decoders[0].start: expected an integer"},
      {"replace_after_fuse", SpmEdit([&](nlohmann::json* d) {
         (*d)["decoder"] = decoders({fuse, replace});
       }),
       C::kUnimplemented, "a Replace decoder after Fuse is unsupported"},
      {"byte_fallback_after_fuse", SpmEdit([&](nlohmann::json* d) {
         (*d)["decoder"] = decoders({fuse, byte_fallback});
       }),
       C::kUnimplemented, "ByteFallback after Fuse"},
      {"byte_fallback_twice", SpmEdit([&](nlohmann::json* d) {
         (*d)["decoder"] = decoders({byte_fallback, replace, byte_fallback});
       }),
       C::kUnimplemented, "a second ByteFallback"},
      {"replace_regex", SpmEdit([](nlohmann::json* d) {
         (*d)["normalizer"] = {
             {"type", "Replace"}, {"pattern", {{"Regex", " {2,}"}}}, {"content", " "}};
       }),
       C::kUnimplemented, "unsupported Replace regex \" {2,}\""},
      {"replace_empty", SpmEdit([](nlohmann::json* d) {
         (*d)["normalizer"] = {
             {"type", "Replace"}, {"pattern", {{"String", ""}}}, {"content", "x"}};
       }),
       C::kUnimplemented, "empty Replace pattern"},
      {"replace_pattern_kind", SpmEdit([](nlohmann::json* d) {
         (*d)["normalizer"] = {{"type", "Replace"}, {"pattern", {{"Glob", "*"}}}, {"content", "x"}};
       }),
       C::kInvalidArgument, "normalizer.pattern: expected {\"String\""},
      {"replace_expands", SpmEdit([](nlohmann::json* d) {
         nlohmann::json steps = nlohmann::json::array();
         for (int i = 0; i < 7; ++i) {
           steps.push_back(
               {{"type", "Replace"}, {"pattern", {{"String", "a"}}}, {"content", "aa"}});
         }
         (*d)["normalizer"] = {{"type", "Sequence"}, {"normalizers", steps}};
       }),
       C::kUnimplemented, "more than 64 times longer"},
      {"replace_decoder_expands", SpmEdit([](nlohmann::json* d) {
         (*d)["decoder"] = {{"type", "Replace"},
                            {"pattern", {{"String", "a"}}},
                            {"content", std::string(65, 'a')}};
       }),
       C::kUnimplemented, "more than 64 times longer"},
      {"prepend_not_string", SpmEdit([](nlohmann::json* d) {
         (*d)["normalizer"] = {{"type", "Prepend"}, {"prepend", 3}};
       }),
       C::kInvalidArgument, "normalizer.prepend: expected a string"},
      {"normalizer_precompiled", SpmEdit([](nlohmann::json* d) {
         (*d)["normalizer"] = {{"type", "Precompiled"}, {"precompiled_charsmap", "AAAA"}};
       }),
       C::kUnimplemented, "unsupported normalizer \"Precompiled\""},
      {"unigram", SpmEdit([](nlohmann::json* d) { (*d)["model"]["type"] = "Unigram"; }),
       C::kUnimplemented, "unsupported model \"Unigram\""},
  };
  for (const MalformedCase& c : cases) {
    SCOPED_TRACE(c.name);
    absl::StatusOr<std::unique_ptr<tokenizer::Tokenizer>> t =
        tokenizer::ParseTokenizerJson(c.make(), "bad.json");
    ASSERT_FALSE(t.ok());
    EXPECT_EQ(t.status().code(), c.code) << t.status();
    EXPECT_THAT(std::string(t.status().message()), HasSubstr(c.message));
    EXPECT_THAT(std::string(t.status().message()), HasSubstr("bad.json"));
  }
  EXPECT_TRUE(tokenizer::ParseTokenizerJson(SpmEdit([](nlohmann::json*) {})(), "ok.json").ok());
}

TEST(MalformedTokenizerTest, TheBaseDocumentIsValid) {
  EXPECT_TRUE(
      tokenizer::ParseTokenizerJson(ByteLevelBpeDocument({{"a", "b"}}).dump(), "ok.json").ok());
}

TEST(MalformedTokenizerTest, MissingFile) {
  EXPECT_EQ(tokenizer::LoadTokenizerJson("/nonexistent/tokenizer.json").status().code(),
            absl::StatusCode::kNotFound);
}

// Every truncation of a valid file fails cleanly (a cheap stand-in for the fuzzer).
TEST(MalformedTokenizerTest, EveryPrefixOfAValidFileIsHandled) {
  nlohmann::json doc = ByteLevelBpeDocument({{"a", "b"}, {"ab", "c"}});
  doc["added_tokens"] = {{{"id", 258}, {"content", "<|endoftext|>"}, {"special", true}}};
  const std::string text = doc.dump();
  for (size_t n = 0; n < text.size(); n += 7) {
    EXPECT_FALSE(tokenizer::ParseTokenizerJson(text.substr(0, n), "prefix.json").ok());
  }
  EXPECT_TRUE(tokenizer::ParseTokenizerJson(text, "whole.json").ok());
}

}  // namespace
}  // namespace mamba
