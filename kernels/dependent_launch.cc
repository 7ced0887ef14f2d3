#include "kernels/dependent_launch.h"

#include <cuda_runtime_api.h>

#include <array>
#include <atomic>

namespace mamba::kernels {
namespace {

std::atomic<bool> policy{true};

bool DeviceSupportsDependentLaunch() {
  // 0 unknown, 1 no, 2 yes; per device.
  static std::array<std::atomic<int>, 64> cache{};
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device < 0) return false;
  const bool cacheable = device < static_cast<int>(cache.size());
  if (cacheable) {
    const int cached = cache[device].load(std::memory_order_relaxed);
    if (cached != 0) return cached == 2;
  }
  int major = 0;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess) {
    return false;
  }
  const bool yes = major >= 9;
  if (cacheable) cache[device].store(yes ? 2 : 1, std::memory_order_relaxed);
  return yes;
}

}  // namespace

bool DependentLaunchEnabled() {
  return policy.load(std::memory_order_relaxed) && DeviceSupportsDependentLaunch();
}

void SetDependentLaunch(bool enabled) { policy.store(enabled, std::memory_order_relaxed); }

}  // namespace mamba::kernels
