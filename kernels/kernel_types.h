// Element types as the kernels see them. Kernels know nothing of engine types; the CUDA backend
// maps its weight and state dtypes onto these.
#pragma once

#include <cstdint>

namespace mamba::kernels {

enum class KernelDType : uint8_t { kF32, kF16, kBF16 };

inline const char* KernelDTypeName(KernelDType t) {
  switch (t) {
    case KernelDType::kF32:
      return "f32";
    case KernelDType::kF16:
      return "f16";
    case KernelDType::kBF16:
      return "bf16";
  }
  return "unknown";
}

inline int KernelDTypeSize(KernelDType t) { return t == KernelDType::kF32 ? 4 : 2; }

}  // namespace mamba::kernels
