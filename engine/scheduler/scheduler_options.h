// The scheduler's options, apart from the scheduler so that the engine's public options can embed
// them without the scheduler's internals. Each default is written here once.
#pragma once

#include <cstdint>

namespace mamba::scheduler {

struct SchedulerOptions {
  int32_t max_running = 256;                   // sequences advanced together (<= slots)
  int32_t max_queue = 1024;                    // requests waiting for admission
  int32_t max_prefill_tokens_per_step = 2048;  // prompt tokens per step (bounds decode stalls)
  int32_t max_unread_tokens = 256;             // a stream further behind is paused
  int32_t tenant_max_running = 0;              // queued + running per tenant; 0 = unlimited
};

}  // namespace mamba::scheduler
