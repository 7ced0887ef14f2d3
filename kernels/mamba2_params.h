// Mamba-2 (SSD) kernels: the multi-head state recurrence over packed variable-length sequences
// (prefill) or one token per row (decode), and the grouped gated RMSNorm after it.
//
// Scan. Per sequence s (tokens cu_seqlens[s]..cu_seqlens[s+1], or token s alone when cu_seqlens is
// null), head h (group g = h / (n_heads / n_groups)), channel p of the head (e = h * head_dim + p)
// and state element n, from the state in slot slots[s] ([n_heads][head_dim][dstate], head-major
// as mamba_ssm holds it):
//   dt      = clamp(softplus(dt_raw[t, h] (+ dt_in_bias[h]) + dt_bias[h]), dt_min, dt_max)
//   h_pn    = exp(dt * A[h]) * h_pn + dt * x[t, e] * B[t, g, n]
//   y[t, e] = sum_n C[t, g, n] * h_pn + D * x[t, e]      (D per head, or per channel)
// x, B and C are the conv's output (xBC, activation dtype), dt_raw in_proj's dt columns. y is fp32.
// A block owns one (sequence, head) pair and walks its tokens in order; a thread holds
// kSsdStatePerThread state elements of one channel in registers, the kSsdLanesPerChannel lanes of
// a channel reduce C . h with shuffles in a fixed order (the result does not depend on the batch).
// The state is read once and written once per launch.
//
// Chunked form (prefill, optional): with chunked_min_tokens > 0, sequences of at least that many
// tokens run SSD's matrix form instead (ssd_chunked_kernel.cuh: chunks of 64 tokens, products on
// tensor cores) when the shapes allow it (head_dim 64, dstate 64 or 128, 16-byte aligned B/C/x
// rows); the rest run the recurrence. Equal up to rounding, not bit for bit, and the result then
// depends on how a prompt was split: off (0) in the deterministic mode.
//
// Gated norm. Per row t: g = y[t, :] * silu(z[t, :] (+ z_bias)); per group of group_size channels,
// g * rsqrt(mean(g^2) + eps) * weight (no normalization when weight is null); written in the
// activation dtype after `mlp` channels of silu(z0) * x0 (state-spaces checkpoints' extra MLP).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <limits>

#include "kernels/kernel_types.h"

namespace mamba::kernels {

inline constexpr int kSsdMaxState = 256;
inline constexpr int kSsdMaxHeadDim = 256;
inline constexpr int kSsdLanesPerChannel = 8;
inline constexpr int kSsdChunkHeadDim = 64;  // the head_dim the chunked form serves

struct SsdScanParams {
  int64_t num_seqs = 0;      // sequences (decode: rows, one token each)
  int64_t total_tokens = 0;  // packed tokens (decode: == num_seqs)
  int64_t n_heads = 0;
  int64_t head_dim = 0;                  // 1..kSsdMaxHeadDim
  int64_t n_groups = 1;                  // divides n_heads
  int64_t dstate = 0;                    // 1..kSsdMaxState
  const void* __restrict__ x = nullptr;  // [tokens, xbc_row_stride] T: channel e at e
  const void* __restrict__ b = nullptr;  // [tokens, xbc_row_stride] T: group g at g * dstate
  const void* __restrict__ c = nullptr;  // [tokens, xbc_row_stride] T
  int64_t xbc_row_stride = 0;
  const void* __restrict__ dt = nullptr;  // [tokens, dt_row_stride] T: head h at h
  int64_t dt_row_stride = 0;
  const float* __restrict__ dt_in_bias = nullptr;  // optional [n_heads] (in_proj's bias)
  const float* __restrict__ dt_bias = nullptr;     // [n_heads]
  float dt_min = 0.0f;
  float dt_max = std::numeric_limits<float>::infinity();
  const float* __restrict__ a = nullptr;  // [n_heads]: -exp(A_log)
  const float* __restrict__ d = nullptr;  // [n_heads], or [n_heads * head_dim] if d_per_channel
  bool d_per_channel = false;
  const int32_t* __restrict__ cu_seqlens = nullptr;  // [num_seqs + 1]; null: one token per row
  const int32_t* __restrict__ slots = nullptr;       // [num_seqs]
  void* __restrict__ state = nullptr;  // this layer's [n_heads][head_dim][dstate] at slot 0
  int64_t state_slot_stride = 0;       // elements between consecutive slots
  float* __restrict__ out = nullptr;   // [tokens, out_row_stride] fp32 (y)
  int64_t out_row_stride = 0;
  // Prefill: sequences of at least this many tokens take the chunked form (0: never).
  int64_t chunked_min_tokens = 0;
  // Prefill: at least the longest sequence's length (0: unknown), so that a batch of short
  // sequences skips the chunked launch.
  int64_t max_seqlen = 0;
  // The chunked form's blocks per head: 0 picks by occupancy (2 when the long sequences' heads
  // leave SMs idle), 1 or 2 force it (tests, A/B comparisons).
  int chunked_head_split = 0;
};

struct GatedNormParams {
  int64_t rows = 0;
  int64_t dim = 0;         // d_ssm channels of y and z
  int64_t group_size = 0;  // channels per normalization group (divides dim)
  int64_t mlp = 0;         // leading silu(z0) * x0 channels (0 unless the checkpoint has them)
  const float* __restrict__ y = nullptr;  // [rows, y_row_stride] fp32
  int64_t y_row_stride = 0;
  const void* __restrict__ z = nullptr;  // [rows, proj_row_stride] T: z at z, z0/x0 at z0/x0
  const void* __restrict__ z0 = nullptr;
  const void* __restrict__ x0 = nullptr;
  int64_t proj_row_stride = 0;
  const float* __restrict__ z_bias = nullptr;   // optional [dim]
  const float* __restrict__ z0_bias = nullptr;  // optional [mlp]
  const float* __restrict__ x0_bias = nullptr;  // optional [mlp]
  const float* __restrict__ weight = nullptr;   // [dim], or null: no normalization
  float eps = 1e-5f;
  void* __restrict__ out = nullptr;  // [rows, out_row_stride] T: mlp channels, then dim
  int64_t out_row_stride = 0;
};

// Per activation dtype (mamba2_{f16,bf16}.cu); `state_dtype` is f32 or bf16. The caller has
// checked the params.
cudaError_t RunSsdScanF16(const SsdScanParams& params, KernelDType state_dtype,
                          cudaStream_t stream);
cudaError_t RunSsdScanBF16(const SsdScanParams& params, KernelDType state_dtype,
                           cudaStream_t stream);
cudaError_t RunGatedNormF16(const GatedNormParams& params, cudaStream_t stream);
cudaError_t RunGatedNormBF16(const GatedNormParams& params, cudaStream_t stream);

}  // namespace mamba::kernels
