// Element types of weights and states, and scalar conversions between them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "absl/status/statusor.h"

namespace mamba::model {

enum class DType : uint8_t { kF32, kF16, kBF16 };

// Bytes per element.
constexpr size_t DTypeSize(DType t) { return t == DType::kF32 ? 4 : 2; }

// "f32", "f16", "bf16".
std::string_view DTypeName(DType t);

// Accepts our names and the usual aliases ("fp32", "float32", "fp16", "float16", "half",
// "bfloat16").
absl::StatusOr<DType> ParseDType(std::string_view name);

// IEEE binary16 <-> float, round to nearest even. Handles inf, nan and subnormals.
float HalfToFloat(uint16_t h);
uint16_t FloatToHalf(float f);

// bfloat16 <-> float, round to nearest even (nan stays nan).
inline float BFloat16ToFloat(uint16_t b) {
  uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}
inline uint16_t FloatToBFloat16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);  // nan
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

// Converts `n` elements from `src` (of type `from`) to floats.
void ConvertToFloat(DType from, const void* src, float* dst, size_t n);
// Converts `n` floats to `to`, writing to `dst`.
void ConvertFromFloat(DType to, const float* src, void* dst, size_t n);

}  // namespace mamba::model
