// Device side and launch helper of programmatic dependent launch (see dependent_launch.h).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <utility>

#include "kernels/dependent_launch.h"
#include "kernels/device_info.h"

namespace mamba::kernels {

// Blocks until the kernel this one was launched after has completed and its writes are visible
// (a no-op for a kernel not launched as dependent, and before sm_90).
__device__ __forceinline__ void WaitForPriorKernels() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Lets the next kernel (if launched as dependent) start its blocks early.
__device__ __forceinline__ void AllowDependentKernels() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Whether a decode kernel of `blocks` blocks runs as a programmatic dependent (its independent
// loads before the wait) or as a plain launch after its predecessor. Dependent launch pays off
// for grids of about one wave (few rows: the step is a chain of launch latencies). At batch
// 64-256 the conv and state update keep plain kernels with their flat code (the forms the
// dependent variants use measured 15-65% slower per kernel there on the H100).
inline bool PreloadBeforeWait(int64_t blocks) {
  return blocks <= 2 * static_cast<int64_t>(CurrentDeviceSmCount());
}

// Launches `kernel`, as a programmatic dependent of the stream's previous kernel when `dependent`
// and DependentLaunchEnabled().
template <typename... Params, typename... Args>
cudaError_t LaunchKernel(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem,
                         cudaStream_t stream, bool dependent, Args&&... args) {
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  cudaLaunchAttribute attribute[1] = {};
  if (dependent && DependentLaunchEnabled()) {
    attribute[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attribute[0].val.programmaticStreamSerializationAllowed = 1;
    config.attrs = attribute;
    config.numAttrs = 1;
  }
  return cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
}

}  // namespace mamba::kernels
