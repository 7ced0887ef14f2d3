#include "tests/unit/metrics/exposition_parser.h"

#include <cmath>
#include <cstdlib>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace mamba::metrics::testing {
namespace {

bool IsNameChar(char c, bool first) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
         (!first && c >= '0' && c <= '9');
}

absl::StatusOr<double> ParseValue(std::string_view s) {
  if (s == "+Inf" || s == "Inf") return std::numeric_limits<double>::infinity();
  if (s == "-Inf") return -std::numeric_limits<double>::infinity();
  if (s == "NaN") return std::numeric_limits<double>::quiet_NaN();
  std::string copy(s);
  char* end = nullptr;
  const double v = std::strtod(copy.c_str(), &end);
  if (copy.empty() || end != copy.c_str() + copy.size() || std::isnan(v) || std::isinf(v)) {
    return absl::InvalidArgumentError(absl::StrCat("bad sample value \"", copy, "\""));
  }
  return v;
}

absl::StatusOr<Sample> ParseSampleLine(std::string_view line) {
  Sample s;
  size_t i = 0;
  while (i < line.size() && IsNameChar(line[i], i == 0)) ++i;
  if (i == 0) return absl::InvalidArgumentError("sample line does not start with a metric name");
  s.name = std::string(line.substr(0, i));
  if (i < line.size() && line[i] == '{') {
    ++i;
    while (true) {
      if (i < line.size() && line[i] == '}') {
        ++i;
        break;
      }
      const size_t start = i;
      while (i < line.size() && IsNameChar(line[i], i == start) && line[i] != ':') ++i;
      if (i == start || i + 1 >= line.size() || line[i] != '=' || line[i + 1] != '"') {
        return absl::InvalidArgumentError("malformed label (expected name=\"value\")");
      }
      std::string key(line.substr(start, i - start));
      i += 2;
      std::string value;
      bool closed = false;
      while (i < line.size()) {
        const char c = line[i++];
        if (c == '"') {
          closed = true;
          break;
        }
        if (c == '\\') {
          if (i >= line.size()) break;
          const char e = line[i++];
          if (e == '\\') {
            value += '\\';
          } else if (e == '"') {
            value += '"';
          } else if (e == 'n') {
            value += '\n';
          } else {
            return absl::InvalidArgumentError(absl::StrCat("bad escape \\", std::string(1, e)));
          }
        } else if (c == '\n') {
          return absl::InvalidArgumentError("raw line feed in a label value");
        } else {
          value += c;
        }
      }
      if (!closed) return absl::InvalidArgumentError("unterminated label value");
      for (const auto& [k, v] : s.labels) {
        if (k == key) return absl::InvalidArgumentError(absl::StrCat("label ", key, " repeated"));
      }
      s.labels.emplace_back(std::move(key), std::move(value));
      if (i < line.size() && line[i] == ',') ++i;
    }
  }
  if (i >= line.size() || line[i] != ' ') {
    return absl::InvalidArgumentError("expected one space before the value");
  }
  ++i;
  std::string_view rest = line.substr(i);
  // An optional integer timestamp may follow; our writer never emits one.
  if (rest.find(' ') != std::string_view::npos) {
    return absl::InvalidArgumentError("unexpected text after the value");
  }
  absl::StatusOr<double> v = ParseValue(rest);
  if (!v.ok()) return v.status();
  s.value = *v;
  return s;
}

std::string UnescapeHelp(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size() && (s[i + 1] == '\\' || s[i + 1] == 'n')) {
      out += s[i + 1] == 'n' ? '\n' : '\\';
      ++i;
    } else {
      out += s[i];
    }
  }
  return out;
}

}  // namespace

std::optional<std::string> Sample::Label(std::string_view key) const {
  for (const auto& [k, v] : labels) {
    if (k == key) return v;
  }
  return std::nullopt;
}

std::vector<const Sample*> Exposition::Find(std::string_view name,
                                            const std::map<std::string, std::string>& match) const {
  std::vector<const Sample*> out;
  for (const Sample& s : samples) {
    if (s.name != name) continue;
    bool ok = true;
    for (const auto& [k, v] : match) ok = ok && s.Label(k) == v;
    if (ok) out.push_back(&s);
  }
  return out;
}

absl::StatusOr<double> Exposition::Value(std::string_view name,
                                         const std::map<std::string, std::string>& match) const {
  std::vector<const Sample*> found = Find(name, match);
  if (found.size() != 1) {
    return absl::NotFoundError(absl::StrCat(found.size(), " samples named ", std::string(name),
                                            " match; expected exactly one"));
  }
  return found[0]->value;
}

absl::StatusOr<Exposition> ParseExposition(std::string_view text) {
  Exposition out;
  if (!text.empty() && text.back() != '\n') {
    return absl::InvalidArgumentError("exposition does not end with a line feed");
  }
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(absl::string_view(text.data(), text.size()), '\n')) {
    ++line_no;
    if (line.empty()) continue;
    const std::string_view sv(line.data(), line.size());
    if (sv[0] == '#') {
      std::vector<std::string> parts =
          absl::StrSplit(line, absl::MaxSplits(' ', 3), absl::AllowEmpty());
      if (parts.size() >= 3 && (parts[1] == "HELP" || parts[1] == "TYPE")) {
        const std::string body = parts.size() == 4 ? parts[3] : "";
        auto& map = parts[1] == "HELP" ? out.help : out.type;
        if (map.count(parts[2]) != 0) {
          return absl::InvalidArgumentError(
              absl::StrCat("line ", line_no, ": second # ", parts[1], " for ", parts[2]));
        }
        map[parts[2]] = parts[1] == "HELP" ? UnescapeHelp(body) : body;
      }
      continue;
    }
    absl::StatusOr<Sample> s = ParseSampleLine(sv);
    if (!s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("line ", line_no, " (", std::string(sv),
                                                     "): ", std::string(s.status().message())));
    }
    out.samples.push_back(*std::move(s));
  }
  return out;
}

}  // namespace mamba::metrics::testing
