#include "client/flag_values.h"

#include <utility>

#include "absl/flags/flag.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

ABSL_FLAG(std::string, prompt, "", "Input text");
ABSL_FLAG(std::string, prompt_ids, "", "Input token ids, comma-separated (instead of --prompt)");
ABSL_FLAG(std::string, session, "", "Session id (32 hex digits)");
ABSL_FLAG(uint32_t, ttl_seconds, 0, "Session idle TTL in seconds; 0 = the server's default");

namespace mamba::client {
namespace {

absl::string_view AsAbsl(std::string_view s) { return absl::string_view(s.data(), s.size()); }

}  // namespace

absl::StatusOr<std::vector<int32_t>> ParseIdList(std::string_view text, std::string_view flag) {
  std::vector<int32_t> ids;
  if (absl::StripAsciiWhitespace(AsAbsl(text)).empty()) return ids;
  for (absl::string_view piece : absl::StrSplit(AsAbsl(text), ',')) {
    int32_t id;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(piece), &id)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", AsAbsl(flag), ": '", piece, "' is not a token id; use e.g. 1,2,3"));
    }
    ids.push_back(id);
  }
  return ids;
}

absl::StatusOr<std::vector<std::string>> ParseStringList(std::string_view text,
                                                         std::string_view flag) {
  std::vector<std::string> out;
  if (text.empty()) return out;
  std::string current;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == ',') {
      out.push_back(std::move(current));
      current.clear();
      continue;
    }
    if (c != '\\') {
      current.push_back(c);
      continue;
    }
    if (i + 1 == text.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", AsAbsl(flag), ": a trailing '\\' escapes nothing"));
    }
    switch (text[++i]) {
      case 'n':
        current.push_back('\n');
        break;
      case 't':
        current.push_back('\t');
        break;
      case 'r':
        current.push_back('\r');
        break;
      case '\\':
        current.push_back('\\');
        break;
      case ',':
        current.push_back(',');
        break;
      default:
        return absl::InvalidArgumentError(absl::StrCat("--", AsAbsl(flag), ": unknown escape '\\",
                                                       std::string(1, text[i]),
                                                       "'; allowed: \\n \\t \\r \\\\ \\,"));
    }
  }
  out.push_back(std::move(current));
  return out;
}

absl::StatusOr<PromptInput> PromptFromFlags() {
  PromptInput input;
  const std::string text = absl::GetFlag(FLAGS_prompt);
  const std::string ids = absl::GetFlag(FLAGS_prompt_ids);
  if (!text.empty() && !ids.empty()) {
    return absl::InvalidArgumentError("set --prompt or --prompt_ids, not both");
  }
  if (!text.empty()) {
    input.kind = PromptInput::Kind::kText;
    input.text = text;
  } else if (!ids.empty()) {
    absl::StatusOr<std::vector<int32_t>> parsed = ParseIdList(ids, "prompt_ids");
    if (!parsed.ok()) return parsed.status();
    input.kind = PromptInput::Kind::kIds;
    input.ids = *std::move(parsed);
  }
  return input;
}

}  // namespace mamba::client
