// AVX2/FMA/F16C building blocks of the CPU backend: widening loads of f32/f16/bf16 weights, a
// fixed-order horizontal sum, and vector exp/log with their Mamba compositions (silu, softplus).
// Included only by engine/cpu/*.cc, which are compiled with -mavx2 -mfma -mf16c.
//
// Every function computes each lane independently of the others, so a value's result does not
// depend on which lane or which neighbours it was computed with (the batch invariance the backend
// promises rests on this).
#pragma once

#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstring>

namespace mamba::simd {

// Mask for the first `n` (0..8) lanes, for maskload/maskstore.
inline __m256i TailMask(int64_t n) {
  alignas(32) static constexpr int32_t kLanes[16] = {-1, -1, -1, -1, -1, -1, -1, -1,
                                                     0,  0,  0,  0,  0,  0,  0,  0};
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kLanes + 8 - n));
}

inline __m256 LoadF32(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 LoadF32Tail(const float* p, int64_t n) { return _mm256_maskload_ps(p, TailMask(n)); }
inline void StoreF32Tail(float* p, __m256 v, int64_t n) { _mm256_maskstore_ps(p, TailMask(n), v); }

// Eight weights starting at element `i` of a row in the given storage type, widened to f32.
// Widening is exact, so a row gives the same products whatever its storage type's path.
struct F32Weights {
  using T = float;
  static __m256 Load(const T* p) { return _mm256_loadu_ps(p); }
  static __m256 LoadTail(const T* p, int64_t n) { return _mm256_maskload_ps(p, TailMask(n)); }
};
struct F16Weights {
  using T = uint16_t;
  static __m256 Load(const T* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static __m256 LoadTail(const T* p, int64_t n) {
    alignas(16) uint16_t buf[8] = {};
    std::memcpy(buf, p, static_cast<size_t>(n) * sizeof(uint16_t));
    return _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(buf)));
  }
};
struct BF16Weights {
  using T = uint16_t;
  static __m256 Widen(__m128i h) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  static __m256 Load(const T* p) {
    return Widen(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static __m256 LoadTail(const T* p, int64_t n) {
    alignas(16) uint16_t buf[8] = {};
    std::memcpy(buf, p, static_cast<size_t>(n) * sizeof(uint16_t));
    return Widen(_mm_load_si128(reinterpret_cast<const __m128i*>(buf)));
  }
};

// Sum of the eight lanes, always in the same order: ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)).
inline float HorizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// e^x with about 1 ulp of error (Cody-Waite reduction by ln 2, degree-6 polynomial). Returns 0
// below -87.33 (where e^x leaves the normal range), +inf above 88.38, and NaN for NaN.
inline __m256 Exp(__m256 x) {
  const __m256 hi = _mm256_set1_ps(88.3762626647949f);
  const __m256 lo = _mm256_set1_ps(-87.3365447505531f);
  const __m256 too_big = _mm256_cmp_ps(x, hi, _CMP_GT_OQ);
  const __m256 too_small = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
  __m256 xc = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
  const __m256 fx = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  xc = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), xc);
  xc = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), xc);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, xc, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, xc, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, xc, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, xc, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, xc, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(xc, xc), _mm256_add_ps(xc, _mm256_set1_ps(1.0f)));
  const __m256i e =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
  __m256 r = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
  r = _mm256_blendv_ps(r, _mm256_set1_ps(__builtin_inff()), too_big);
  r = _mm256_andnot_ps(too_small, r);
  // NaN compares false both ways above; keep it NaN.
  return _mm256_blendv_ps(r, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

// Natural log for positive normal x with about 1 ulp of error (exponent split, degree-8
// polynomial on the mantissa in [sqrt(1/2), sqrt(2))).
inline __m256 LogPositive(__m256 x) {
  const __m256 one = _mm256_set1_ps(1.0f);
  __m256i xi = _mm256_castps_si256(x);
  __m256 e =
      _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(xi, 23), _mm256_set1_epi32(126)));
  // Mantissa in [0.5, 1).
  __m256 m = _mm256_castsi256_ps(_mm256_or_si256(
      _mm256_and_si256(xi, _mm256_set1_epi32(0x007fffff)), _mm256_set1_epi32(0x3f000000)));
  const __m256 small = _mm256_cmp_ps(m, _mm256_set1_ps(0.707106781186547524f), _CMP_LT_OQ);
  e = _mm256_sub_ps(e, _mm256_and_ps(one, small));
  m = _mm256_sub_ps(_mm256_add_ps(m, _mm256_and_ps(m, small)), one);
  const __m256 z = _mm256_mul_ps(m, m);
  __m256 p = _mm256_set1_ps(7.0376836292e-2f);
  p = _mm256_fmadd_ps(p, m, _mm256_set1_ps(-1.1514610310e-1f));
  p = _mm256_fmadd_ps(p, m, _mm256_set1_ps(1.1676998740e-1f));
  p = _mm256_fmadd_ps(p, m, _mm256_set1_ps(-1.2420140846e-1f));
  p = _mm256_fmadd_ps(p, m, _mm256_set1_ps(1.4249322787e-1f));
  p = _mm256_fmadd_ps(p, m, _mm256_set1_ps(-1.6668057665e-1f));
  p = _mm256_fmadd_ps(p, m, _mm256_set1_ps(2.0000714765e-1f));
  p = _mm256_fmadd_ps(p, m, _mm256_set1_ps(-2.4999993993e-1f));
  p = _mm256_fmadd_ps(p, m, _mm256_set1_ps(3.3333331174e-1f));
  p = _mm256_mul_ps(_mm256_mul_ps(p, m), z);
  p = _mm256_fmadd_ps(e, _mm256_set1_ps(-2.12194440e-4f), p);
  p = _mm256_fnmadd_ps(z, _mm256_set1_ps(0.5f), p);
  __m256 r = _mm256_add_ps(m, p);
  return _mm256_fmadd_ps(e, _mm256_set1_ps(0.693359375f), r);
}

