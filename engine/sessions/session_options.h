// The sessions module's options, apart from its internals so that the engine's public options can
// embed them. Each default is written here once.
#pragma once

#include <cstdint>
#include <string>

#include "absl/time/time.h"

namespace mamba::sessions {

struct SessionOptions {
  int32_t max_sessions = 10000;                    // live sessions; 0 = unlimited
  int32_t tenant_max_sessions = 0;                 // per tenant; 0 = unlimited
  absl::Duration default_ttl = absl::Minutes(30);  // of idle sessions, when a request sets none
  double host_state_memory_gb = 4.0;               // for idle states moved off the device
  // Keys that sign and verify exports, one per line (sessions::SessionKeys); "" = a random key of
  // this process (exports then import only here).
  std::string key_file;
  int32_t max_pending_tokens = 16384;  // an imported session's unfed tokens (--max_prompt_tokens)
};

}  // namespace mamba::sessions
