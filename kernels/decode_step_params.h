// The persistent decode kernel: every layer of a decode step of few rows (decode batch <= 4) in
// one launch.
//
// Why: a layered decode step is ~5 dependent kernels per layer, each a few microseconds of launch,
// ramp-up and round trips for ~2 us of weight traffic (130m, batch 1: ~120 kernels, 424 us for
// ~80 us of bytes). Here one block per multiprocessor stays resident for the whole step and the
// layers' phases are separated by grid-wide barriers (~1 us each) instead of kernel boundaries,
// and each warp requests its first weights of the next phase before it waits at the barrier (as
// much of them as the SM accepts without stalling the warp overlaps the barrier; the rest does
// not: bench/RESULTS.md, "Issue 9, third pass").
//
// Per layer, four phases, one barrier after each (the math and every rounding point are the
// layered path's: activations rounded to the weight dtype T between the same operations):
//   A  residual += h + out_proj_bias of the previous layer (layer 0: the embedding row), then
//      RMSNorm; every block computes the whole normalised row itself (a few KB from L2) and
//      block 0 stores the residual. Then in_proj, one row of W per warp: x rows run the conv
//      update (kernels/conv_decode.cuh, the same code as the layered kernels) and store xc,
//      z rows store z.
//   B  x_proj: one output per block, its warps splitting k; stores [dt_low | B | C].
//   C  dt_proj + softplus + the state update + C + D + gate for a group of channels per warp;
//      stores y.
//   D  out_proj: one row of W per warp; stores h.
// The caller's final norm then adds h (and the last out_proj bias) to the residual.
//
// The residual alternates between two buffers (layer l writes residual[l % 2] while every block
// still reads residual[(l - 1) % 2]); after the step, residual[(n_layer - 1) % 2] holds the
// residual before the last layer's h.
//
// Requirements (DecodeStepSupported): rows <= kDecodeStepMaxRows; d_model (<= 4096), d_inner and
// dt_rank multiples of 8; d_state <= 16; d_conv <= kConvMaxWidth; 16-byte aligned buffers and
// weights; a device that can keep one block per multiprocessor resident (cooperative launch). The
// barrier counters must be zero before a launch (the kernel leaves them zero) and launches using
// the same counters must not overlap (one stream per model, which the shared workspace requires
// anyway).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/kernel_types.h"