// silu(x) = x / (1 + e^-x).
inline __m256 Silu(__m256 x) {
  const __m256 one = _mm256_set1_ps(1.0f);
  return _mm256_div_ps(x, _mm256_add_ps(one, Exp(_mm256_sub_ps(_mm256_setzero_ps(), x))));
}

// softplus(x) = log(1 + e^x), and x itself above 20 (PyTorch's threshold, which HF uses).
// log1p(u) is computed as log(1 + u) - ((1 + u) - 1 - u) / (1 + u), exact to about 1 ulp even
// where u is far below 1.
inline __m256 Softplus(__m256 x) {
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 u = Exp(_mm256_min_ps(x, _mm256_set1_ps(20.0f)));
  const __m256 w = _mm256_add_ps(one, u);
  const __m256 correction = _mm256_div_ps(_mm256_sub_ps(_mm256_sub_ps(w, one), u), w);
  const __m256 log1p = _mm256_sub_ps(LogPositive(w), correction);
  return _mm256_blendv_ps(log1p, x, _mm256_cmp_ps(x, _mm256_set1_ps(20.0f), _CMP_GT_OQ));
}

// out = in / sqrt(mean(in^2) + eps), times w[i] when w is not null, over n values (in and out may
// be the same). The sum of squares runs in 8 lanes over i and then HorizontalSum, always in that
// order.
inline void RmsNorm(const float* in, const float* w, int64_t n, float eps, float* out) {
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(in + i);
    acc = _mm256_fmadd_ps(v, v, acc);
  }
  if (i < n) {
    const __m256 v = LoadF32Tail(in + i, n - i);
    acc = _mm256_fmadd_ps(v, v, acc);
  }
  const float mean = HorizontalSum(acc) / static_cast<float>(n);
  const __m256 inv = _mm256_set1_ps(1.0f / std::sqrt(mean + eps));
  const __m256 one = _mm256_set1_ps(1.0f);
  for (i = 0; i + 8 <= n; i += 8) {
    const __m256 scale = w != nullptr ? _mm256_loadu_ps(w + i) : one;
    _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(in + i), inv), scale));
  }
  if (i < n) {
    const __m256 scale = w != nullptr ? LoadF32Tail(w + i, n - i) : one;
    StoreF32Tail(out + i, _mm256_mul_ps(_mm256_mul_ps(LoadF32Tail(in + i, n - i), inv), scale),
                 n - i);
  }
}

// A weightless RMSNorm in place (FalconMamba's normalization of dt_low, B and C).
inline void RmsNormInPlace(float* v, int64_t n, float eps) { RmsNorm(v, nullptr, n, eps, v); }

}  // namespace mamba::simd
