// The prefix cache's options, apart from its internals so that the engine's public options can
// embed them. Each default is written here once.
#pragma once

#include <cstdint>

namespace mamba::prefix_cache {

struct PrefixCacheOptions {
  bool enabled = true;
  // State bytes the cache may keep in device slots (spare ones only: sessions and running
  // requests take slots first) and in host memory, in GB (2^30 bytes).
  double device_gb = 2.0;
  double host_gb = 2.0;
  // A prompt longer than this is checkpointed every `interval` tokens (0: no interval
  // checkpoints); marked offsets and the prompt but its last token are checkpointed anyway.
  int32_t interval = 512;
};

}  // namespace mamba::prefix_cache
