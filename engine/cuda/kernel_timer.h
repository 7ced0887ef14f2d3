// Per-kernel-family timing of one eagerly run step (the --breakdown view): an event is recorded
// before each launch, so the interval up to the next event belongs to that launch's family.
// Adds a little time per launch; graphs are never timed this way.
#pragma once

#include <cuda_runtime_api.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace mamba::cuda {

struct KernelFamilyTime {
  std::string family;
  double ms = 0.0;
  int launches = 0;
};

class KernelTimer {
 public:
  // Creates `capacity` events on the current device.
  static absl::StatusOr<std::unique_ptr<KernelTimer>> Create(int capacity = 8192);
  ~KernelTimer();
  KernelTimer(const KernelTimer&) = delete;
  KernelTimer& operator=(const KernelTimer&) = delete;

  // Starts a new timing (forgets earlier marks).
  void Reset();
  // Records an event on `stream`: the time from here to the next mark is `family`'s. `family` must
  // outlive the timer (a string literal).
  absl::Status Mark(const char* family, cudaStream_t stream);
  // Closes the last interval.
  absl::Status Finish(cudaStream_t stream);
  // After Finish and a synchronize: time per family, in order of first appearance.
  absl::StatusOr<std::vector<KernelFamilyTime>> Collect() const;

 private:
  KernelTimer() = default;
  std::vector<cudaEvent_t> events_;
  std::vector<const char*> families_;  // families_[i] starts at events_[i]
  size_t used_ = 0;
  bool finished_ = false;
};

}  // namespace mamba::cuda
