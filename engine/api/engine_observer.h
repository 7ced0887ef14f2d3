// Per-step and per-request notifications for metrics and logs. The engine calls them on its
// scheduler thread: implementations must be quick and must not call back into the engine.
#pragma once

#include <cstdint>

#include "absl/time/time.h"
#include "engine/api/generation.h"

namespace mamba {

class EngineObserver {
 public:
  virtual ~EngineObserver() = default;
  enum class StepPhase { kPrefill, kDecode, kMixed };
  virtual void OnStep(StepPhase phase, double seconds, int32_t batch_size, int32_t prefill_tokens,
                      int32_t decode_tokens) = 0;
  // A request produced its first token (`time_to_first_token` after it was submitted), or a
  // later one `gap` after its previous token.
  virtual void OnFirstToken(absl::Duration time_to_first_token) = 0;
  virtual void OnInterTokenLatency(absl::Duration gap) = 0;
  virtual void OnRequestFinished(const GenerationRequest& request,
                                 const GenerationResult& result) = 0;
  // An idle session's state left its slot: moved to host memory, or dropped (evicted).
  virtual void OnSessionEviction(bool to_host) = 0;
  virtual void OnResumedTokens(int64_t tokens) = 0;
};

}  // namespace mamba
