// What the engine tells its users about a session: its description (GetSession, ListSessions and
// the replies of the session calls) and a page of a listing. Plain values, no behaviour.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace mamba {

// Where a session's state is held: in a device slot, or moved to host memory while idle.
enum class StateTier { kDevice, kHost };

struct SessionInfo {
  std::string session_id;
  std::string tenant;
  int64_t tokens = 0;  // tokens processed into the state so far
  // Tokens the last generation produced, every one kept in the session (and sent, though a client
  // that cancelled may not have read them all).
  int64_t last_generated_tokens = 0;
  absl::Time created;
  absl::Time last_used;
  absl::Time expires;
  absl::Duration ttl;
  StateTier tier = StateTier::kDevice;
  bool busy = false;  // a generation is running on it
  std::string broken_reason;  // why it can no longer be used ("" when it can)
};

struct SessionPage {
  std::vector<SessionInfo> sessions;
  std::string next_page_token;  // "" at the end
  int64_t total = 0;
};

}  // namespace mamba
