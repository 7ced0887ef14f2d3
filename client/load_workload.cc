#include "client/load_workload.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <memory>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"

namespace mamba::client::load {
namespace {

namespace v1 = ::mambaserve::v1;

absl::string_view AsAbsl(std::string_view s) { return absl::string_view(s.data(), s.size()); }

std::string Number(double v) {
  // Integers print without a fraction so that specs round-trip ("uniform:16:64").
  if (v == std::floor(v) && std::fabs(v) < 1e15) return absl::StrCat(static_cast<int64_t>(v));
  return absl::StrCat(v);
}

// Words for --prompt_text: common, short and ASCII, so that any byte-level BPE tokenizer turns
// each into one or two tokens.
constexpr const char* kWords[] = {
    "the",     "of",      "and",     "to",      "in",      "is",      "that",    "for",
    "it",      "as",      "was",     "with",    "be",      "by",      "on",      "not",
    "he",      "this",    "are",     "or",      "his",     "from",    "at",      "which",
    "but",     "have",    "an",      "had",     "they",    "you",     "were",    "their",
    "one",     "all",     "we",      "can",     "her",     "has",     "there",   "been",
    "if",      "more",    "when",    "will",    "would",   "who",     "so",      "no",
    "time",    "people",  "year",    "way",     "day",     "man",     "thing",   "woman",
    "life",    "child",   "world",   "school",  "state",   "family",  "student", "group",
    "country", "problem", "hand",    "part",    "place",   "case",    "week",    "company",
    "system",  "program", "question", "work",   "number",  "night",   "point",   "home",
    "water",   "room",    "mother",  "area",    "money",   "story",   "fact",    "month",
    "lot",     "right",   "study",   "book",    "eye",     "job",     "word",    "business",
    "issue",   "side",    "kind",    "head",    "house",   "service", "friend",  "father",
    "power",   "hour",    "game",    "line",    "end",     "member",  "law",     "car",
    "city",    "name",    "team",    "minute",  "idea",    "body",    "back",    "parent",
    "face",    "others",  "level",   "office",  "door",    "health",  "person",  "art",
    "war",     "history", "party",   "result",  "change",  "morning", "reason",  "research",
    "girl",    "guy",     "moment",  "air",     "teacher", "force",   "river",   "music",
    "good",    "new",     "first",   "last",    "long",    "great",   "little",  "own",
    "other",   "old",     "big",     "high",    "different", "small", "large",   "next",
    "early",   "young",   "important", "few",   "public",  "bad",     "same",    "able",
    "make",    "know",    "take",    "see",     "come",    "think",   "look",    "want",
    "give",    "use",     "find",    "tell",    "ask",     "seem",    "feel",    "try",
    "leave",   "call",    "keep",    "begin",   "help",    "show",    "hear",    "play",
    "run",     "move",    "live",    "believe", "bring",   "happen",  "write",   "provide",
};
constexpr size_t kNumWords = sizeof(kWords) / sizeof(kWords[0]);

}  // namespace

absl::StatusOr<LengthDistribution> LengthDistribution::Parse(std::string_view spec,
                                                             std::string_view flag) {
  const std::string allowed =
      "allowed: N (a fixed length >= 1), uniform:A:B (1 <= A <= B) or normal:MEAN:STD "
      "(MEAN >= 1, STD >= 0)";
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("--", AsAbsl(flag), "=", AsAbsl(spec), ": ",
                                                   AsAbsl(why), "; ", allowed));
  };
  std::vector<std::string> parts =
      absl::StrSplit(absl::StripAsciiWhitespace(AsAbsl(spec)), ':');
  LengthDistribution d;
  if (parts.size() == 1) {
    int32_t n;
    if (!absl::SimpleAtoi(parts[0], &n) || n < 1) return bad("not a length");
    return Fixed(n);
  }
  if (parts.size() != 3) return bad("expected one number or KIND:X:Y");
  double x, y;
  if (!absl::SimpleAtod(parts[1], &x) || !absl::SimpleAtod(parts[2], &y) || !std::isfinite(x) ||
      !std::isfinite(y)) {
    return bad("the parameters must be numbers");
  }
  if (parts[0] == "uniform") {
    if (x != std::floor(x) || y != std::floor(y)) return bad("uniform bounds must be integers");
    if (x < 1 || y < x || y > kMaxLength) return bad("uniform bounds out of range");
    d.kind_ = Kind::kUniform;
  } else if (parts[0] == "normal") {
    if (x < 1 || y < 0 || x > kMaxLength) return bad("normal parameters out of range");
    d.kind_ = Kind::kNormal;
  } else {
    return bad(absl::StrCat("unknown kind '", parts[0], "'"));
  }
  d.a_ = x;
  d.b_ = y;
  return d;
}

