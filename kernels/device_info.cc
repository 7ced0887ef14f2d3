#include "kernels/device_info.h"

#include <cuda_runtime_api.h>

#include <array>
#include <atomic>

namespace mamba::kernels {

int CurrentDeviceSmCount() {
  static std::array<std::atomic<int>, 64> cache{};
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device < 0) return 1;
  if (device < static_cast<int>(cache.size())) {
    const int cached = cache[device].load(std::memory_order_relaxed);
    if (cached > 0) return cached;
  }
  int sms = 0;
  if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess ||
      sms <= 0) {
    return 1;
  }
  if (device < static_cast<int>(cache.size())) cache[device].store(sms, std::memory_order_relaxed);
  return sms;
}

}  // namespace mamba::kernels
