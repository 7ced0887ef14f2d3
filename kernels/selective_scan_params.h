// The fused prefill selective scan over packed variable-length sequences, starting from each
// sequence's SSM state in its slot and writing the final state back.
//
// For each sequence s (tokens cu_seqlens[s]..cu_seqlens[s+1]) and channel e, with h the slot's
// state [dstate] (fp32 in registers; stored as StateT):
//   dt_t  = softplus(dt[t, e] + dt_bias[e])
//   h_n   = exp(dt_t * A[e, n]) * h_n + dt_t * x[t, e] * B[t, n]      (A = -exp(A_log), given as
//                                                                    a2 = A * log2(e))
//   y_t   = sum_n C[t, n] * h_n
//   out[t, e] = (y_t + D[e] * x[t, e]) * silu(z[t, e] (+ z_bias[e]))
// Nothing of shape (tokens, dim, dstate) ever touches memory: discretized values live in
// registers, and per token only x, dt, z in and out out (8 bytes per channel in half precision)
// plus B and C (shared by all channels) move.
//
// Tiling: a block owns one sequence and a tile of channels; each channel's dstate elements are
// split over kLanes consecutive lanes (4 elements each; 8 where 8 per thread still fill most of a
// wave of blocks; 1 only when forced). The block walks the sequence in chunks of kScanChunk tokens:
// the next chunk's tiles are requested before the current chunk is computed (cp.async into shared
// memory with 4 or fewer states per thread, 16-byte loads into registers with 8), softplus and
// dt*x are computed once per (token, channel) into shared memory, then every lane runs its state
// elements sequentially over the chunk (the recurrence is exact in time order, so chunking the
// sequence differently cannot change the result), and the gated output is written with 16-byte
// stores. The y reduction over state elements is one canonical pairwise tree (device_math.cuh),
// shared with the decode kernel, so a token gives the same bits whether it is prefilled or decoded.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/kernel_types.h"

namespace mamba::kernels {

inline constexpr int kScanMaxState = 64;
inline constexpr int kScanChunk = 32;
inline constexpr int kScanThreads = 128;
// Resident blocks per SM each layout (state elements per thread) is built for: its register
// cap (80 registers for 4 states, whose next chunk waits in shared memory rather than registers;
// 128 for 8). The launcher sizes time-parallel launches to one wave of these.
constexpr int ScanBlocksPerSm(int states_per_thread) { return states_per_thread == 8 ? 4 : 6; }
// Channels of one block: kScanThreads / (lanes per channel), lanes = padded d_state / spt.
constexpr int ScanChannelsPerBlock(int64_t dstate, int states_per_thread) {
  return kScanThreads / ((dstate <= 16 ? 16 : kScanMaxState) / states_per_thread);
}

struct SelectiveScanParams {
  int64_t num_seqs = 0;
  int64_t total_tokens = 0;
  int64_t dim = 0;                       // d_inner
  int64_t dstate = 0;                    // d_state, 1..kScanMaxState
  const void* __restrict__ x = nullptr;  // [tokens, x_row_stride] T: conv output
  int64_t x_row_stride = 0;
  const void* __restrict__ dt = nullptr;  // [tokens, dt_row_stride] T: dt_proj output, no bias
  int64_t dt_row_stride = 0;
  const void* __restrict__ z = nullptr;  // [tokens, z_row_stride] T: gate input
  int64_t z_row_stride = 0;
  const float* __restrict__ z_bias = nullptr;  // optional [dim] (in_proj bias, z half)
  const void* __restrict__ b = nullptr;  // [tokens, b_row_stride] T: B (dstate values per token)
  int64_t b_row_stride = 0;
  const void* __restrict__ c = nullptr;  // [tokens, c_row_stride] T: C
  int64_t c_row_stride = 0;
  const float* __restrict__ dt_bias = nullptr;  // [dim]
  const float* __restrict__ a2 = nullptr;       // [dim, dstate]: -exp(A_log) * log2(e)
  const float* __restrict__ d = nullptr;        // [dim]
  void* __restrict__ out = nullptr;             // [tokens, out_row_stride] T
  int64_t out_row_stride = 0;
  float out_scale = 1.0f;  // multiplies out before it is stored (SelectiveStateUpdateParams)
  const int32_t* __restrict__ cu_seqlens = nullptr;  // [num_seqs + 1]
  const int32_t* __restrict__ slots = nullptr;       // [num_seqs], distinct
  void* __restrict__ state = nullptr;                // this layer's [dim][dstate] StateT at slot 0
  int64_t state_slot_stride = 0;                     // elements between consecutive slots
  // State elements of one channel per thread: 4; or, with dstate <= 16, 1 or 8 (16 or 2 lanes
  // per channel); 0 lets the launcher choose (ChooseScanStatesPerThread).
  int32_t states_per_thread = 0;

  // Time-parallel mode, for launches with too few channels x sequences to fill the GPU (one
  // long prompt): each sequence is cut into segments of segment_len tokens; a first pass scans
  // every segment but the last from a zero state (keeping its final state and its sum of dt), a
  // second folds those into each segment's true start state (the product of exp(dt * A) over a
  // segment is exp(A * sum dt)) and scans again with outputs. About twice the work, many times
  // the parallelism. Not bit-identical to the sequential scan, so the batch-invariant mode never
  // allows it. The launcher chooses segment_len from max_seqlen and the GPU's size.
  bool allow_segments = false;
  int64_t max_seqlen = 0;                        // the longest sequence of the launch (host-known)
  float* __restrict__ segment_state = nullptr;   // scratch [segment_capacity][dim][dstate]
  float* __restrict__ segment_dt_sum = nullptr;  // scratch [segment_capacity][dim]
  int64_t segment_capacity = 0;                  // entries: num_seqs * segments must fit
  int64_t segment_len = 0;                       // chosen by the launcher; 0 = sequential
  int32_t max_segments = 0;                      // chosen by the launcher
};

// Which part of a segmented scan a launch runs.
enum ScanMode : int32_t { kScanSequential = 0, kScanLocalPass = 1, kScanFinalPass = 2 };

// Per activation dtype; `state_dtype` is f32 or bf16. The caller has checked `params` and chosen
// states_per_thread (other than 4 only with dstate <= 16).
cudaError_t RunSelectiveScanF16(const SelectiveScanParams& params, KernelDType state_dtype,
                                cudaStream_t stream);
cudaError_t RunSelectiveScanBF16(const SelectiveScanParams& params, KernelDType state_dtype,
                                 cudaStream_t stream);

}  // namespace mamba::kernels