LengthDistribution LengthDistribution::Fixed(int32_t n) {
  LengthDistribution d;
  d.kind_ = Kind::kFixed;
  d.a_ = n;
  d.b_ = n;
  return d;
}

int32_t LengthDistribution::Sample(std::mt19937_64& rng) const {
  switch (kind_) {
    case Kind::kFixed:
      return static_cast<int32_t>(a_);
    case Kind::kUniform:
      return std::uniform_int_distribution<int32_t>(static_cast<int32_t>(a_),
                                                    static_cast<int32_t>(b_))(rng);
    case Kind::kNormal: {
      const double v = std::round(std::normal_distribution<double>(a_, b_)(rng));
      return static_cast<int32_t>(std::clamp(v, 1.0, static_cast<double>(kMaxLength)));
    }
  }
  return 1;
}

double LengthDistribution::Mean() const {
  return kind_ == Kind::kUniform ? (a_ + b_) / 2 : a_;
}

std::string LengthDistribution::ToString() const {
  switch (kind_) {
    case Kind::kFixed:
      return Number(a_);
    case Kind::kUniform:
      return absl::StrCat("uniform:", Number(a_), ":", Number(b_));
    case Kind::kNormal:
      return absl::StrCat("normal:", Number(a_), ":", Number(b_));
  }
  return "";
}

absl::StatusOr<ArrivalProcess> ArrivalProcess::Create(double rate, double burstiness) {
  if (!(rate > 0) || !std::isfinite(rate)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--rate=", rate, " is out of range; allowed: a finite number > 0 (requests/s)"));
  }
  if (!(burstiness > 0) || !std::isfinite(burstiness)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--burstiness=", burstiness,
        " is out of range; allowed: > 0 (1 = Poisson, < 1 burstier, > 1 more regular)"));
  }
  return ArrivalProcess(rate, burstiness);
}

ArrivalProcess::ArrivalProcess(double rate, double burstiness)
    : rate_(rate), burstiness_(burstiness), gamma_(burstiness, 1.0 / (rate * burstiness)) {}

double ArrivalProcess::NextGapSeconds(std::mt19937_64& rng) { return gamma_(rng); }

absl::StatusOr<std::vector<PromptFileEntry>> ParsePromptsJsonl(std::string_view text,
                                                               std::string_view name) {
  std::vector<PromptFileEntry> entries;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(AsAbsl(text), '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty()) continue;
    auto where = [&] { return absl::StrCat(AsAbsl(name), ":", line_number, ": "); };
    nlohmann::json value = nlohmann::json::parse(line.begin(), line.end(), nullptr,
                                                 /*allow_exceptions=*/false);
    if (value.is_discarded() || !value.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(
          where(), "not a JSON object; each line must be {\"prompt\": \"...\", \"max_tokens\": N}"));
    }
    PromptFileEntry entry;
    auto prompt = value.find("prompt");
    if (prompt == value.end() || !prompt->is_string() || prompt->get<std::string>().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where(), "\"prompt\" must be a non-empty string"));
    }
    entry.prompt = prompt->get<std::string>();
    auto max_tokens = value.find("max_tokens");
    if (max_tokens != value.end() && !max_tokens->is_null()) {
      if (!max_tokens->is_number_integer() || max_tokens->get<int64_t>() < 1 ||
          max_tokens->get<int64_t>() > std::numeric_limits<int32_t>::max()) {
        return absl::InvalidArgumentError(
            absl::StrCat(where(), "\"max_tokens\" must be an integer >= 1 (or absent)"));
      }
      entry.max_tokens = max_tokens->get<int32_t>();
    }
    for (const auto& item : value.items()) {
      if (item.key() != "prompt" && item.key() != "max_tokens") {
        return absl::InvalidArgumentError(absl::StrCat(
            where(), "unknown key \"", item.key(), "\"; allowed: \"prompt\", \"max_tokens\""));
      }
    }
    entries.push_back(std::move(entry));
  }
  if (entries.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(AsAbsl(name), ": no prompts (empty file)"));
  }
  return entries;
}

absl::StatusOr<std::vector<PromptFileEntry>> ReadPromptsFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("--prompts: cannot open '", path, "'"));
  std::ostringstream content;
  content << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("--prompts: cannot read '", path, "'"));
  return ParsePromptsJsonl(content.str(), path);
}

