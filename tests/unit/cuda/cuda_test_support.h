// Helpers shared by the CUDA tests: device arrays, half-precision conversions, fresh random
// inputs and error measures. Tests skip cleanly when no GPU is visible.
#pragma once

#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "engine/model/dtype.h"
#include "gtest/gtest.h"
#include "kernels/kernel_types.h"

namespace mamba::testing {

inline bool HaveGpu() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return n > 0;
}

#define MAMBA_SKIP_WITHOUT_GPU() \
  if (!::mamba::testing::HaveGpu()) GTEST_SKIP() << "no CUDA device visible"

// A fresh seed per call (printed on failure through SCOPED_TRACE by the caller).
inline uint64_t FreshSeed() {
  std::random_device rd;
  return (static_cast<uint64_t>(rd()) << 32) ^ rd();
}

// Device memory holding n elements of T, freed on destruction.
template <typename T>
class DeviceArray {
 public:
  explicit DeviceArray(size_t n) : n_(n) {
    if (n_ > 0) {
      void* p = nullptr;
      EXPECT_EQ(cudaMalloc(&p, n_ * sizeof(T)), cudaSuccess);
      p_ = static_cast<T*>(p);
    }
  }
  explicit DeviceArray(const std::vector<T>& v) : DeviceArray(v.size()) { Upload(v); }
  ~DeviceArray() {
    if (p_ != nullptr) cudaFree(p_);
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;

  T* get() const { return p_; }
  size_t size() const { return n_; }
  void Upload(const std::vector<T>& v) {
    ASSERT_EQ(v.size(), n_);
    if (n_ > 0) {
      ASSERT_EQ(cudaMemcpy(p_, v.data(), n_ * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
    }
  }
  std::vector<T> Download() const {
    std::vector<T> v(n_);
    if (n_ > 0) {
      EXPECT_EQ(cudaMemcpy(v.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    }
    return v;
  }
  // Fills every byte with 0xFF: NaN in f32, f16 and bf16, so unwritten outputs show.
  void Poison() {
    if (n_ > 0) {
      ASSERT_EQ(cudaMemset(p_, 0xFF, n_ * sizeof(T)), cudaSuccess);
    }
  }

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};

inline model::DType EngineDType(kernels::KernelDType t) {
  switch (t) {
    case kernels::KernelDType::kF16:
      return model::DType::kF16;
    case kernels::KernelDType::kBF16:
      return model::DType::kBF16;
    case kernels::KernelDType::kF32:
      return model::DType::kF32;
  }
  return model::DType::kF32;
}

inline uint16_t ToHalfBits(float v, kernels::KernelDType t) {
  return t == kernels::KernelDType::kF16 ? model::FloatToHalf(v) : model::FloatToBFloat16(v);
}
inline float FromHalfBits(uint16_t b, kernels::KernelDType t) {
  return t == kernels::KernelDType::kF16 ? model::HalfToFloat(b) : model::BFloat16ToFloat(b);
}

// Rounds every value to the 2-byte dtype `t` in place and returns the bits.
inline std::vector<uint16_t> RoundToHalf(std::vector<float>& v, kernels::KernelDType t) {
  std::vector<uint16_t> bits(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    bits[i] = ToHalfBits(v[i], t);
    v[i] = FromHalfBits(bits[i], t);
  }
  return bits;
}

inline std::vector<float> HalfToFloats(const std::vector<uint16_t>& bits, kernels::KernelDType t) {
  std::vector<float> v(bits.size());
  for (size_t i = 0; i < bits.size(); ++i) v[i] = FromHalfBits(bits[i], t);
  return v;
}

inline std::vector<float> Uniform(std::mt19937_64& rng, size_t n, float lo, float hi) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) {
    do {
      x = d(rng);
    } while (x == 0.0f);  // never zeros
  }
  return v;
}

inline std::vector<float> Normal(std::mt19937_64& rng, size_t n, float stddev) {
  std::normal_distribution<float> d(0.0f, stddev);
  std::vector<float> v(n);
  for (float& x : v) {
    do {
      x = d(rng);
    } while (x == 0.0f);
  }
  return v;
}

// ||a - ref|| / ||ref|| over the elements where `mask` (if given) is set; NaN in a counts as
// infinite error.
inline double RelativeL2(const std::vector<float>& a, const std::vector<double>& ref) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (std::isnan(a[i])) return INFINITY;
    const double d = static_cast<double>(a[i]) - ref[i];
    num += d * d;
    den += ref[i] * ref[i];
  }
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-30);
}

inline bool AnyNan(const std::vector<float>& v) {
  for (float x : v) {
    if (std::isnan(x)) return true;
  }
  return false;
}

inline bool BitEqual(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace mamba::testing
