#include "engine/simd/vector_math.h"

#include <cmath>
#include <limits>

#include "engine/simd/simd_math.h"

namespace mamba::simd {
namespace {

template <__m256 (*F)(__m256)>
void Apply(const float* in, float* out, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, F(_mm256_loadu_ps(in + i)));
  if (i < n) simd::StoreF32Tail(out + i, F(simd::LoadF32Tail(in + i, n - i)), n - i);
}

}  // namespace

void ExpArray(const float* in, float* out, int64_t n) { Apply<simd::Exp>(in, out, n); }
void SiluArray(const float* in, float* out, int64_t n) { Apply<simd::Silu>(in, out, n); }
void SoftplusArray(const float* in, float* out, int64_t n) { Apply<simd::Softplus>(in, out, n); }

float MaxOrNaN(const float* x, int64_t n) {
  const __m256 inf = _mm256_set1_ps(std::numeric_limits<float>::infinity());
  __m256 mx = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  __m256 bad = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    mx = _mm256_max_ps(mx, v);
    bad = _mm256_or_ps(
        bad, _mm256_or_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q), _mm256_cmp_ps(v, inf, _CMP_EQ_OQ)));
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, mx);
  float m = lanes[0];
  for (int j = 1; j < 8; ++j) m = lanes[j] > m ? lanes[j] : m;
  bool any_bad = _mm256_movemask_ps(bad) != 0;
  for (; i < n; ++i) {
    if (std::isnan(x[i]) || x[i] == std::numeric_limits<float>::infinity()) any_bad = true;
    m = x[i] > m ? x[i] : m;
  }
  return any_bad ? std::numeric_limits<float>::quiet_NaN() : m;
}

int64_t FindFirst(const float* x, int64_t n, float value) {
  const __m256 v = _mm256_set1_ps(value);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const int mask = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + i), v, _CMP_EQ_OQ));
    if (mask != 0) return i + __builtin_ctz(static_cast<unsigned>(mask));
  }
  for (; i < n; ++i) {
    if (x[i] == value) return i;
  }
  return n;
}

int64_t FindFirstGreater(const float* x, int64_t n, float value) {
  const __m256 v = _mm256_set1_ps(value);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const int mask = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + i), v, _CMP_GT_OQ));
    if (mask != 0) return i + __builtin_ctz(static_cast<unsigned>(mask));
  }
  for (; i < n; ++i) {
    if (x[i] > value) return i;
  }
  return n;
}

double SumExpShifted(const float* x, int64_t n, float shift, float* out) {
  const __m256 s = _mm256_set1_ps(shift);
  __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 e = simd::Exp(_mm256_sub_ps(_mm256_loadu_ps(x + i), s));
    if (out != nullptr) _mm256_storeu_ps(out + i, e);
    lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
    hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
  }
  if (i < n) {
    const __m256 e = simd::Exp(_mm256_sub_ps(simd::LoadF32Tail(x + i, n - i), s));
    const __m256 masked = _mm256_and_ps(e, _mm256_castsi256_ps(simd::TailMask(n - i)));
    if (out != nullptr) simd::StoreF32Tail(out + i, e, n - i);
    lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(masked)));
    hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(masked, 1)));
  }
  alignas(32) double lanes[4];
  _mm256_store_pd(lanes, _mm256_add_pd(lo, hi));
  return (lanes[0] + lanes[2]) + (lanes[1] + lanes[3]);
}

void DivideArray(const float* x, float divisor, float* out, int64_t n) {
  const __m256 d = _mm256_set1_ps(divisor);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, _mm256_div_ps(_mm256_loadu_ps(x + i), d));
  for (; i < n; ++i) out[i] = x[i] / divisor;
}

}  // namespace mamba::simd
