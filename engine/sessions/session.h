// A session: a conversation whose recurrent state stays on the server between requests.
// SessionStore owns the bookkeeping of sessions (ids, owners, TTLs); StatePlacement owns their
// states (which slot or host buffer holds each).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "engine/backend/backend.h"
#include "engine/sessions/session_options.h"

namespace mamba::sessions {

// Every field is guarded by the store's mutex (hold a SessionStore::Lock to read or change it).
// `where`, `slot` and `host` are changed only by StatePlacement, on the scheduler thread.
struct Session {
  enum class Where { kZero, kDevice, kHost };

  std::string id;
  std::string tenant;
  absl::Time created;
  absl::Time last_used;
  absl::Duration ttl;
  // Tokens of the conversation so far: those fed into the state plus `pending`.
  int64_t tokens = 0;
  // Tokens the last generation on it produced, all kept in the conversation (a client that
  // cancelled may not have read them all).
  int64_t last_generated = 0;
  // Tokens streamed (or given) but not yet fed into the state; the next turn feeds them first.
  std::vector<int32_t> pending;
  Where where = Where::kZero;                // kZero: a fresh all-zero state, nothing allocated yet
  int32_t slot = -1;                         // when kDevice
  std::unique_ptr<backend::HostState> host;  // when kHost
  bool busy = false;                         // a generation or session command is using it
  bool closed = false;  // removed from the store; a request still holding it must stop
  // Set when a generation on it failed in the model (its state was lost with it): the session
  // stays visible, refuses new work with this reason, and can be closed.
  std::string broken_reason;
};

}  // namespace mamba::sessions