namespace mamba::kernels {

inline constexpr int kDecodeStepMaxRows = 4;
inline constexpr int kDecodeStepThreads = 512;
inline constexpr int kDecodeStepMaxState = 16;
inline constexpr int kDecodeStepTracePerLayer = 12;
inline constexpr int64_t kDecodeStepMaxModel = 4096;  // d_model
// Each warp's weight stream: kDecodeStepStages chunks of kDecodeStepChunkVectors 16-byte pieces
// per lane.
inline constexpr int kDecodeStepStages = 6;
inline constexpr int kDecodeStepChunkVectors = 2;

// One layer's weights (device pointers; biases optional), as a device-resident table.
struct DecodeStepLayer {
  const void* in_proj = nullptr;         // [2E, D] T
  const float* in_proj_bias = nullptr;   // [2E] or null
  const float* conv_weight = nullptr;    // [E, d_conv]
  const float* conv_bias = nullptr;      // [E] or null
  const void* x_proj = nullptr;          // [R + 2N, E] T
  const void* dt_proj = nullptr;         // [E, R] T
  const float* dt_bias = nullptr;        // [E]
  const float* a2 = nullptr;             // [E, N]: A * log2(e)
  const float* d = nullptr;              // [E]
  const void* out_proj = nullptr;        // [D, E] T
  const float* out_proj_bias = nullptr;  // [D] or null
  const float* norm = nullptr;           // [D]
};

struct DecodeStepParams {
  int32_t rows = 0;  // 1..kDecodeStepMaxRows, one token each
  int32_t n_layer = 0;
  int64_t d_model = 0, d_inner = 0, d_state = 0, dt_rank = 0;
  int32_t d_conv = 4;
  float eps = 1e-5f;
  const DecodeStepLayer* layers = nullptr;  // [n_layer], device memory
  const void* embedding = nullptr;          // [V, D] T
  const int32_t* token_ids = nullptr;       // [rows]
  const int32_t* slots = nullptr;           // [rows]
  // The states of layer 0 in slot 0 (StatePool's layout); layer l is l * *_layer_stride further,
  // slot s is s * slot_stride further (elements of the state dtype).
  void* conv_state = nullptr;
  void* ssm_state = nullptr;
  int64_t conv_layer_stride = 0;
  int64_t ssm_layer_stride = 0;
  int64_t slot_stride = 0;
  // Workspace (row stride = the width named; fp32 residuals, the rest in T).
  float* residual[2] = {nullptr, nullptr};  // [rows, D] each
  void* h = nullptr;                        // [rows, D]
  void* xc = nullptr;                       // [rows, E] conv output
  void* z = nullptr;                        // [rows, E] in_proj's z half (without its bias)
  void* dbc = nullptr;                      // [rows, dbc_ld]: dt_low | B | C
  int64_t dbc_ld = 0;                       // multiple of 8, >= dt_rank + 2 * d_state
  void* y = nullptr;                        // [rows, E]
  unsigned int* barrier = nullptr;          // 2 counters, zero between launches
  // Diagnostics (null normally): [gridDim.x][kDecodeStepTracePerLayer * n_layer] globaltimer
  // readings (ns) of each block: [0, 8 n_layer) its start, then the arrival at and the exit from
  // each of the 4 * n_layer - 1 barriers, then its end; [8 n_layer + 4 l, + 4) layer l's points
  // inside phases A and D: A's input staged and normalised, A's matrix stream done, D's input
  // staged, D's stream done.
  unsigned long long* trace = nullptr;
};

cudaError_t RunDecodeStepF16(const DecodeStepParams& p, KernelDType state, int blocks,
                             cudaStream_t stream);
cudaError_t RunDecodeStepBF16(const DecodeStepParams& p, KernelDType state, int blocks,
                              cudaStream_t stream);
// Blocks of one multiprocessor that can be resident at once with `smem` bytes of dynamic shared
// memory (0: the kernel cannot launch).
int DecodeStepBlocksPerSmF16(KernelDType state, size_t smem);
int DecodeStepBlocksPerSmBF16(KernelDType state, size_t smem);

#if defined(__CUDACC__)
#define MAMBA_DECODE_STEP_HOST_DEVICE __host__ __device__
#else
#define MAMBA_DECODE_STEP_HOST_DEVICE
#endif

// Floats of dynamic shared memory the layer table takes (whole 16-byte units).
MAMBA_DECODE_STEP_HOST_DEVICE inline int64_t DecodeStepTableFloats(int64_t n_layer) {
  return (n_layer * static_cast<int64_t>(sizeof(DecodeStepLayer)) + 15) / 16 * 4;
}

// Dynamic shared memory of a launch of the kernel variant for `rows` rows (1 or
// kDecodeStepMaxRows) for these shapes: the layer table, the rows' [dt_low | B | C] and the
// normalised input or the SSM output of every row (fp32), and the warps' weight streams. (Sized
// per variant: what shared memory leaves of the L1 matters; 1.4b at one row ran 10% slower with
// room for four rows.)
inline size_t DecodeStepSharedBytes(int64_t d_model, int64_t d_inner, int64_t dbc_ld,
                                    int64_t n_layer, int64_t rows) {
  const int64_t width = d_model > d_inner ? d_model : d_inner;
  return static_cast<size_t>(DecodeStepTableFloats(n_layer) + rows * (width + dbc_ld)) *
             sizeof(float) +
         static_cast<size_t>(kDecodeStepThreads) * kDecodeStepStages * kDecodeStepChunkVectors * 16;
}

}  // namespace mamba::kernels
