// Hugging Face tokenizer.json (BPE) loading and the encode/decode pipeline:
//
//   text -> added tokens matched on the raw text (normalized: false)
//        -> normalizer on the text between them (each piece alone: Prepend("▁") prepends to
//           every piece)
//        -> added tokens matched on the normalized text (normalized: true)
//        -> pre-tokenizer (Split/Digits steps, then ByteLevel; or Metaspace; or none)
//        -> BPE per word (bytes for byte-level files, characters for the others)
//        -> post-processor (TemplateProcessing, when add_special_tokens)
//
//   ids  -> ByteLevel decoder: the bytes of each token, concatenated, then U+FFFD for what is
//           not UTF-8; or the decoder chain (decoder_chain.h), run as a stream whose state is
//           the DecodeStreamState an IncrementalDecoder keeps, so that Decode and streaming
//           are one code path.
//
// Every step follows `tokenizers` (the Rust library) closely enough to give the same ids,
// including its quirks; the comments name the quirk where the code looks odd.
#include <algorithm>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/json_nesting.h"
#include "common/status_macros.h"
#include "engine/tokenizer/added_vocabulary.h"
#include "engine/tokenizer/bpe_model.h"
#include "engine/tokenizer/byte_level_alphabet.h"
#include "engine/tokenizer/decoder_chain.h"
#include "engine/tokenizer/gpt2_pattern.h"
#include "engine/tokenizer/normalizer.h"
#include "engine/tokenizer/pre_tokenizer.h"
#include "engine/tokenizer/tokenizer.h"

namespace mamba::tokenizer {
namespace {

using Json = nlohmann::json;
using internal::AddedTokenMatcher;
using internal::AddedTokenSpec;
using internal::AddedTokenSplit;
using internal::BpeModel;
using internal::BpeOptions;
using internal::DecoderChain;
using internal::DecoderStep;
using internal::NormalizationForm;
using internal::Normalizer;
using internal::NormalizerStep;
using internal::PreTokenizer;
using internal::PreTokenizerStep;
using internal::SplitBehavior;

// Bounds that keep a hostile file from exhausting memory or stack. Real vocabularies have at
// most a few hundred thousand tokens, a few hundred bytes long.
constexpr size_t kMaxJsonBytes = size_t{512} << 20;
constexpr int kMaxJsonDepth = common::kMaxJsonNesting;
constexpr int64_t kMaxTokenId = (int64_t{1} << 24) - 1;
constexpr size_t kMaxTokenBytes = size_t{1} << 16;
constexpr size_t kMaxAddedTokens = size_t{1} << 20;
constexpr size_t kMaxTemplateTokens = 64;
// Pre-tokenizer steps run recursively (one level per step), so their number is bounded too.
constexpr size_t kMaxComponentSteps = 64;
// Text longer than this is refused by Encode (ICU takes int32 lengths; nobody sends 1 GiB).
constexpr size_t kMaxEncodeBytes = size_t{1} << 30;
// A Strip decoder removes at most this many characters (the reference takes any usize).
constexpr int64_t kMaxStrip = 1 << 20;
// Replace and Prepend texts are a character or two in real files. Bounding them, and how much
// the Replace steps of a normalizer or decoder can multiply a text's length, keeps a hostile
// file from turning a short text into gigabytes.
constexpr size_t kMaxReplaceBytes = 1024;
constexpr size_t kMaxExpansion = 64;
constexpr std::string_view kReplacementCharacter = "\xef\xbf\xbd";  // U+FFFD

// ---------------------------------------------------------------------------------------------
// JSON access with errors that say where.

class JsonReader {
 public:
  explicit JsonReader(std::string_view source) : source_(source) {}

  absl::Status Error(std::string_view path, std::string_view message) const {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(source_), ": ", std::string(path), ": ", std::string(message)));
  }
  absl::Status Unsupported(std::string_view path, std::string_view message) const {
    return absl::UnimplementedError(
        absl::StrCat(std::string(source_), ": ", std::string(path), ": ", std::string(message)));
  }

  static std::string TypeName(const Json& j) { return j.type_name(); }

  absl::Status ExpectObject(const Json& j, std::string_view path) const {
    if (!j.is_object()) {
      return Error(path, absl::StrCat("expected an object, found ", TypeName(j)));
    }
    return absl::OkStatus();
  }

  // The member `key` of object `j`, or nullptr when absent or null.
  static const Json* Member(const Json& j, const char* key) {
    const auto it = j.find(key);
    if (it == j.end() || it->is_null()) return nullptr;
    return &*it;
  }

  absl::StatusOr<bool> Bool(const Json& j, const char* key, bool fallback,
                            std::string_view path) const {
    const Json* v = Member(j, key);
    if (v == nullptr) return fallback;
    if (!v->is_boolean()) {
      return Error(absl::StrCat(std::string(path), ".", key),
                   absl::StrCat("expected true or false, found ", TypeName(*v)));
    }
    return v->get<bool>();
  }

  absl::StatusOr<std::optional<std::string>> OptionalString(const Json& j, const char* key,
                                                            std::string_view path) const {
    const Json* v = Member(j, key);
    if (v == nullptr) return std::optional<std::string>();
    if (!v->is_string()) {
      return Error(absl::StrCat(std::string(path), ".", key),
                   absl::StrCat("expected a string, found ", TypeName(*v)));
    }
    return std::optional<std::string>(v->get<std::string>());
  }

  absl::StatusOr<std::string> RequiredString(const Json& j, const char* key,
                                             std::string_view path) const {
    MAMBA_ASSIGN_OR_RETURN(std::optional<std::string> v, OptionalString(j, key, path));
    if (!v.has_value()) {
      return Error(path, absl::StrCat("missing \"", key, "\""));
    }
    return *std::move(v);
  }

  // A token id: an integer in [0, kMaxTokenId].
  absl::StatusOr<int32_t> TokenId(const Json& v, std::string_view path) const {
    if (!v.is_number_integer()) {
      return Error(path, absl::StrCat("expected a token id (an integer), found ", TypeName(v)));
    }
    // Unsigned values above INT64_MAX must not wrap: compare in the unsigned domain first.
    if (v.is_number_unsigned() ? v.get<uint64_t>() > static_cast<uint64_t>(kMaxTokenId)
                               : (v.get<int64_t>() < 0 || v.get<int64_t>() > kMaxTokenId)) {
      return Error(path, absl::StrCat("token id ", v.dump(), " is outside [0, ", kMaxTokenId, "]"));
    }
    return static_cast<int32_t>(v.get<int64_t>());
  }

  // A non-negative integer at most `max` (`fallback` when absent).
  absl::StatusOr<int64_t> Count(const Json& j, const char* key, int64_t fallback, int64_t max,
                                std::string_view path) const {
    const Json* v = Member(j, key);
    if (v == nullptr) return fallback;
    if (!v->is_number_integer() ||
        (v->is_number_unsigned() ? v->get<uint64_t>() > static_cast<uint64_t>(max)
                                 : (v->get<int64_t>() < 0 || v->get<int64_t>() > max))) {
      return Error(absl::StrCat(std::string(path), ".", key),
                   absl::StrCat("expected an integer in [0, ", max, "], found ", v->dump()));
    }
    return v->get<int64_t>();
  }

  // A string of exactly one character (a Rust `char`), as UTF-8.
  absl::StatusOr<std::string> Character(const Json& j, const char* key,
                                        std::string_view path) const {
    MAMBA_ASSIGN_OR_RETURN(std::string c, RequiredString(j, key, path));
    // JSON strings are valid UTF-8: one character is one byte that is not a continuation byte.
    const auto starts = std::count_if(
        c.begin(), c.end(), [](char b) { return (static_cast<unsigned char>(b) & 0xc0) != 0x80; });
    if (starts != 1) {
      return Error(absl::StrCat(std::string(path), ".", key),
                   absl::StrCat("expected one character, found \"", c, "\""));
    }
    return c;
  }

