// Residual add + RMSNorm, fused, with the embedding gather of the first layer folded in.
//
// For each logical row i (physical row p = row_index ? row_index[i] : i):
//   r = tokens ? embedding[tokens[p]] : residual[p] + add[p] + add_bias    (fp32; add optional)
//   out[i] = r * rsqrt(mean(r^2) + eps) * weight                           (activation dtype)
//   residual[p] = r                                                       (when write_residual)
// The residual stream stays fp32 (residual_in_fp32); `add` is the previous block's out_proj output
// in the activation dtype and add_bias its bias. The final norm before the output head gathers
// only each sequence's last position through row_index and leaves the residual alone.
//
// Layout: row-major rows, element stride 1. One block of kRmsNormThreads per row; each thread
// keeps its share of the row in registers (d_model <= kRmsNormMaxDim), so the row is read once.
// The sum of squares is reduced in a fixed order that depends only on d_model, never on the
// number of rows (the batch-invariant mode relies on that).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/kernel_types.h"

namespace mamba::kernels {

inline constexpr int kRmsNormThreads = 256;
inline constexpr int64_t kRmsNormMaxDim = 8192;

struct RmsNormParams {
  int64_t rows = 0;  // logical rows (output rows)
  int64_t dim = 0;
  float* __restrict__ residual = nullptr;  // [physical rows, residual_row_stride] fp32
  int64_t residual_row_stride = 0;
  const void* __restrict__ add = nullptr;  // optional, [physical rows, add_row_stride] T
  int64_t add_row_stride = 0;
  const float* __restrict__ add_bias = nullptr;  // optional [dim], only with add
  float add_scale = 1.0f;  // residual += add * add_scale + add_bias (undoes a stored output scale)
  const int32_t* __restrict__ tokens = nullptr;     // optional: rows come from the embedding
  const void* __restrict__ embedding = nullptr;     // [vocab, dim] T, with tokens
  const int32_t* __restrict__ row_index = nullptr;  // optional logical -> physical row map
  bool write_residual = true;
  const float* __restrict__ weight = nullptr;  // [dim]
  void* __restrict__ out = nullptr;            // [rows, out_row_stride] T
  int64_t out_row_stride = 0;
  float eps = 1e-5f;
};

// Per activation dtype (defined in rms_norm_{f16,bf16}.cu). The caller has checked `params`.
cudaError_t RunRmsNormF16(const RmsNormParams& params, cudaStream_t stream);
cudaError_t RunRmsNormBF16(const RmsNormParams& params, cudaStream_t stream);

}  // namespace mamba::kernels
