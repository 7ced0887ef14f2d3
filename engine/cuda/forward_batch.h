// The device inputs of one forward pass, shared by the model and its family's mixer.
#pragma once

#include <cstdint>

#include "kernels/sampling_params.h"

namespace mamba::cuda {

// All pointers are device memory.
struct ForwardBatch {
  int64_t tokens = 0;  // packed tokens
  int64_t seqs = 0;    // sequences
  // One token per sequence, run with the decode kernels (state by slot, fused update).
  bool decode = false;
  const int32_t* token_ids = nullptr;   // [tokens]
  const int32_t* cu_seqlens = nullptr;  // [seqs + 1] (prefill)
  const int32_t* slots = nullptr;       // [seqs]
  int64_t max_seqlen = 0;               // the longest sequence (prefill; >= every length)
  // Rows that go through the final norm, the lm_head and sampling.
  int64_t head_rows = 0;
  const int32_t* head_index = nullptr;  // [head_rows] packed token row of each; null = identity
  const kernels::SamplingRow* sampling_rows = nullptr;  // [head_rows]
  const int32_t* penalty_tokens = nullptr;
  kernels::SamplingResult* results = nullptr;  // [head_rows]
};

}  // namespace mamba::cuda