  // The "type" of a component object.
  absl::StatusOr<std::string> Type(const Json& j, std::string_view path) const {
    MAMBA_RETURN_IF_ERROR(ExpectObject(j, path));
    return RequiredString(j, "type", path);
  }

 private:
  std::string_view source_;
};

// ---------------------------------------------------------------------------------------------
// Components.

// The text a Replace's pattern matches: a String, or a Regex made of literal characters only
// (escaped metacharacters included), which matches exactly what the reference's regex matches.
std::optional<std::string> RegexAsLiteral(std::string_view regex) {
  constexpr std::string_view kMeta = "\\^$.|?*+()[]{}";
  constexpr std::string_view kEscapable = "\\^$.|?*+()[]{}/-# ";
  std::string literal;
  for (size_t i = 0; i < regex.size(); ++i) {
    const char c = regex[i];
    if (c == '\\') {
      if (i + 1 == regex.size()) return std::nullopt;
      const char e = regex[++i];
      if (e == 't') {
        literal.push_back('\t');
      } else if (e == 'n') {
        literal.push_back('\n');
      } else if (e == 'r') {
        literal.push_back('\r');
      } else if (kEscapable.find(e) != std::string_view::npos) {
        literal.push_back(e);
      } else {
        return std::nullopt;
      }
    } else if (kMeta.find(c) != std::string_view::npos) {
      return std::nullopt;
    } else {
      literal.push_back(c);
    }
  }
  return literal;
}

// A Replace (normalizer or decoder): the literal its pattern matches, and its content.
absl::Status ParseReplace(const JsonReader& r, const Json& j, const std::string& path,
                          std::string* pattern, std::string* content) {
  const Json* p = JsonReader::Member(j, "pattern");
  const std::string pattern_path = path + ".pattern";
  if (p == nullptr || !p->is_object() || p->size() != 1) {
    return r.Error(pattern_path, "expected {\"String\": ...} or {\"Regex\": ...}");
  }
  if (const Json* literal = JsonReader::Member(*p, "String"); literal != nullptr) {
    if (!literal->is_string()) return r.Error(pattern_path + ".String", "expected a string");
    *pattern = literal->get<std::string>();
  } else if (const Json* regex = JsonReader::Member(*p, "Regex"); regex != nullptr) {
    if (!regex->is_string()) return r.Error(pattern_path + ".Regex", "expected a string");
    std::optional<std::string> literal_text = RegexAsLiteral(regex->get<std::string>());
    if (!literal_text.has_value()) {
      return r.Unsupported(pattern_path,
                           absl::StrCat("unsupported Replace regex \"", regex->get<std::string>(),
                                        "\" (only regexes of literal characters are "
                                        "supported)"));
    }
    *pattern = *std::move(literal_text);
  } else {
    return r.Error(pattern_path, "expected {\"String\": ...} or {\"Regex\": ...}");
  }
  if (pattern->empty()) {
    return r.Unsupported(pattern_path, "an empty Replace pattern is unsupported");
  }
  MAMBA_ASSIGN_OR_RETURN(*content, r.RequiredString(j, "content", path));
  if (pattern->size() > kMaxReplaceBytes || content->size() > kMaxReplaceBytes) {
    return r.Unsupported(path, absl::StrCat("Replace pattern and content are limited to ",
                                            kMaxReplaceBytes, " bytes"));
  }
  return absl::OkStatus();
}

// How many times longer a text can get through Replace steps (each multiplies it by at most
// ceil(content / pattern)), capped past kMaxExpansion.
size_t ReplaceExpansion(size_t expansion, const std::string& pattern, const std::string& content) {
  const size_t factor = std::max<size_t>(1, (content.size() + pattern.size() - 1) / pattern.size());
  return std::min(expansion * factor, kMaxExpansion + 1);
}

absl::Status ParseNormalizer(const JsonReader& r, const Json& j, const std::string& path,
                             std::vector<NormalizerStep>* steps) {
  if (j.is_null()) return absl::OkStatus();
  MAMBA_ASSIGN_OR_RETURN(std::string type, r.Type(j, path));
  NormalizerStep step;
  if (type == "NFC") {
    step.form = NormalizationForm::kNfc;
  } else if (type == "NFD") {
    step.form = NormalizationForm::kNfd;
  } else if (type == "NFKC") {
    step.form = NormalizationForm::kNfkc;
  } else if (type == "NFKD") {
    step.form = NormalizationForm::kNfkd;
  } else if (type == "Prepend") {
    step.kind = NormalizerStep::Kind::kPrepend;
    MAMBA_ASSIGN_OR_RETURN(step.text, r.RequiredString(j, "prepend", path));
    if (step.text.empty()) return absl::OkStatus();  // prepends nothing
    if (step.text.size() > kMaxReplaceBytes) {
      return r.Unsupported(
          path, absl::StrCat("a Prepend longer than ", kMaxReplaceBytes, " bytes is unsupported"));
    }
  } else if (type == "Replace") {
    step.kind = NormalizerStep::Kind::kReplace;
    MAMBA_RETURN_IF_ERROR(ParseReplace(r, j, path, &step.text, &step.content));
  } else if (type == "Sequence") {
    const Json* list = JsonReader::Member(j, "normalizers");
    if (list == nullptr || !list->is_array()) {
      return r.Error(path, "a Sequence normalizer needs a \"normalizers\" array");
    }
    for (size_t i = 0; i < list->size(); ++i) {
      MAMBA_RETURN_IF_ERROR(
          ParseNormalizer(r, (*list)[i], absl::StrCat(path, ".normalizers[", i, "]"), steps));
    }
    return absl::OkStatus();
  } else {
    return r.Unsupported(path, absl::StrCat("unsupported normalizer \"", type,
                                            "\" (supported: NFC, NFD, NFKC, NFKD, Prepend, "
                                            "Replace, Sequence)"));
  }
  steps->push_back(std::move(step));
  return absl::OkStatus();
}

// Metaspace (pre-tokenizer or decoder): replacement, prepend_scheme and split, with the
// reference's reading of the legacy add_prefix_space.
absl::Status ParseMetaspace(const JsonReader& r, const Json& j, const std::string& path,
                            PreTokenizerStep* step) {
  step->kind = PreTokenizerStep::Kind::kMetaspace;
  MAMBA_ASSIGN_OR_RETURN(step->replacement, r.Character(j, "replacement", path));
  MAMBA_ASSIGN_OR_RETURN(std::optional<std::string> scheme,
                         r.OptionalString(j, "prepend_scheme", path));
  using Scheme = PreTokenizerStep::PrependScheme;
  step->prepend_scheme = Scheme::kAlways;
  if (scheme.has_value()) {
    if (*scheme == "first") {
      step->prepend_scheme = Scheme::kFirst;
    } else if (*scheme == "never") {
      step->prepend_scheme = Scheme::kNever;
    } else if (*scheme != "always") {
      return r.Error(path + ".prepend_scheme",
                     absl::StrCat("unknown prepend_scheme \"", *scheme,
                                  "\" (expected always, first or never)"));
    }
  }
  if (JsonReader::Member(j, "add_prefix_space") != nullptr) {
    MAMBA_ASSIGN_OR_RETURN(bool add_prefix_space, r.Bool(j, "add_prefix_space", true, path));
    if (!add_prefix_space && step->prepend_scheme != Scheme::kNever) {
      return r.Error(path,
                     "add_prefix_space false does not match prepend_scheme (the reference "
                     "refuses this file)");
    }
  }
  MAMBA_ASSIGN_OR_RETURN(step->split, r.Bool(j, "split", true, path));
  return absl::OkStatus();
}

