#include "kernels/device_info.h"

#include <cuda_runtime_api.h>

#include <array>
#include <atomic>

namespace mamba::kernels {
namespace {

// A positive attribute of the current device, cached per device in `cache` (0: not read yet);
// `fallback` when it cannot be read.
int CachedAttribute(std::array<std::atomic<int>, 64>& cache, cudaDeviceAttr attribute,
                    int fallback) {
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device < 0) return fallback;
  const bool cacheable = device < static_cast<int>(cache.size());
  if (cacheable) {
    const int cached = cache[device].load(std::memory_order_relaxed);
    if (cached > 0) return cached;
  }
  int value = 0;
  if (cudaDeviceGetAttribute(&value, attribute, device) != cudaSuccess || value <= 0) {
    return fallback;
  }
  if (cacheable) cache[device].store(value, std::memory_order_relaxed);
  return value;
}

}  // namespace

int CurrentDeviceSmCount() {
  static std::array<std::atomic<int>, 64> cache{};
  return CachedAttribute(cache, cudaDevAttrMultiProcessorCount, 1);
}

int CurrentDeviceComputeMajor() {
  static std::array<std::atomic<int>, 64> cache{};
  return CachedAttribute(cache, cudaDevAttrComputeCapabilityMajor, 0);
}

}  // namespace mamba::kernels
