// One matrix product of the model: D[m, n] = A[m, k] . W[n, k]^T, all row-major, A the
// activations and W a PyTorch Linear weight ([out, in]), fp32 accumulation. Shared by the
// cuBLASLt path and the batch-invariant kernel.
#pragma once

#include <cstdint>

#include "kernels/kernel_types.h"

namespace mamba::kernels {

struct GemmArgs {
  int64_t m = 0;
  int64_t n = 0;
  int64_t k = 0;
  const void* a = nullptr;  // [m, lda] ab_dtype
  int64_t lda = 0;
  const void* w = nullptr;  // [n, ldw] ab_dtype
  int64_t ldw = 0;
  void* d = nullptr;  // [m, ldd] d_dtype
  int64_t ldd = 0;
  KernelDType ab_dtype = KernelDType::kF16;  // f16 or bf16
  KernelDType d_dtype = KernelDType::kF16;   // ab_dtype, or f32 (logits)
};

}  // namespace mamba::kernels