absl::StatusOr<SplitBehavior> ParseBehavior(const JsonReader& r, const Json& j,
                                            const std::string& path) {
  MAMBA_ASSIGN_OR_RETURN(std::string behavior, r.RequiredString(j, "behavior", path));
  if (behavior == "Removed") return SplitBehavior::kRemoved;
  if (behavior == "Isolated") return SplitBehavior::kIsolated;
  if (behavior == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (behavior == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (behavior == "Contiguous") return SplitBehavior::kContiguous;
  return r.Error(path + ".behavior",
                 absl::StrCat("unknown behavior \"", behavior,
                              "\" (expected Removed, Isolated, MergedWithPrevious, "
                              "MergedWithNext or Contiguous)"));
}

absl::Status ParsePreTokenizer(const JsonReader& r, const Json& j, const std::string& path,
                               std::vector<PreTokenizerStep>* steps) {
  MAMBA_ASSIGN_OR_RETURN(std::string type, r.Type(j, path));
  PreTokenizerStep step;
  if (type == "ByteLevel") {
    step.kind = PreTokenizerStep::Kind::kByteLevel;
    MAMBA_ASSIGN_OR_RETURN(step.add_prefix_space, r.Bool(j, "add_prefix_space", true, path));
    MAMBA_ASSIGN_OR_RETURN(step.use_regex, r.Bool(j, "use_regex", true, path));
    MAMBA_RETURN_IF_ERROR(r.Bool(j, "trim_offsets", true, path).status());
  } else if (type == "Split") {
    const Json* pattern = JsonReader::Member(j, "pattern");
    if (pattern == nullptr || !pattern->is_object() || pattern->size() != 1) {
      return r.Error(path + ".pattern", "expected {\"String\": ...} or {\"Regex\": ...}");
    }
    const std::string pattern_path = path + ".pattern";
    if (const Json* literal = JsonReader::Member(*pattern, "String"); literal != nullptr) {
      if (!literal->is_string()) return r.Error(pattern_path + ".String", "expected a string");
      step.kind = PreTokenizerStep::Kind::kSplitLiteral;
      step.literal = literal->get<std::string>();
      if (step.literal.empty()) {
        return r.Unsupported(pattern_path, "an empty Split pattern is unsupported");
      }
    } else if (const Json* regex = JsonReader::Member(*pattern, "Regex"); regex != nullptr) {
      if (!regex->is_string()) return r.Error(pattern_path + ".Regex", "expected a string");
      if (regex->get<std::string>() != internal::kGpt2Pattern) {
        return r.Unsupported(pattern_path,
                             absl::StrCat("unsupported Split regex \"", regex->get<std::string>(),
                                          "\" (only the GPT-2 pattern \"",
                                          std::string(internal::kGpt2Pattern), "\" is supported)"));
      }
      step.kind = PreTokenizerStep::Kind::kSplitGpt2;
    } else {
      return r.Error(pattern_path, "expected {\"String\": ...} or {\"Regex\": ...}");
    }
    MAMBA_ASSIGN_OR_RETURN(step.behavior, ParseBehavior(r, j, path));
    MAMBA_ASSIGN_OR_RETURN(step.invert, r.Bool(j, "invert", false, path));
  } else if (type == "Metaspace") {
    MAMBA_RETURN_IF_ERROR(ParseMetaspace(r, j, path, &step));
  } else if (type == "Digits") {
    step.kind = PreTokenizerStep::Kind::kDigits;
    MAMBA_ASSIGN_OR_RETURN(bool individual, r.Bool(j, "individual_digits", false, path));
    step.behavior = individual ? SplitBehavior::kIsolated : SplitBehavior::kContiguous;
  } else if (type == "Sequence") {
    const Json* list = JsonReader::Member(j, "pretokenizers");
    if (list == nullptr || !list->is_array()) {
      return r.Error(path, "a Sequence pre_tokenizer needs a \"pretokenizers\" array");
    }
    for (size_t i = 0; i < list->size(); ++i) {
      MAMBA_RETURN_IF_ERROR(
          ParsePreTokenizer(r, (*list)[i], absl::StrCat(path, ".pretokenizers[", i, "]"), steps));
    }
    return absl::OkStatus();
  } else {
    return r.Unsupported(path, absl::StrCat("unsupported pre_tokenizer \"", type,
                                            "\" (supported: ByteLevel, Metaspace, Split, Digits, "
                                            "Sequence)"));
  }
  steps->push_back(std::move(step));
  return absl::OkStatus();
}

// One decoder of the file, out of its Sequences.
struct ParsedDecoder {
  enum class Kind { kByteLevel, kByteFallback, kFuse, kStep };
  Kind kind = Kind::kStep;
  DecoderStep step;  // kStep
  std::string path;
  std::string type;
};

absl::Status ParseDecoders(const JsonReader& r, const Json& j, const std::string& path,
                           std::vector<ParsedDecoder>* decoders) {
  MAMBA_ASSIGN_OR_RETURN(std::string type, r.Type(j, path));
  ParsedDecoder d;
  d.path = path;
  d.type = type;
  if (type == "ByteLevel") {
    d.kind = ParsedDecoder::Kind::kByteLevel;
  } else if (type == "ByteFallback") {
    d.kind = ParsedDecoder::Kind::kByteFallback;
  } else if (type == "Fuse") {
    d.kind = ParsedDecoder::Kind::kFuse;
  } else if (type == "Replace") {
    d.step.kind = DecoderStep::Kind::kReplace;
    MAMBA_RETURN_IF_ERROR(ParseReplace(r, j, path, &d.step.pattern, &d.step.content));
  } else if (type == "Strip") {
    d.step.kind = DecoderStep::Kind::kStrip;
    MAMBA_ASSIGN_OR_RETURN(d.step.strip, r.Character(j, "content", path));
    for (const char* key : {"start", "stop"}) {
      if (JsonReader::Member(j, key) == nullptr) {
        return r.Error(path, absl::StrCat("missing \"", key, "\""));
      }
    }
    MAMBA_ASSIGN_OR_RETURN(const int64_t start, r.Count(j, "start", 0, kMaxStrip, path));
    MAMBA_ASSIGN_OR_RETURN(const int64_t stop, r.Count(j, "stop", 0, kMaxStrip, path));
    if (stop != 0) {
      // The reference panics on texts shorter than `stop`; no converter writes one.
      return r.Unsupported(path + ".stop", "a Strip decoder with stop > 0 is unsupported");
    }
    d.step.strip_start = static_cast<int32_t>(start);
  } else if (type == "Metaspace") {
    PreTokenizerStep metaspace;
    MAMBA_RETURN_IF_ERROR(ParseMetaspace(r, j, path, &metaspace));
    d.step.kind = DecoderStep::Kind::kMetaspace;
    d.step.replacement = metaspace.replacement;
    d.step.prepend_never = metaspace.prepend_scheme == PreTokenizerStep::PrependScheme::kNever;
  } else if (type == "Sequence") {
    const Json* list = JsonReader::Member(j, "decoders");
    if (list == nullptr || !list->is_array()) {
      return r.Error(path, "a Sequence decoder needs a \"decoders\" array");
    }
    for (size_t i = 0; i < list->size(); ++i) {
      MAMBA_RETURN_IF_ERROR(
          ParseDecoders(r, (*list)[i], absl::StrCat(path, ".decoders[", i, "]"), decoders));
    }
    return absl::OkStatus();
  } else {
    return r.Unsupported(path, absl::StrCat("unsupported decoder \"", type,
                                            "\" (supported: ByteLevel, Metaspace, Replace, "
                                            "Strip, ByteFallback, Fuse, Sequence)"));
  }
  decoders->push_back(std::move(d));
  return absl::OkStatus();
}

// The decoders of a file that is not byte-level, in the phases decoder_chain.h describes.
absl::StatusOr<DecoderChain> CompileDecoderChain(const JsonReader& r,
                                                 const std::vector<ParsedDecoder>& decoders) {
  enum class Phase { kTokens, kElements, kText } phase = Phase::kTokens;
  DecoderChain chain;
  for (const ParsedDecoder& d : decoders) {
    switch (d.kind) {
      case ParsedDecoder::Kind::kByteLevel:
        return r.Unsupported(d.path,
                             "the ByteLevel decoder needs a ByteLevel pre_tokenizer "
                             "(this file's vocabulary is not byte-level)");
      case ParsedDecoder::Kind::kByteFallback:
        if (phase != Phase::kTokens) {
          return r.Unsupported(d.path, phase == Phase::kText
                                           ? "ByteFallback after Fuse is unsupported"
                                           : "a second ByteFallback is unsupported");
        }
        chain.byte_fallback = true;
        phase = Phase::kElements;
        break;
      case ParsedDecoder::Kind::kFuse:
        phase = Phase::kText;
        break;
      case ParsedDecoder::Kind::kStep:
        if (phase == Phase::kTokens) {
          chain.token_steps.push_back(d.step);
        } else if (phase == Phase::kElements) {
          chain.element_steps.push_back(d.step);
        } else if (d.step.kind == DecoderStep::Kind::kStrip) {
          chain.text_steps.push_back(d.step);
        } else {
          return r.Unsupported(d.path, absl::StrCat("a ", d.type,
                                                    " decoder after Fuse is "
                                                    "unsupported (only Strip may follow Fuse)"));
        }
        break;
    }
  }
  return chain;
}

// One TemplateProcessing `single` template: ids to put before and after the sequence.
struct Template {
  std::vector<int32_t> before;
  std::vector<int32_t> after;
};

absl::Status ParsePostProcessor(const JsonReader& r, const Json& j, const std::string& path,
                                std::vector<Template>* templates) {
  if (j.is_null()) return absl::OkStatus();
  MAMBA_ASSIGN_OR_RETURN(std::string type, r.Type(j, path));
  if (type == "ByteLevel") {
    // Only trims offsets; ids are unchanged.
    return r.Bool(j, "trim_offsets", true, path).status();
  }
  if (type == "Sequence") {
    const Json* list = JsonReader::Member(j, "processors");
    if (list == nullptr || !list->is_array()) {
      return r.Error(path, "a Sequence post_processor needs a \"processors\" array");
    }
    for (size_t i = 0; i < list->size(); ++i) {
      MAMBA_RETURN_IF_ERROR(
          ParsePostProcessor(r, (*list)[i], absl::StrCat(path, ".processors[", i, "]"), templates));
    }
    return absl::OkStatus();
  }
  if (type != "TemplateProcessing") {
    return r.Unsupported(path, absl::StrCat("unsupported post_processor \"", type,
                                            "\" (supported: ByteLevel, TemplateProcessing, "
                                            "Sequence)"));
  }
  const Json* specials = JsonReader::Member(j, "special_tokens");
  if (specials != nullptr && !specials->is_object()) {
    return r.Error(path + ".special_tokens", "expected an object");
  }
  const Json* single = JsonReader::Member(j, "single");
  if (single == nullptr || !single->is_array()) {
    return r.Error(path + ".single", "expected an array of template pieces");
  }
  Template tmpl;
  bool seen_sequence = false;
  for (size_t i = 0; i < single->size(); ++i) {
    const std::string piece_path = absl::StrCat(path, ".single[", i, "]");
    const Json& piece = (*single)[i];
    if (!piece.is_object() || piece.size() != 1) {
      return r.Error(piece_path, "expected {\"Sequence\": ...} or {\"SpecialToken\": ...}");
    }
    if (const Json* seq = JsonReader::Member(piece, "Sequence"); seq != nullptr) {
      MAMBA_RETURN_IF_ERROR(r.ExpectObject(*seq, piece_path + ".Sequence"));
      MAMBA_ASSIGN_OR_RETURN(std::string id, r.RequiredString(*seq, "id", piece_path));
      if (id != "A") {
        return r.Unsupported(piece_path, absl::StrCat("a single-sequence template can only use "
                                                      "sequence A, not ",
                                                      id));
      }
      if (seen_sequence) return r.Unsupported(piece_path, "sequence A appears twice");
      seen_sequence = true;
      continue;
    }
    const Json* special = JsonReader::Member(piece, "SpecialToken");
    if (special == nullptr) {
      return r.Error(piece_path, "expected {\"Sequence\": ...} or {\"SpecialToken\": ...}");
    }
    MAMBA_RETURN_IF_ERROR(r.ExpectObject(*special, piece_path + ".SpecialToken"));
    MAMBA_ASSIGN_OR_RETURN(std::string name,
                           r.RequiredString(*special, "id", piece_path + ".SpecialToken"));
    const Json* entry = specials == nullptr ? nullptr : JsonReader::Member(*specials, name.c_str());
    if (entry == nullptr) {
      return r.Error(piece_path,
                     absl::StrCat("special token \"", name, "\" is missing from special_tokens"));
    }
    const std::string entry_path = absl::StrCat(path, ".special_tokens[\"", name, "\"]");
    MAMBA_RETURN_IF_ERROR(r.ExpectObject(*entry, entry_path));
    const Json* ids = JsonReader::Member(*entry, "ids");
    if (ids == nullptr || !ids->is_array() || ids->size() > kMaxTemplateTokens) {
      return r.Error(entry_path + ".ids",
                     absl::StrCat("expected an array of at most ", kMaxTemplateTokens, " ids"));
    }
    std::vector<int32_t>& target = seen_sequence ? tmpl.after : tmpl.before;
    for (size_t k = 0; k < ids->size(); ++k) {
      MAMBA_ASSIGN_OR_RETURN(int32_t id,
                             r.TokenId((*ids)[k], absl::StrCat(entry_path, ".ids[", k, "]")));
      target.push_back(id);
    }
  }
  if (!seen_sequence) return r.Unsupported(path + ".single", "the template lacks sequence A");
  templates->push_back(std::move(tmpl));
  return absl::OkStatus();
}

struct ParsedAddedToken {
  std::string content;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = true;
  bool special = false;

  bool operator==(const ParsedAddedToken& o) const {
    return content == o.content && single_word == o.single_word && lstrip == o.lstrip &&
           rstrip == o.rstrip && normalized == o.normalized && special == o.special;
  }
};

absl::StatusOr<std::vector<ParsedAddedToken>> ParseAddedTokens(const JsonReader& r,
                                                               const Json* list) {
  std::vector<ParsedAddedToken> tokens;
  if (list == nullptr) return tokens;
  if (!list->is_array()) return r.Error("added_tokens", "expected an array");
  if (list->size() > kMaxAddedTokens) {
    return r.Error("added_tokens", absl::StrCat("more than ", kMaxAddedTokens, " added tokens"));
  }
  for (size_t i = 0; i < list->size(); ++i) {
    const std::string path = absl::StrCat("added_tokens[", i, "]");
    const Json& j = (*list)[i];
    MAMBA_RETURN_IF_ERROR(r.ExpectObject(j, path));
    ParsedAddedToken token;
    MAMBA_ASSIGN_OR_RETURN(token.content, r.RequiredString(j, "content", path));
    if (token.content.size() > kMaxTokenBytes) {
      return r.Error(path, absl::StrCat("content longer than ", kMaxTokenBytes, " bytes"));
    }
    if (const Json* id = JsonReader::Member(j, "id"); id != nullptr) {
      // Checked for type and range only: like the reference, ids are assigned from the
      // vocabulary (see BuildAddedVocabulary), the stored one is advisory.
      MAMBA_RETURN_IF_ERROR(r.TokenId(*id, path + ".id").status());
    }
    MAMBA_ASSIGN_OR_RETURN(token.special, r.Bool(j, "special", false, path));
    MAMBA_ASSIGN_OR_RETURN(token.single_word, r.Bool(j, "single_word", false, path));
    MAMBA_ASSIGN_OR_RETURN(token.lstrip, r.Bool(j, "lstrip", false, path));
    MAMBA_ASSIGN_OR_RETURN(token.rstrip, r.Bool(j, "rstrip", false, path));
    MAMBA_ASSIGN_OR_RETURN(token.normalized, r.Bool(j, "normalized", !token.special, path));
    tokens.push_back(std::move(token));
  }
  return tokens;
}

// ---------------------------------------------------------------------------------------------
// The tokenizer.

class HfTokenizer final : public Tokenizer {
 public:
  HfTokenizer(Normalizer normalizer, PreTokenizer pre_tokenizer, BpeModel bpe)
      : normalizer_(std::move(normalizer)),
        pre_tokenizer_(std::move(pre_tokenizer)),
        bpe_(std::move(bpe)) {}

  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text,
                                              bool add_special_tokens) const override;
  absl::StatusOr<std::string> DecodeBytes(absl::Span<const int32_t> ids,
                                          bool skip_special_tokens) const override;
  absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids,
                                     bool skip_special_tokens) const override;
  int32_t vocab_size() const override { return static_cast<int32_t>(id_to_token_.size()); }
  std::optional<int32_t> TokenToId(std::string_view token) const override {
    const auto it = token_to_id_.find(absl::string_view(token.data(), token.size()));
    if (it == token_to_id_.end()) return std::nullopt;
    return it->second;
  }
  std::string IdToToken(int32_t id) const override {
    if (id < 0 || id >= vocab_size()) return "";
    return id_to_token_[id];
  }
  std::optional<int32_t> eos_id() const override { return eos_id_; }
  bool IsSpecial(int32_t id) const override {
    return id >= 0 && id < vocab_size() && special_[id] != 0;
  }
  std::string kind() const override { return "bpe"; }

 protected:
  absl::Status DecodeStreamStep(int32_t id, bool skip_special_tokens, DecodeStreamState* state,
                                std::string* out) const override;
  void DecodeStreamFlush(DecodeStreamState* state, std::string* out) const override;

 private:
  friend absl::StatusOr<std::unique_ptr<Tokenizer>> BuildHfTokenizer(const JsonReader& r,
                                                                     const Json& root);

  absl::Status CheckIds(absl::Span<const int32_t> ids) const;
  void EncodeNormalizedPiece(std::string_view piece, bool first_piece,
                             std::vector<AddedTokenSplit>* splits, PreTokenizer::Scratch* scratch,
                             std::vector<int32_t>* ids) const;
  // The decoder chain's stream: the open run of byte tokens becomes text, and text goes out
  // through the Strips that follow Fuse (to nowhere when `out` is null).
  void FlushByteRun(DecodeStreamState* state, std::string* out) const;
  void EmitText(std::string_view text, DecodeStreamState* state, std::string* out) const;

  Normalizer normalizer_;
  PreTokenizer pre_tokenizer_;
  BpeModel bpe_;
  AddedTokenMatcher raw_matcher_;         // added tokens with normalized: false
  AddedTokenMatcher normalized_matcher_;  // added tokens with normalized: true
  std::vector<Template> templates_;

  absl::flat_hash_map<std::string, int32_t> token_to_id_;
  std::vector<std::string> id_to_token_;  // "" for ids without a token
  std::vector<uint8_t> has_token_;
  std::vector<uint8_t> special_;
  // What each id decodes to in the middle of a text (DecodeBytes), concatenated: id i is
  // decoded_[decoded_offsets_[i], decoded_offsets_[i + 1]). ByteLevel: the token's bytes; the
  // decoder chain: the token and element steps' text, or a byte token's byte.
  std::string decoded_;
  std::vector<uint32_t> decoded_offsets_;
  std::optional<int32_t> eos_id_;

  // Not byte-level: the decoder chain, and per id the byte a byte token stands for (-1: none).
  bool byte_level_ = true;
  DecoderChain chain_;
  bool first_is_special_ = false;  // the text's first token decodes differently (Metaspace)
  std::vector<int16_t> byte_values_;
  std::vector<int32_t> strip_starts_;  // each text step's strip_start
};