std::string RandomWords(int32_t count, std::mt19937_64& rng) {
  std::string text;
  text.reserve(static_cast<size_t>(std::max(count, 0)) * 6);
  std::uniform_int_distribution<size_t> pick(0, kNumWords - 1);
  for (int32_t i = 0; i < count; ++i) {
    if (i > 0) text.push_back(' ');
    text += kWords[pick(rng)];
  }
  return text;
}

absl::StatusOr<std::unique_ptr<Workload>> Workload::Create(WorkloadOptions options) {
  using Source = WorkloadOptions::PromptSource;
  if (options.source == Source::kTokenIds && options.vocab_size <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("vocab_size ", options.vocab_size, " must be > 0 for synthetic token ids"));
  }
  if (options.source == Source::kWords && !(options.tokens_per_word > 0)) {
    return absl::InvalidArgumentError("tokens_per_word must be > 0 for random-word prompts");
  }
  if (options.source == Source::kFile && options.file_prompts.empty()) {
    return absl::InvalidArgumentError("the prompts file holds no prompts");
  }
  return std::unique_ptr<Workload>(new Workload(std::move(options)));
}

Workload::Workload(WorkloadOptions options) : options_(std::move(options)), rng_(options_.seed) {}

void Workload::Next(v1::GenerateRequest* request) {
  using Source = WorkloadOptions::PromptSource;
  request->CopyFrom(options_.base);
  std::lock_guard<std::mutex> lock(mu_);
  int32_t max_tokens = -1;
  switch (options_.source) {
    case Source::kTokenIds: {
      const int32_t n = options_.prompt_tokens.Sample(rng_);
      std::uniform_int_distribution<int32_t> id(0, options_.vocab_size - 1);
      auto* ids = request->mutable_token_ids()->mutable_ids();
      ids->Reserve(n);
      for (int32_t i = 0; i < n; ++i) ids->Add(id(rng_));
      break;
    }
    case Source::kWords: {
      const int32_t n = options_.prompt_tokens.Sample(rng_);
      const auto words = static_cast<int32_t>(
          std::max(1.0, std::round(static_cast<double>(n) / options_.tokens_per_word)));
      request->set_text(RandomWords(words, rng_));
      break;
    }
    case Source::kFile: {
      const PromptFileEntry& entry = options_.file_prompts[next_file_prompt_];
      next_file_prompt_ = (next_file_prompt_ + 1) % options_.file_prompts.size();
      request->set_text(entry.prompt);
      max_tokens = entry.max_tokens;
      break;
    }
  }
  if (max_tokens < 0) max_tokens = options_.output_tokens.Sample(rng_);
  request->mutable_stopping()->set_max_tokens(max_tokens);
}

absl::StatusOr<SweepSpec> ParseSweep(std::string_view spec) {
  SweepSpec sweep;
  const absl::string_view text = absl::StripAsciiWhitespace(AsAbsl(spec));
  if (text.empty()) return sweep;
  const std::string allowed =
      "allowed: concurrency:N1,N2,... (integers >= 1), rate:R1,R2,... (requests/s > 0) or "
      "sessions:N1,N2,... (integers >= 1)";
  std::vector<absl::string_view> kind_values = absl::StrSplit(text, absl::MaxSplits(':', 1));
  if (kind_values.size() != 2 || kind_values[1].empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--sweep=", text, ": expected KIND:V1,V2,...; ", allowed));
  }
  bool integers = true;
  if (kind_values[0] == "concurrency") {
    sweep.kind = SweepSpec::Kind::kConcurrency;
  } else if (kind_values[0] == "rate") {
    sweep.kind = SweepSpec::Kind::kRate;
    integers = false;
  } else if (kind_values[0] == "sessions") {
    sweep.kind = SweepSpec::Kind::kSessions;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--sweep: unknown kind '", kind_values[0], "'; ", allowed));
  }
  for (absl::string_view item : absl::StrSplit(kind_values[1], ',')) {
    item = absl::StripAsciiWhitespace(item);
    double v;
    const bool ok = absl::SimpleAtod(item, &v) && std::isfinite(v) && v > 0 &&
                    (!integers || (v == std::floor(v) && v >= 1 && v <= (1 << 24)));
    if (!ok) {
      return absl::InvalidArgumentError(
          absl::StrCat("--sweep: '", item, "' is not a valid ", kind_values[0], "; ", allowed));
    }
    sweep.values.push_back(v);
  }
  return sweep;
}

}  // namespace mamba::client::load
