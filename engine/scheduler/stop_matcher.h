// Finds stop strings in streamed text. Text that could be the start of a stop string is held back
// until it is known not to be, so that no part of a stop string is ever emitted.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace mamba::scheduler {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);

  // Appends `text` (whole UTF-8 characters). Returns the text that can be emitted now. When a stop
  // string completes, *stopped is set, the text before the earliest stop string is returned and
  // everything after it is discarded.
  std::string Add(std::string_view text, bool* stopped);
  // The text held back (called when generation ends without a stop string).
  std::string Flush();
  bool empty() const { return stops_.empty(); }

 private:
  std::vector<std::string> stops_;
  std::string held_;
};

}  // namespace mamba::scheduler
