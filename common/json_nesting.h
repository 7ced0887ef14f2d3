// A guard for JSON read from files we do not control (config.json, safetensors headers, index
// files). nlohmann::json parses without recursion, but copying, comparing and dumping a parsed
// value recurse once per level, so a document nested a few hundred thousand levels deep (a few
// hundred KB of brackets) overflows the stack. Callers refuse such documents before parsing.
#pragma once

#include <cstddef>
#include <string_view>

namespace mamba::common {

// Far deeper than any file we read legitimately nests (safetensors headers: 3, configs: 3).
inline constexpr int kMaxJsonNesting = 64;

// True when no array or object in `json` is nested more than `max_depth` levels deep. Counts
// brackets outside strings without parsing; on malformed text the answer is only a bound, and
// the parser reports the real error.
inline bool JsonNestingWithin(std::string_view json, int max_depth = kMaxJsonNesting) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < json.size(); ++i) {
    const char c = json[i];
    if (in_string) {
      if (c == '\\') {
        ++i;  // the escaped character cannot end the string
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return false;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return true;
}

}  // namespace mamba::common