void HfTokenizer::EncodeNormalizedPiece(std::string_view piece, bool first_piece,
                                        std::vector<AddedTokenSplit>* splits,
                                        PreTokenizer::Scratch* scratch,
                                        std::vector<int32_t>* ids) const {
  auto encode_words = [&](std::string_view text, bool first) {
    pre_tokenizer_.Run(
        text, [&](std::string_view word) { bpe_.EncodeWord(word, ids); }, scratch, first);
  };
  if (normalized_matcher_.empty()) {
    encode_words(piece, first_piece);
    return;
  }
  normalized_matcher_.Split(piece, splits);
  for (const AddedTokenSplit& split : *splits) {
    if (split.id >= 0) {
      ids->push_back(split.id);
    } else if (split.end > split.begin) {
      // Metaspace's "first" asks whether the piece starts the original text. Known gap: a
      // piece after a normalized added token whose characters all came from the text's first
      // character (a normalizer that expands it) starts there too for the reference.
      encode_words(piece.substr(split.begin, split.end - split.begin),
                   first_piece && split.begin == 0);
    }
  }
}

absl::StatusOr<std::vector<int32_t>> HfTokenizer::Encode(std::string_view text,
                                                         bool add_special_tokens) const {
  if (text.size() > kMaxEncodeBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "text of ", text.size(), " bytes is longer than the limit of ", kMaxEncodeBytes));
  }
  if (const size_t bad = FirstInvalidUtf8Byte(text); bad != text.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("text is not valid UTF-8 (ill-formed sequence at byte ", bad, ")"));
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 4 + 8);
  std::vector<AddedTokenSplit> raw_splits;
  std::vector<AddedTokenSplit> normalized_splits;
  std::string normalized_storage;
  PreTokenizer::Scratch scratch;
  auto encode_piece = [&](std::string_view piece, bool first_piece) {
    if (piece.empty()) return;
    EncodeNormalizedPiece(normalizer_.Apply(piece, &normalized_storage), first_piece,
                          &normalized_splits, &scratch, &ids);
  };
  if (raw_matcher_.empty()) {
    encode_piece(text, true);
  } else {
    raw_matcher_.Split(text, &raw_splits);
    for (const AddedTokenSplit& split : raw_splits) {
      if (split.id >= 0) {
        ids.push_back(split.id);
      } else {
        encode_piece(text.substr(split.begin, split.end - split.begin), split.begin == 0);
      }
    }
  }
  if (add_special_tokens) {
    for (const Template& t : templates_) {
      ids.insert(ids.begin(), t.before.begin(), t.before.end());
      ids.insert(ids.end(), t.after.begin(), t.after.end());
    }
  }
  return ids;
}

