// cp.async (sm_80+): 16-byte copies from global to shared memory that hold no registers while in
// flight, grouped by commit and awaited by group. Shared by the kernels that stage their next
// operands in shared memory (the persistent decode step, the prefill scan).
#pragma once

#include <cuda_runtime.h>

namespace mamba::kernels {

__device__ __forceinline__ void CopyAsync16(void* smem, const void* global) {
  const unsigned int dst = static_cast<unsigned int>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(dst), "l"(global) : "memory");
}

// The same with src_bytes (0..16) read and the rest of the 16 bytes zero-filled; with 0 nothing
// is read, but `global` must still be a valid address.
__device__ __forceinline__ void CopyAsync16Fill(void* smem, const void* global, int src_bytes) {
  const unsigned int dst = static_cast<unsigned int>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(global),
               "r"(src_bytes)
               : "memory");
}

__device__ __forceinline__ void CommitAsync() {
  asm volatile("cp.async.commit_group;" ::: "memory");
}

// Waits until at most kPending committed groups are still in flight (0: all of them).
template <int kPending>
__device__ __forceinline__ void WaitAsync() {
  asm volatile("cp.async.wait_group %0;" ::"n"(kPending) : "memory");
}

}  // namespace mamba::kernels
