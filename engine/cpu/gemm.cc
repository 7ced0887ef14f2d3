// Tiling: an MR x NR tile of outputs keeps MR * NR accumulators, MR activation vectors and one
// weight vector in the sixteen ymm registers (3 x 4, or 2 x 6 and 1 x 8 for the small batches of
// decode, where the weights stream from memory and more rows in flight help). Each weight vector
// is widened once and used MR times. Activation rows are blocked so that a block stays in L2
// while every weight panel of the thread's range passes over it; the weights themselves are read
// from memory once per block, which for decode (one block) means once per step.
#include "engine/cpu/gemm.h"

#include <algorithm>
#include <array>
#include <utility>

#include "engine/simd/simd_math.h"

namespace mamba::cpu {
namespace {

// Bytes of activation rows per block: about half of a 512 KiB L2.
constexpr int64_t kActivationBlockBytes = 256 * 1024;
constexpr int kMaxMR = 3;

constexpr int kMaxNR = 8;

template <class L>
using TileFn = void (*)(const float* x, int64_t ldx, const typename L::T* w, int64_t ldw,
                        int64_t k_len, const float* bias, int64_t n0, OutputRows y, int64_t m0);

template <class L, int MR, int NR>
void Tile(const float* x, int64_t ldx, const typename L::T* w, int64_t ldw, int64_t k_len,
          const float* bias, int64_t n0, OutputRows y, int64_t m0) {
  __m256 acc[MR][NR];
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m) {
#pragma GCC unroll 8
    for (int n = 0; n < NR; ++n) acc[m][n] = _mm256_setzero_ps();
  }
  int64_t k = 0;
  for (; k + 8 <= k_len; k += 8) {
    __m256 xv[MR];
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m) xv[m] = _mm256_loadu_ps(x + m * ldx + k);
#pragma GCC unroll 8
    for (int n = 0; n < NR; ++n) {
      const __m256 wv = L::Load(w + n * ldw + k);
#pragma GCC unroll 8
      for (int m = 0; m < MR; ++m) acc[m][n] = _mm256_fmadd_ps(wv, xv[m], acc[m][n]);
    }
  }
  if (k < k_len) {
    const int64_t rest = k_len - k;
    __m256 xv[MR];
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m) xv[m] = simd::LoadF32Tail(x + m * ldx + k, rest);
#pragma GCC unroll 8
    for (int n = 0; n < NR; ++n) {
      const __m256 wv = L::LoadTail(w + n * ldw + k, rest);
#pragma GCC unroll 8
      for (int m = 0; m < MR; ++m) acc[m][n] = _mm256_fmadd_ps(wv, xv[m], acc[m][n]);
    }
  }
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m) {
    float* out = y.row(m0 + m) + n0;
#pragma GCC unroll 8
    for (int n = 0; n < NR; ++n) {
      float s = simd::HorizontalSum(acc[m][n]);
      if (bias != nullptr) s += bias[n0 + n];
      out[n] = s;
    }
  }
}

template <class L, int MR, int... NR>
constexpr std::array<TileFn<L>, sizeof...(NR)> TileRow(std::integer_sequence<int, NR...>) {
  return {&Tile<L, MR, NR + 1>...};
}

template <class L>
struct TileTable {
  static constexpr std::array<std::array<TileFn<L>, kMaxNR>, kMaxMR> kTiles = {
      TileRow<L, 1>(std::make_integer_sequence<int, kMaxNR>()),
      TileRow<L, 2>(std::make_integer_sequence<int, kMaxNR>()),
      TileRow<L, 3>(std::make_integer_sequence<int, kMaxNR>()),
  };
};

template <class L>
void MatMulTyped(const float* x, int64_t ldx, int64_t num_rows, const WeightMatrix& wm,
                 const float* bias, int64_t n_begin, int64_t n_end, OutputRows y) {
  const auto* w = static_cast<const typename L::T*>(wm.data);
  const int64_t k_len = wm.cols;
  // Tile shape by batch size; the shape changes speed, never results.
  int mr = 3, nr = 4;
  if (num_rows == 1) {
    mr = 1;
    nr = 8;
  } else if (num_rows == 2) {
    mr = 2;
    nr = 6;
  }
  const int64_t row_bytes = std::max<int64_t>(k_len, 1) * static_cast<int64_t>(sizeof(float));
  const int64_t block = std::max<int64_t>(mr, kActivationBlockBytes / row_bytes / mr * mr);
  const auto& tiles = TileTable<L>::kTiles;
  const int64_t row_bytes_w = k_len * static_cast<int64_t>(sizeof(typename L::T));
  const char* range_end = reinterpret_cast<const char*>(w + n_end * k_len);
  for (int64_t mb = 0; mb < num_rows; mb += block) {
    const int64_t me = std::min(num_rows, mb + block);
    for (int64_t n = n_begin; n < n_end; n += nr) {
      const int nn = static_cast<int>(std::min<int64_t>(nr, n_end - n));
      const typename L::T* wrow = w + n * k_len;
      if (mb == 0) {
        // Request every line of the panel before multiplying it: memory then fetches them all
        // in parallel instead of following the kernel's row-by-row demand, which the hardware
        // prefetcher alone does not get ahead of (measured: the output head, 77 MB of f16, 25%
        // faster at batch 1 and 35% at batch 8; prefetching further ahead did worse).
        const char* p = reinterpret_cast<const char*>(wrow);
        const char* e = std::min(range_end, p + nr * row_bytes_w);
        for (; p < e; p += 64) _mm_prefetch(p, _MM_HINT_T0);
      }
      for (int64_t m = mb; m < me; m += mr) {
        const int mm = static_cast<int>(std::min<int64_t>(mr, me - m));
        tiles[mm - 1][nn - 1](x + m * ldx, ldx, wrow, k_len, k_len, bias, n, y, m);
      }
    }
  }
}

}  // namespace

WeightMatrix WeightMatrix::From(const model::TensorView& t) {
  WeightMatrix m;
  m.dtype = t.dtype;
  m.data = t.data;
  m.rows = t.shape.empty() ? 0 : t.shape[0];
  m.cols = m.rows == 0 ? 0 : t.numel() / m.rows;
  return m;
}

void MatMul(const float* x, int64_t ldx, int64_t num_rows, const WeightMatrix& w, const float* bias,
            int64_t n_begin, int64_t n_end, OutputRows y) {
  if (num_rows <= 0 || n_begin >= n_end) return;
  switch (w.dtype) {
    case model::DType::kF32:
      MatMulTyped<simd::F32Weights>(x, ldx, num_rows, w, bias, n_begin, n_end, y);
      return;
    case model::DType::kF16:
      MatMulTyped<simd::F16Weights>(x, ldx, num_rows, w, bias, n_begin, n_end, y);
      return;
    case model::DType::kBF16:
      MatMulTyped<simd::BF16Weights>(x, ldx, num_rows, w, bias, n_begin, n_end, y);
      return;
  }
}

}  // namespace mamba::cpu