absl::Status HfTokenizer::CheckIds(absl::Span<const int32_t> ids) const {
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    if (id < 0 || id >= vocab_size() || has_token_[id] == 0) {
      return absl::InvalidArgumentError(absl::StrCat("token id ", id, " (at position ", i,
                                                     ") is not in the vocabulary of ", vocab_size(),
                                                     " ids"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> HfTokenizer::DecodeBytes(absl::Span<const int32_t> ids,
                                                     bool skip_special_tokens) const {
  MAMBA_RETURN_IF_ERROR(CheckIds(ids));
  size_t size = 0;
  for (const int32_t id : ids) size += decoded_offsets_[id + 1] - decoded_offsets_[id];
  std::string out;
  out.reserve(size);
  for (const int32_t id : ids) {
    if (skip_special_tokens && special_[id] != 0) continue;
    out.append(decoded_.data() + decoded_offsets_[id],
               decoded_offsets_[id + 1] - decoded_offsets_[id]);
  }
  return out;
}

absl::StatusOr<std::string> HfTokenizer::Decode(absl::Span<const int32_t> ids,
                                                bool skip_special_tokens) const {
  if (byte_level_) return Tokenizer::Decode(ids, skip_special_tokens);
  MAMBA_RETURN_IF_ERROR(CheckIds(ids));
  // The stream and the whole-text decode are one code path, so they cannot disagree.
  DecodeStreamState state;
  std::string out;
  out.reserve(decoded_.size() / std::max<size_t>(1, id_to_token_.size()) * ids.size() + 16);
  for (const int32_t id : ids) {
    MAMBA_RETURN_IF_ERROR(DecodeStreamStep(id, skip_special_tokens, &state, &out));
  }
  DecodeStreamFlush(&state, &out);
  return out;
}

absl::Status HfTokenizer::DecodeStreamStep(int32_t id, bool skip_special_tokens,
                                           DecodeStreamState* state, std::string* out) const {
  MAMBA_RETURN_IF_ERROR(CheckIds(absl::MakeConstSpan(&id, 1)));
  if (byte_level_) {
    // The default step without its copy of the token's bytes: hold an incomplete character.
    if (skip_special_tokens && special_[id] != 0) return absl::OkStatus();
    state->started = true;
    const std::string_view bytes(decoded_.data() + decoded_offsets_[id],
                                 decoded_offsets_[id + 1] - decoded_offsets_[id]);
    std::string& pending = state->pending;
    if (pending.empty()) {
      const size_t complete = CompleteUtf8Prefix(bytes);
      if (out != nullptr) AppendUtf8Lossy(bytes.substr(0, complete), out);
      pending.assign(bytes.substr(complete));
      return absl::OkStatus();
    }
    pending.append(bytes);
    const size_t complete = CompleteUtf8Prefix(pending);
    if (out != nullptr) AppendUtf8Lossy(std::string_view(pending).substr(0, complete), out);
    pending.erase(0, complete);
    return absl::OkStatus();
  }
  // The reference drops skipped tokens before its decoders run: a run of byte tokens goes on
  // across them.
  if (skip_special_tokens && special_[id] != 0) return absl::OkStatus();
  const bool first = !state->started;
  if (first) {
    state->started = true;
    state->strip_left = strip_starts_;
  }
  std::string first_text;
  std::string_view text(decoded_.data() + decoded_offsets_[id],
                        decoded_offsets_[id + 1] - decoded_offsets_[id]);
  int byte = byte_values_.empty() ? -1 : byte_values_[id];
  if (first && first_is_special_) {
    const std::string token =
        DecoderChain::Apply(chain_.token_steps, id_to_token_[id], /*first=*/true);
    byte = chain_.byte_fallback ? DecoderChain::ByteTokenValue(token) : -1;
    if (byte < 0) {
      first_text = DecoderChain::Apply(chain_.element_steps, token, /*first=*/true);
      text = first_text;
    }
  }
  if (byte >= 0) {
    if (state->pending_tokens == 0) state->pending_first = first;
    state->pending.push_back(static_cast<char>(byte));
    ++state->pending_tokens;
    return absl::OkStatus();
  }
  FlushByteRun(state, out);
  EmitText(text, state, out);
  return absl::OkStatus();
}

void HfTokenizer::DecodeStreamFlush(DecodeStreamState* state, std::string* out) const {
  if (byte_level_) {
    Tokenizer::DecodeStreamFlush(state, out);
    return;
  }
  FlushByteRun(state, out);
}

void HfTokenizer::FlushByteRun(DecodeStreamState* state, std::string* out) const {
  if (state->pending_tokens == 0) return;
  std::string text;
  if (IsValidUtf8(state->pending)) {
    text = DecoderChain::Apply(chain_.element_steps, state->pending, state->pending_first);
  } else {
    // The reference gives one U+FFFD per byte token of an invalid run, whatever its bytes.
    for (int32_t k = 0; k < state->pending_tokens; ++k) {
      text += DecoderChain::Apply(chain_.element_steps, kReplacementCharacter,
                                  state->pending_first && k == 0);
    }
  }
  state->pending.clear();
  state->pending_tokens = 0;
  state->pending_first = false;
  EmitText(text, state, out);
}

void HfTokenizer::EmitText(std::string_view text, DecodeStreamState* state,
                           std::string* out) const {
  if (state->strip_left.empty()) {
    if (out != nullptr) out->append(text);
    return;
  }
  std::string discarded;
  chain_.AppendWithTextSteps(text, &state->strip_left, out != nullptr ? out : &discarded);
  if (std::all_of(state->strip_left.begin(), state->strip_left.end(),
                  [](int32_t left) { return left == 0; })) {
    state->strip_left.clear();  // the text's start is behind: no Strip has work left
  }
}

// Builds the tokenizer from the parsed document; every failure is a Status.
absl::StatusOr<std::unique_ptr<Tokenizer>> BuildHfTokenizer(const JsonReader& r, const Json& root) {
  MAMBA_RETURN_IF_ERROR(r.ExpectObject(root, "(root)"));
  if (const Json* version = JsonReader::Member(root, "version"); version != nullptr) {
    if (!version->is_string() || version->get<std::string>() != "1.0") {
      return r.Unsupported("version", absl::StrCat("unsupported tokenizer.json version ",
                                                   version->dump(), " (expected \"1.0\")"));
    }
  }

  // --- model
  const Json* model = JsonReader::Member(root, "model");
  if (model == nullptr) return r.Error("model", "missing (a BPE model is required)");
  MAMBA_RETURN_IF_ERROR(r.ExpectObject(*model, "model"));
  MAMBA_ASSIGN_OR_RETURN(std::optional<std::string> model_type,
                         r.OptionalString(*model, "type", "model"));
  if (model_type.has_value() && *model_type != "BPE") {
    return r.Unsupported("model.type", absl::StrCat("unsupported model \"", *model_type,
                                                    "\" (only BPE is supported)"));
  }
  if (const Json* dropout = JsonReader::Member(*model, "dropout"); dropout != nullptr) {
    if (!dropout->is_number() || dropout->get<double>() < 0.0 || dropout->get<double>() > 1.0) {
      return r.Error("model.dropout", "expected null or a number in [0, 1]");
    }
    if (dropout->get<double>() != 0.0) {
      return r.Unsupported("model.dropout", "BPE dropout is unsupported (it is random)");
    }
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    MAMBA_ASSIGN_OR_RETURN(std::optional<std::string> affix,
                           r.OptionalString(*model, key, "model"));
    if (affix.has_value() && !affix->empty()) {
      return r.Unsupported(absl::StrCat("model.", key), absl::StrCat(key, " is unsupported"));
    }
  }
  BpeOptions bpe_options;
  MAMBA_ASSIGN_OR_RETURN(bpe_options.byte_fallback,
                         r.Bool(*model, "byte_fallback", false, "model"));
  MAMBA_ASSIGN_OR_RETURN(bpe_options.ignore_merges,
                         r.Bool(*model, "ignore_merges", false, "model"));
  MAMBA_ASSIGN_OR_RETURN(bpe_options.fuse_unk, r.Bool(*model, "fuse_unk", false, "model"));
  MAMBA_ASSIGN_OR_RETURN(std::optional<std::string> unk_token,
                         r.OptionalString(*model, "unk_token", "model"));

  const Json* vocab_json = JsonReader::Member(*model, "vocab");
  if (vocab_json == nullptr) return r.Error("model.vocab", "missing");
  if (!vocab_json->is_object()) {
    return r.Error("model.vocab", absl::StrCat("expected an object of token -> id, found ",
                                               JsonReader::TypeName(*vocab_json)));
  }
  absl::flat_hash_map<std::string, int32_t> vocab;
  vocab.reserve(vocab_json->size());
  int64_t max_model_id = -1;
  for (const auto& [token, id_json] : vocab_json->items()) {
    const std::string path = absl::StrCat("model.vocab[\"", token, "\"]");
    if (token.size() > kMaxTokenBytes) {
      return r.Error("model.vocab",
                     absl::StrCat("a token is longer than ", kMaxTokenBytes, " bytes"));
    }
    MAMBA_ASSIGN_OR_RETURN(int32_t id, r.TokenId(id_json, path));
    vocab.insert_or_assign(token, id);
    max_model_id = std::max<int64_t>(max_model_id, id);
  }

  const Json* merges_json = JsonReader::Member(*model, "merges");
  if (merges_json == nullptr) return r.Error("model.merges", "missing");
  if (!merges_json->is_array()) {
    return r.Error("model.merges",
                   absl::StrCat("expected an array, found ", JsonReader::TypeName(*merges_json)));
  }
  std::vector<std::pair<std::string, std::string>> merges;
  merges.reserve(merges_json->size());
  // Either every merge is a [left, right] pair or every one is a "left right" string.
  const bool pairs = merges_json->empty() || (*merges_json)[0].is_array();
  for (size_t i = 0; i < merges_json->size(); ++i) {
    const Json& m = (*merges_json)[i];
    const std::string path = absl::StrCat("model.merges[", i, "]");
    if (pairs) {
      if (!m.is_array() || m.size() != 2 || !m[0].is_string() || !m[1].is_string()) {
        return r.Error(path,
                       "expected a pair of token strings like [\"a\", \"b\"] (merges "
                       "must be all pairs or all \"a b\" strings)");
      }
      merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
      continue;
    }
    if (!m.is_string()) {
      return r.Error(path,
                     "expected a string like \"a b\" (merges must be all pairs or all "
                     "\"a b\" strings)");
    }
    const std::string& line = m.get_ref<const std::string&>();
    if (line.rfind("#version", 0) == 0) continue;  // merges.txt header, skipped by the reference
    const size_t space = line.find(' ');
    if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos) {
      return r.Error(path, absl::StrCat("\"", line, "\" is not two tokens separated by one space"));
    }
    merges.emplace_back(line.substr(0, space), line.substr(space + 1));
  }
  if (unk_token.has_value()) {
    const auto it = vocab.find(*unk_token);
    if (it == vocab.end()) {
      return r.Error("model.unk_token",
                     absl::StrCat("unk_token \"", *unk_token, "\" is not in the vocabulary"));
    }
    bpe_options.unk_id = it->second;
  }

  // --- normalizer, pre_tokenizer (which says whether the vocabulary is byte-level), model,
  // post_processor, decoder
  std::vector<NormalizerStep> normalizer_steps;
  if (const Json* n = JsonReader::Member(root, "normalizer"); n != nullptr) {
    MAMBA_RETURN_IF_ERROR(ParseNormalizer(r, *n, "normalizer", &normalizer_steps));
  }
  if (normalizer_steps.size() > kMaxComponentSteps) {
    return r.Unsupported("normalizer", absl::StrCat("more than ", kMaxComponentSteps, " steps"));
  }
  size_t expansion = 1;
  for (const NormalizerStep& step : normalizer_steps) {
    if (step.kind == NormalizerStep::Kind::kReplace) {
      expansion = ReplaceExpansion(expansion, step.text, step.content);
    }
  }
  if (expansion > kMaxExpansion) {
    return r.Unsupported("normalizer", absl::StrCat("its Replace steps could make a text more "
                                                    "than ",
                                                    kMaxExpansion, " times longer"));
  }
  MAMBA_ASSIGN_OR_RETURN(Normalizer normalizer, Normalizer::Create(std::move(normalizer_steps)));

  std::vector<PreTokenizerStep> steps;
  if (const Json* pre_json = JsonReader::Member(root, "pre_tokenizer"); pre_json != nullptr) {
    MAMBA_RETURN_IF_ERROR(ParsePreTokenizer(r, *pre_json, "pre_tokenizer", &steps));
  }
  if (steps.size() > kMaxComponentSteps) {
    return r.Unsupported("pre_tokenizer", absl::StrCat("more than ", kMaxComponentSteps, " steps"));
  }
  auto count_kind = [&steps](PreTokenizerStep::Kind kind) {
    return std::count_if(steps.begin(), steps.end(),
                         [kind](const PreTokenizerStep& s) { return s.kind == kind; });
  };
  const auto byte_levels = count_kind(PreTokenizerStep::Kind::kByteLevel);
  const auto metaspaces = count_kind(PreTokenizerStep::Kind::kMetaspace);
  const bool byte_level = byte_levels > 0;
  if (byte_level && (byte_levels != 1 || steps.back().kind != PreTokenizerStep::Kind::kByteLevel ||
                     metaspaces > 0)) {
    return r.Unsupported("pre_tokenizer",
                         "expected exactly one ByteLevel pre-tokenizer, as the last step");
  }
  if (metaspaces > 0 && steps.size() != 1) {
    return r.Unsupported("pre_tokenizer",
                         "a Metaspace pre-tokenizer is supported alone, not in a Sequence with "
                         "other steps");
  }

  bpe_options.byte_level = byte_level;
  if (byte_level && bpe_options.byte_fallback) {
    // With every byte in the vocabulary (as byte-level vocabularies have) byte_fallback never
    // applies; without, the reference would spell the alphabet's characters as <0xNN> tokens.
    for (int b = 0; b < 256; ++b) {
      std::string token;
      internal::AppendUtf8(internal::ByteToCodePoint(static_cast<uint8_t>(b)), &token);
      if (!vocab.contains(token)) {
        return r.Unsupported("model.byte_fallback",
                             "byte_fallback with a ByteLevel pre_tokenizer is supported only "
                             "when the vocabulary has all 256 byte tokens");
      }
    }
  }
  absl::StatusOr<BpeModel> bpe = BpeModel::Create(vocab, merges, bpe_options);
  if (!bpe.ok()) return r.Error("model.merges", std::string(bpe.status().message()));
  merges.clear();
  merges.shrink_to_fit();

  std::vector<Template> templates;
  if (const Json* p = JsonReader::Member(root, "post_processor"); p != nullptr) {
    MAMBA_RETURN_IF_ERROR(ParsePostProcessor(r, *p, "post_processor", &templates));
  }
  if (templates.size() > kMaxComponentSteps) {
    return r.Unsupported("post_processor",
                         absl::StrCat("more than ", kMaxComponentSteps, " templates"));
  }

  const Json* decoder = JsonReader::Member(root, "decoder");
  if (decoder == nullptr) {
    return r.Unsupported("decoder", byte_level
                                        ? "missing: byte-level BPE needs the ByteLevel decoder"
                                        : "missing: a decoder is required (Metaspace, or a "
                                          "Sequence of Replace, ByteFallback, Fuse, Strip)");
  }
  std::vector<ParsedDecoder> decoders;
  MAMBA_RETURN_IF_ERROR(ParseDecoders(r, *decoder, "decoder", &decoders));
  if (decoders.size() > kMaxComponentSteps) {
    return r.Unsupported("decoder", absl::StrCat("more than ", kMaxComponentSteps, " steps"));
  }
  DecoderChain chain;
  if (byte_level) {
    for (const ParsedDecoder& d : decoders) {
      if (d.kind != ParsedDecoder::Kind::kByteLevel) {
        return r.Unsupported(d.path, absl::StrCat("unsupported decoder \"", d.type,
                                                  "\" with a ByteLevel pre_tokenizer (only "
                                                  "ByteLevel is supported)"));
      }
    }
    if (decoders.size() != 1) {
      return r.Unsupported("decoder", "expected one ByteLevel decoder");
    }
  } else {
    MAMBA_ASSIGN_OR_RETURN(chain, CompileDecoderChain(r, decoders));
    size_t decoder_expansion = 1;
    for (const auto* list : {&chain.token_steps, &chain.element_steps}) {
      for (const DecoderStep& step : *list) {
        if (step.kind == DecoderStep::Kind::kReplace) {
          decoder_expansion = ReplaceExpansion(decoder_expansion, step.pattern, step.content);
        }
      }
    }
    if (decoder_expansion > kMaxExpansion) {
      return r.Unsupported("decoder", absl::StrCat("its Replace steps could make a token more "
                                                   "than ",
                                                   kMaxExpansion, " times longer"));
    }
  }

  auto tokenizer = std::make_unique<HfTokenizer>(std::move(normalizer),
                                                 PreTokenizer(std::move(steps)), *std::move(bpe));
  tokenizer->templates_ = std::move(templates);
  tokenizer->byte_level_ = byte_level;
  tokenizer->chain_ = std::move(chain);

  // --- added tokens: ids as the reference's AddedVocabulary::add_tokens assigns them. An added
  // token already in the vocabulary keeps its id; others are numbered from the model's token
  // count (not its largest id), in file order.
  MAMBA_ASSIGN_OR_RETURN(std::vector<ParsedAddedToken> added,
                         ParseAddedTokens(r, JsonReader::Member(root, "added_tokens")));
  absl::flat_hash_map<std::string, int32_t> added_ids;   // content -> id
  absl::flat_hash_map<int32_t, ParsedAddedToken> by_id;  // id -> token
  absl::flat_hash_set<std::string> special_contents;
  int64_t next_id = static_cast<int64_t>(vocab.size());
  for (ParsedAddedToken& token : added) {
    if (token.content.empty()) continue;
    if (const auto it = added_ids.find(token.content); it != added_ids.end()) {
      const auto same = by_id.find(it->second);
      if (same != by_id.end() && same->second == token) continue;
    }
    int32_t id;
    if (const auto it = added_ids.find(token.content); it != added_ids.end()) {
      id = it->second;
    } else if (const auto v = vocab.find(token.content); v != vocab.end()) {
      id = v->second;
    } else {
      if (next_id > kMaxTokenId) {
        return r.Error("added_tokens", absl::StrCat("token ids would pass ", kMaxTokenId));
      }
      id = static_cast<int32_t>(next_id++);
    }
    added_ids[token.content] = id;
    if (token.special) special_contents.insert(token.content);
    by_id[id] = std::move(token);
  }

  // --- id tables
  int64_t max_id = max_model_id;
  for (const auto& [id, token] : by_id) max_id = std::max<int64_t>(max_id, id);
  const size_t num_ids = static_cast<size_t>(max_id + 1);
  // Ids index dense tables; refuse files whose ids are mostly holes.
  if (num_ids > 4 * (vocab.size() + by_id.size()) + 1024) {
    return r.Error("model.vocab",
                   absl::StrCat("token ids go up to ", max_id, " but there are only ",
                                vocab.size() + by_id.size(), " tokens"));
  }
  HfTokenizer& t = *tokenizer;
  t.id_to_token_.assign(num_ids, std::string());
  t.has_token_.assign(num_ids, 0);
  t.special_.assign(num_ids, 0);
  // Model tokens; when two share an id, the lexicographically first is kept, so the choice
  // does not depend on hash order.
  for (const auto& [token, id] : vocab) {
    if (t.has_token_[id] == 0 || token < t.id_to_token_[id]) t.id_to_token_[id] = token;
    t.has_token_[id] = 1;
  }
  t.token_to_id_ = std::move(vocab);

  std::string pattern_storage;
  std::vector<AddedTokenSpec> raw_specs;
  std::vector<AddedTokenSpec> normalized_specs;
  absl::flat_hash_map<std::string, int32_t> raw_patterns;
  absl::flat_hash_map<std::string, int32_t> normalized_patterns;
  for (const auto& [id, token] : by_id) {
    // A normalized token is matched, and decoded, in its normalized form.
    std::string spelling = token.content;
    if (token.normalized) {
      spelling = std::string(t.normalizer_.Apply(token.content, &pattern_storage));
    }
    auto& patterns = token.normalized ? normalized_patterns : raw_patterns;
    if (const auto [it, inserted] = patterns.emplace(spelling, id); !inserted) {
      return r.Error("added_tokens", absl::StrCat("added tokens ", it->second, " and ", id,
                                                  " match the same text \"", spelling, "\""));
    }
    AddedTokenSpec spec{spelling, id, token.single_word, token.lstrip, token.rstrip};
    (token.normalized ? normalized_specs : raw_specs).push_back(std::move(spec));
    t.id_to_token_[id] = std::move(spelling);
    t.has_token_[id] = 1;
  }
  for (const auto& [content, id] : added_ids) t.token_to_id_.insert_or_assign(content, id);
  // The reference skips an id when its token string (normalized spelling included) is the
  // content of a special token.
  for (size_t id = 0; id < num_ids; ++id) {
    if (t.has_token_[id] != 0 && special_contents.contains(t.id_to_token_[id])) {
      t.special_[id] = 1;
    }
  }
  t.raw_matcher_ = AddedTokenMatcher(raw_specs);
  t.normalized_matcher_ = AddedTokenMatcher(normalized_specs);

  // Template ids must exist, so that encoded ids always decode.
  for (const Template& tmpl : t.templates_) {
    for (const auto* list : {&tmpl.before, &tmpl.after}) {
      for (int32_t id : *list) {
        if (static_cast<size_t>(id) >= num_ids || t.has_token_[id] == 0) {
          return r.Error("post_processor",
                         absl::StrCat("template token id ", id, " is not in the vocabulary"));
        }
      }
    }
  }

  // What each id stands for in the middle of a text. ByteLevel decoder: a token made only of
  // byte-level alphabet characters stands for those bytes; any other token (e.g. an added "  ")
  // for its own UTF-8 text. The decoder chain: the token steps, then a byte token's byte or the
  // element steps' text.
  t.decoded_offsets_.assign(num_ids + 1, 0);
  if (!byte_level && t.chain_.byte_fallback) t.byte_values_.assign(num_ids, -1);
  t.first_is_special_ = t.chain_.FirstIsSpecial();
  for (const DecoderStep& step : t.chain_.text_steps) t.strip_starts_.push_back(step.strip_start);
  std::string bytes;
  for (size_t id = 0; id < num_ids; ++id) {
    t.decoded_offsets_[id] = static_cast<uint32_t>(t.decoded_.size());
    const std::string& token = t.id_to_token_[id];
    if (byte_level) {
      if (internal::AlphabetToBytes(token, &bytes)) {
        t.decoded_ += bytes;
      } else {
        t.decoded_ += token;
      }
      continue;
    }
    const std::string text = DecoderChain::Apply(t.chain_.token_steps, token, /*first=*/false);
    const int byte = t.chain_.byte_fallback ? DecoderChain::ByteTokenValue(text) : -1;
    if (byte >= 0) {
      t.byte_values_[id] = static_cast<int16_t>(byte);
      t.decoded_.push_back(static_cast<char>(byte));
    } else {
      t.decoded_ += DecoderChain::Apply(t.chain_.element_steps, text, /*first=*/false);
    }
    // The offsets are 32-bit, and Replace decoders may lengthen tokens.
    if (t.decoded_.size() > kMaxJsonBytes) {
      return r.Unsupported("decoder", absl::StrCat("the decoded vocabulary is larger than ",
                                                   kMaxJsonBytes, " bytes"));
    }
  }
  t.decoded_offsets_[num_ids] = static_cast<uint32_t>(t.decoded_.size());

  for (const char* name : {"<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>"}) {
    if (const auto id = t.TokenToId(name); id.has_value()) {
      t.eos_id_ = id;
      break;
    }
  }
  return std::unique_ptr<Tokenizer>(std::move(tokenizer));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> ParseTokenizerJson(std::string_view json,
                                                              std::string_view source) {
  const JsonReader reader(source);
  if (json.size() > kMaxJsonBytes) {
    return reader.Error("(file)", absl::StrCat("larger than ", kMaxJsonBytes, " bytes"));
  }
  if (!common::JsonNestingWithin(json, kMaxJsonDepth)) {
    return reader.Error("(file)",
                        absl::StrCat("JSON nested deeper than ", kMaxJsonDepth, " levels"));
  }
  // nlohmann::json reports errors by exception; none may leave this function.
  try {
    const Json root = Json::parse(json.begin(), json.end());
    return BuildHfTokenizer(reader, root);
  } catch (const Json::parse_error& e) {
    return reader.Error("(file)", absl::StrCat("not valid JSON: ", e.what()));
  } catch (const std::exception& e) {
    return reader.Error("(file)", absl::StrCat("malformed tokenizer.json: ", e.what()));
  }
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizerJson(const std::string& path) {
  MAMBA_ASSIGN_OR_RETURN(std::string json, ReadFileMaybeGzipped(path, kMaxJsonBytes));
  return ParseTokenizerJson(json, path);
}

}  // namespace mamba::tokenizer
