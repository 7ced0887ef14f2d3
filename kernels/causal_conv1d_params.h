// Causal depthwise conv1d + silu over packed variable-length sequences, starting from and writing
// back each sequence's conv state in its slot; and the one-token decode update of the same state.
//
//   in_t  = x[t, e] (+ x_bias[e])                      the conv's input (in_proj's x half)
//   out_t = silu(bias[e] + sum_k weight[e, k] * in_{t - width + 1 + k})     (activation dtype T)
// Inputs before a sequence's first token come from its slot's conv state: state[e][j] holds
// in_{start - (width - 1) + j}, oldest first (the layout of backend.h's HostState), in StateT
// (fp32, or bf16 when states are stored in bf16). After the call the state holds the sequence's
// last width - 1 inputs.
//
// Layout: x and out are token-major ([tokens, row stride], channels contiguous); sequences are
// packed back to back, cu_seqlens[s]..cu_seqlens[s+1] being sequence s, whose state lives at
// state + slots[s] * state_slot_stride (elements). Prefill threads own 4 channels (one 8-byte
// access; ConvPrefillLayout) over a run of consecutive tokens, sliding the input window in
// registers, so each input is read about once. The final states are written by a second, tiny
// kernel after every output is computed: a block that finishes a sequence must not overwrite the
// state that another block still reads for the sequence's first tokens.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/kernel_types.h"

namespace mamba::kernels {

inline constexpr int kConvMaxWidth = 4;

// Channels x tokens of one prefill thread. kDefault is 4 x 8 (one 8-byte access per token);
// 8 x 8 (16-byte accesses, twice the registers: fewer resident warps) was the layout before it
// and stays for A/B runs (mamba-bench --conv_prefill_layout).
enum class ConvPrefillLayout : int32_t { kDefault = 0, k8x8 = 1, k4x8 = 2 };

struct CausalConv1dParams {
  int64_t num_seqs = 0;                  // sequences (decode: rows, one token each)
  int64_t total_tokens = 0;              // packed tokens (decode: == num_seqs)
  int64_t dim = 0;                       // channels (d_inner)
  int32_t width = 4;                     // d_conv, 1..kConvMaxWidth
  const void* __restrict__ x = nullptr;  // [tokens, x_row_stride] T
  int64_t x_row_stride = 0;
  const float* __restrict__ x_bias = nullptr;  // optional [dim] (in_proj bias, x half)
  const float* __restrict__ weight = nullptr;  // [dim, width]
  const float* __restrict__ bias = nullptr;    // optional [dim]
  void* __restrict__ out = nullptr;            // [tokens, out_row_stride] T
  int64_t out_row_stride = 0;
  const int32_t* __restrict__ cu_seqlens = nullptr;  // [num_seqs + 1] (prefill only)
  const int32_t* __restrict__ slots = nullptr;       // [num_seqs]
  void* __restrict__ state = nullptr;                // this layer's [dim][width - 1] at slot 0
  int64_t state_slot_stride = 0;                     // elements between consecutive slots
  // Decode only: the kernel just before this one in the stream (in_proj, or the norm when the
  // conv rides in in_proj) does not write these states, so a dependent launch may read them
  // before waiting for it; otherwise they are read after it has finished.
  bool state_read_early = false;
  // Prefill only: the thread layout; kDefault takes the process-wide choice
  // (SetConvPrefillLayout, causal_conv1d.h), itself 4 x 8 unless set.
  ConvPrefillLayout prefill_layout = ConvPrefillLayout::kDefault;
};

// Per activation dtype; `state_dtype` is f32 or bf16. The caller has checked `params`.
cudaError_t RunCausalConv1dPrefillF16(const CausalConv1dParams& params, KernelDType state_dtype,
                                      cudaStream_t stream);
cudaError_t RunCausalConv1dPrefillBF16(const CausalConv1dParams& params, KernelDType state_dtype,
                                       cudaStream_t stream);
cudaError_t RunCausalConv1dDecodeF16(const CausalConv1dParams& params, KernelDType state_dtype,
                                     cudaStream_t stream);
cudaError_t RunCausalConv1dDecodeBF16(const CausalConv1dParams& params, KernelDType state_dtype,
                                      cudaStream_t stream);

}  // namespace mamba::kernels
