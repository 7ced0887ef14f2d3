// Counters and gauges the engine keeps, read by the metrics endpoint (Engine::Stats). Plain
// values; each field is a snapshot, not a consistent cut across fields.
#pragma once

#include <cstdint>

namespace mamba {

struct EngineStats {
  int64_t requests_running = 0;
  int64_t requests_waiting = 0;
  int64_t sessions_device = 0;
  int64_t sessions_host = 0;
  int64_t slots_total = 0;
  int64_t slots_used = 0;
  int64_t state_bytes_device = 0;
  int64_t state_bytes_host = 0;
  int64_t evictions_to_host = 0;
  int64_t evictions_dropped = 0;
  int64_t restores_from_host = 0;
  int64_t resumed_tokens = 0;
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
  int64_t steps = 0;
};

}  // namespace mamba
