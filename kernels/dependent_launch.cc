#include "kernels/dependent_launch.h"

#include <atomic>

#include "kernels/device_info.h"

namespace mamba::kernels {
namespace {

std::atomic<bool> policy{true};

}  // namespace

bool DependentLaunchEnabled() {
  return policy.load(std::memory_order_relaxed) && CurrentDeviceComputeMajor() >= 9;
}

void SetDependentLaunch(bool enabled) { policy.store(enabled, std::memory_order_relaxed); }

}  // namespace mamba::kernels
