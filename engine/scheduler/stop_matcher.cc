#include "engine/scheduler/stop_matcher.h"

#include <algorithm>
#include <utility>

namespace mamba::scheduler {

StopMatcher::StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {
  stops_.erase(std::remove(stops_.begin(), stops_.end(), std::string()), stops_.end());
}

std::string StopMatcher::Add(std::string_view text, bool* stopped) {
  *stopped = false;
  if (stops_.empty()) return std::string(text);
  held_.append(text.data(), text.size());
  // Every stop string starts inside held_: anything earlier was emitted only after it could no
  // longer begin one.
  size_t first = std::string::npos;
  for (const std::string& s : stops_) {
    const size_t pos = held_.find(s);
    if (pos < first) first = pos;
  }
  if (first != std::string::npos) {
    *stopped = true;
    std::string out = held_.substr(0, first);
    held_.clear();
    return out;
  }
  // Hold back the longest suffix of held_ that is a proper prefix of some stop string.
  size_t keep = 0;
  for (const std::string& s : stops_) {
    const size_t max_len = std::min(s.size() - 1, held_.size());
    for (size_t len = max_len; len > keep; --len) {
      if (held_.compare(held_.size() - len, len, s, 0, len) == 0) {
        keep = len;
        break;
      }
    }
  }
  std::string out = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return out;
}

std::string StopMatcher::Flush() { return std::exchange(held_, std::string()); }

}  // namespace mamba::scheduler
