// The fused decode step of the SSM: one token per row, each row's state read and written in place
// in its slot. Per row b (slot slots[b]) and channel e:
//   dt_raw = dt_low[b, :] . dt_proj_weight[e, :]   (or dt[b, e] when given precomputed)
//   dt     = softplus(dt_raw + dt_bias[e])
//   h_n    = exp(dt * A[e, n]) * h_n + dt * x[b, e] * B[b, n]
//   out[b, e] = (sum_n C[b, n] * h_n + D[e] * x[b, e]) * silu(z[b, e] (+ z_bias[e]))
// dt projection, softplus, the state update, the C contraction, the D skip and the gate are one
// kernel, and each state element is read and written exactly once, with 16-byte accesses: a
// channel's dstate elements are split over lanes of 16 bytes each (4 fp32 or 8 bf16 elements).
// The per-element math and the reduction order over state elements are those of the prefill scan
// (device_math.cuh), so a token decoded here gives the bits that prefilling it would give when
// dt comes from the same source. A block owns a tile of channels and kStateUpdateRows rows, whose
// state loads are all issued before any is used.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/kernel_types.h"

namespace mamba::kernels {

inline constexpr int kStateUpdateMaxState = 64;
inline constexpr int kStateUpdateThreads = 128;
inline constexpr int kStateUpdateRows = 8;
// The pipelined kernel for large batches (dt precomputed, dstate a multiple of 16-byte lanes): a
// block walks its rows in groups of kStateUpdatePipeGroupRows with the next
// kStateUpdatePipeStages - 1 groups' states in flight, at most kStateUpdatePipeMaxRows rows.
inline constexpr int kStateUpdatePipeGroupRows = 4;
inline constexpr int kStateUpdatePipeStages = 3;
inline constexpr int kStateUpdatePipeMaxRows = 64;
inline constexpr int kStateUpdatePipeDefaultBlocksPerSm = 6;

// Largest dt_rank of the fused low-rank dt (the block's dt_low rows and dt_proj tile are staged
// in shared memory); larger ranks pass dt precomputed.
inline constexpr int kStateUpdateMaxRank = 512;

struct SelectiveStateUpdateParams {
  int64_t batch = 0;
  int64_t dim = 0;                       // d_inner
  int64_t dstate = 0;                    // 1..kStateUpdateMaxState
  int64_t dt_rank = 0;                   // with dt_proj_weight
  const void* __restrict__ x = nullptr;  // [batch, x_row_stride] T: conv output
  int64_t x_row_stride = 0;
  const void* __restrict__ z = nullptr;  // [batch, z_row_stride] T
  int64_t z_row_stride = 0;
  const float* __restrict__ z_bias = nullptr;  // optional [dim]
  // dt: either precomputed (dt, without bias) or from the low-rank projection.
  const void* __restrict__ dt = nullptr;  // [batch, dt_row_stride] T
  int64_t dt_row_stride = 0;
  const void* __restrict__ dt_low = nullptr;  // [batch, dt_low_row_stride] T (dt_rank values)
  int64_t dt_low_row_stride = 0;
  const void* __restrict__ dt_proj_weight = nullptr;  // [dim, dt_rank] T
  const void* __restrict__ b = nullptr;               // [batch, b_row_stride] T
  int64_t b_row_stride = 0;
  const void* __restrict__ c = nullptr;  // [batch, c_row_stride] T
  int64_t c_row_stride = 0;
  const float* __restrict__ dt_bias = nullptr;  // [dim]
  const float* __restrict__ a2 = nullptr;       // [dim, dstate]: -exp(A_log) * log2(e)
  const float* __restrict__ d = nullptr;        // [dim]
  const int32_t* __restrict__ slots = nullptr;  // [batch]
  void* __restrict__ state = nullptr;           // this layer's [dim][dstate] StateT at slot 0
  int64_t state_slot_stride = 0;
  // The kernel just before this one in the stream does not write these states (true for a
  // model's decode step: x_proj or dt_proj precede it). A dependent launch may then read the
  // states before waiting for that kernel; otherwise they are read after it has finished.
  bool state_read_early = false;
  void* __restrict__ out = nullptr;  // [batch, out_row_stride] T
  int64_t out_row_stride = 0;
  // Multiplies out before it is stored: a power of two that keeps a half-precision output in
  // range (the backend's per-layer output scale; 1 leaves every bit as it was).
  float out_scale = 1.0f;
  // Rows per block of the plain kernel (large batches, dt precomputed): 4, 8 or 16; 0 takes
  // StateUpdateRowsPerBlock() (selective_state_update.h), by default 4 or 8, whichever fills
  // its last wave of blocks better.
  int rows_per_block = 0;
  // Large batches with dt precomputed: > 0 takes the pipelined kernel with rows per block chosen
  // for this many blocks per SM, -1 the one-pass kernel (rows_per_block), 0 takes
  // StateUpdatePipeline() (selective_state_update.h): by default the pipelined kernel for bf16
  // states, the one-pass kernel for fp32.
  int pipeline_blocks_per_sm = 0;
};

cudaError_t RunSelectiveStateUpdateF16(const SelectiveStateUpdateParams& params,
                                       KernelDType state_dtype, cudaStream_t stream);
cudaError_t RunSelectiveStateUpdateBF16(const SelectiveStateUpdateParams& params,
                                        KernelDType state_dtype, cudaStream_t stream);

}  // namespace mamba::kernels
