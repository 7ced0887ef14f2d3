// Array forms of the vector math of engine/simd/simd_math.h: exp, silu and softplus
// (checked against the C library by the tests), and the passes over a vocabulary row that the
// sampler makes. Callable from code compiled without AVX2 flags.
#pragma once

#include <cstdint>

namespace mamba::simd {

// out[i] = f(in[i]) for i < n; `in` and `out` may be the same array.
void ExpArray(const float* in, float* out, int64_t n);
void SiluArray(const float* in, float* out, int64_t n);
void SoftplusArray(const float* in, float* out, int64_t n);

// The largest of x[0, n) (n >= 1), or NaN if any element is NaN or +inf.
float MaxOrNaN(const float* x, int64_t n);

// Index of the first element equal to `value` (n when there is none).
int64_t FindFirst(const float* x, int64_t n, float value);

// Index of the first element greater than `value` (n when there is none).
int64_t FindFirstGreater(const float* x, int64_t n, float value);

// Sum over i < n of exp(x[i] - shift), accumulated in double; when `out` is not null it also
// receives each exp(x[i] - shift) as a float (`out` may be `x`).
double SumExpShifted(const float* x, int64_t n, float shift, float* out);

// out[i] = x[i] / divisor (a true division, rounded as the scalar one is).
void DivideArray(const float* x, float divisor, float* out, int64_t n);

}  // namespace mamba::simd
