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
  int64_t slots_used = 0;  // by sessions and requests; the prefix cache's are counted below
  int64_t state_bytes_device = 0;
  int64_t state_bytes_host = 0;
  int64_t evictions_to_host = 0;
  int64_t evictions_dropped = 0;
  int64_t restores_from_host = 0;
  int64_t resumed_tokens = 0;
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
  int64_t steps = 0;
  // The prefix state cache (prefix_cache::PrefixCacheStats).
  int64_t prefix_cache_lookups = 0;
  int64_t prefix_cache_hits = 0;
  int64_t prefix_cache_hit_tokens = 0;
  int64_t prefix_cache_insertions = 0;
  int64_t prefix_cache_evictions_to_host = 0;
  int64_t prefix_cache_evictions_dropped = 0;
  int64_t prefix_cache_device_entries = 0;
  int64_t prefix_cache_device_bytes = 0;
  int64_t prefix_cache_host_entries = 0;
  int64_t prefix_cache_host_bytes = 0;
};

}  // namespace mamba
