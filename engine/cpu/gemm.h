// The CPU backend's matrix product: activations (f32 rows) times a weight matrix kept in its
// checkpoint dtype (f32, f16 or bf16), widened to f32 in registers as it is read. One call reads
// each weight row once for all activation rows, so a batch of B sequences costs one pass over the
// weights, not B.
#pragma once

#include <cstdint>

#include "engine/model/dtype.h"
#include "engine/model/model_weights.h"

namespace mamba::cpu {

// A row-major matrix [rows, cols] in its storage dtype: PyTorch's Linear layout [out, in].
struct WeightMatrix {
  model::DType dtype = model::DType::kF32;
  const void* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;

  // A view of `t` as [shape[0], product of the other dims].
  static WeightMatrix From(const model::TensorView& t);
};

// Where row m of a product goes: base + m * stride, or rows[m] when `rows` is set.
struct OutputRows {
  float* base = nullptr;
  int64_t stride = 0;
  float* const* rows = nullptr;

  float* row(int64_t m) const { return rows != nullptr ? rows[m] : base + m * stride; }
};

// y.row(m)[n] = sum_k x[m * ldx + k] * w[n][k] (+ bias[n] when bias is not null), for
// m < num_rows and n in [n_begin, n_end); k runs over w.cols.
//
// Each output is summed in one fixed order: eight interleaved partial sums over k (lane j takes
// k = j, j + 8, ...; a partial last group counts as zeros), combined by a fixed tree, then the
// bias. That order does not depend on num_rows, on the range, on the tiling or on the other rows,
// so a row's result is bit-identical however it is batched (what batch invariance rests on).
void MatMul(const float* x, int64_t ldx, int64_t num_rows, const WeightMatrix& w, const float* bias,
            int64_t n_begin, int64_t n_end, OutputRows y);

}  // namespace mamba::cpu
