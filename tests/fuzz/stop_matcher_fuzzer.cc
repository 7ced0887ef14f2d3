// Fuzzes the stop-string matcher that every generation with client-chosen stop strings runs its
// output through, against a reference computed on the whole text at once.
//
// Input: byte 0 is the number of stop strings (mod 5); then each stop string as a length byte
// (mod 9) and its bytes; the rest is the generated text, cut into chunks whose lengths come from
// the text's own bytes (mod 7), as tokens would arrive.
//
// Checks: the text emitted is exactly the text before the first stop string to complete (the
// earliest-starting one among those complete at that point), or all of it when none occurs; no
// emitted piece contains a stop string; nothing is emitted after the stop.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "engine/scheduler/stop_matcher.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

// Where the whole text must be cut, given the chunk boundaries: at the first boundary whose
// prefix contains a stop string, before the earliest occurrence within that prefix.
size_t ReferenceCut(std::string_view text, const std::vector<std::string>& stops,
                    const std::vector<size_t>& boundaries, bool* stopped) {
  *stopped = false;
  for (size_t end : boundaries) {
    const std::string_view prefix = text.substr(0, end);
    size_t first = std::string_view::npos;
    for (const std::string& s : stops) {
      if (!s.empty()) first = std::min(first, prefix.find(s));
    }
    if (first != std::string_view::npos) {
      *stopped = true;
      return first;
    }
  }
  return text.size();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  size_t pos = 0;
  auto next = [&]() -> uint8_t { return pos < size ? data[pos++] : 0; };
  std::vector<std::string> stops(next() % 5);
  for (std::string& s : stops) {
    const size_t len = std::min<size_t>(next() % 9, size - std::min(pos, size));
    s.assign(reinterpret_cast<const char*>(data + pos), len);
    pos += len;
  }
  const std::string_view text(reinterpret_cast<const char*>(data) + std::min(pos, size),
                              size - std::min(pos, size));
  std::vector<size_t> boundaries;
  for (size_t at = 0; at < text.size();) {
    at = std::min(text.size(), at + 1 + static_cast<uint8_t>(text[at]) % 7);
    boundaries.push_back(at);
  }

  mamba::scheduler::StopMatcher matcher(stops);
  std::string emitted;
  bool stopped = false;
  size_t begin = 0;
  for (size_t end : boundaries) {
    const std::string piece = matcher.Add(text.substr(begin, end - begin), &stopped);
    for (const std::string& s : stops) {
      FUZZ_CHECK(s.empty() || piece.find(s) == std::string::npos,
                 "an emitted piece contains a stop string");
    }
    emitted += piece;
    begin = end;
    if (stopped) break;
  }
  if (!stopped) emitted += matcher.Flush();

  bool expect_stop = false;
  const size_t cut = ReferenceCut(text, stops, boundaries, &expect_stop);
  FUZZ_CHECK(stopped == expect_stop, "stopped=%d, the reference says %d", stopped, expect_stop);
  FUZZ_CHECK(emitted == text.substr(0, cut), "emitted %zu bytes, the reference %zu", emitted.size(),
             cut);
  return 0;
}
