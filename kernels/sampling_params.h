// Token sampling on the device, one block per logits row, so the host receives token ids (and
// top log-probabilities when asked), never logits. The algorithm is engine/sampling/sampler.h's,
// step for step (raw log-probabilities; repetition penalty on distinct tokens, then the additive
// frequency/presence penalties; greedy argmax with the lowest id on ties; else temperature,
// candidates ordered by value then id, top-k, top-p over double sums, min-p, and the inverse-CDF
// draw with u = SampleUniform(seed, position) reproduced bit for bit). Sums run in double in a
// different order than the CPU's sequential ones; the draw can differ only when u falls within
// about 1e-16 of a boundary.
//
// The additive penalties come from the host as (id, amount) pairs, one per distinct generated
// token, the amount already computed (engine/sampling/sampling_params.h's AdditivePenalty): the
// kernel subtracts it, so both backends subtract the same float and nothing is counted here. With
// them, the first pass also stores a greedy row's penalized values in the scratch row (a sampled
// row's scaled values are stored anyway); the listed ids are then rewritten and the row reduced
// again (its best id, or its maximum) in a second, read-only pass, which spares the first pass a
// lookup per logit.
//
// How the candidate order is walked without sorting the vocabulary: the kept set is always a
// prefix of that order, so the kernel takes it in segments of up to kSamplingSegment candidates,
// each the next best ones (found by a count against a weight threshold or, failing that, an 8-bit
// radix select over 64-bit (value, id) keys), sorted in shared memory (bitonic), and scanned by
// one warp with double prefix sums. The first segment almost always decides.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace mamba::kernels {

inline constexpr int kSamplingThreads = 512;
inline constexpr int kSamplingSegment = 2048;
inline constexpr int kSamplingMaxTop = 20;
inline constexpr int64_t kSamplingMaxVocab = 1 << 20;
// Blocks a row's first pass over the logits may be split into (few rows: one block per row would
// leave the GPU idle while one multiprocessor scans 50k logits).
inline constexpr int kSamplingMaxSplits = 32;

// Per-row request, filled by the host.
struct SamplingRow {
  float temperature = 0.0f;  // 0 = greedy
  float top_p = 1.0f;
  float min_p = 0.0f;
  float repetition_penalty = 1.0f;
  int32_t top_k = 0;
  int32_t top_logprobs = 0;    // 0..kSamplingMaxTop
  int32_t penalty_offset = 0;  // into SamplingLaunch::penalty_tokens
  int32_t penalty_count = 0;   // repetition penalty ids (may repeat)
  uint64_t seed = 0;
  uint64_t position = 0;
  int32_t sample = 0;  // 0: leave this row alone
  // Additive penalties: output_count (id, amount) pairs, 2 * output_count words from
  // SamplingLaunch::penalty_tokens[output_offset]; distinct ids, the amount a float's bits.
  int32_t output_offset = 0;
  int32_t output_count = 0;  // 0: no additive penalty
  int32_t pad = 0;
};

enum SamplingStatus : int32_t {
  kSamplingOk = 0,
  kSamplingNonFiniteLogits = 1,  // a NaN or +inf logit: the model diverged
  kSamplingAllNegInf = 2,        // every logit -inf
};

struct SamplingResult {
  int32_t token = -1;
  float logprob = 0.0f;  // of token, under the raw logits
  int32_t status = kSamplingOk;
  int32_t num_top = 0;
  int32_t top_ids[kSamplingMaxTop];
  float top_logprobs[kSamplingMaxTop];
};

// One block's share of a row's first pass: max and sum of exp (relative to that max) of the raw
// logits, whether one was NaN or +inf, the best (value, id) key of the penalized logits (greedy),
// and the max of the temperature-scaled ones (which it also stored in the scratch row).
struct SamplingPartial {
  double sum_exp = 0.0;
  uint64_t best = 0;
  float max = 0.0f;
  float zmax = 0.0f;
  int32_t bad = 0;
  int32_t pad = 0;
};

struct SamplingLaunch {
  int64_t rows = 0;
  int64_t vocab = 0;
  const float* __restrict__ logits = nullptr;  // [rows, logits_row_stride]
  int64_t logits_row_stride = 0;
  const SamplingRow* __restrict__ row_params = nullptr;  // [rows]
  // Each row's repetition penalty ids and additive penalty pairs (see SamplingRow); ids in
  // [0, vocab).
  const int32_t* __restrict__ penalty_tokens = nullptr;
  float* __restrict__ scratch = nullptr;                 // [rows, vocab]: temperature-scaled logits
  SamplingResult* __restrict__ results = nullptr;        // [rows]
  // Optional [rows, kSamplingMaxSplits]: with it, batches of few rows split each row's first pass
  // over several blocks (same results: the partial sums combine in a fixed order).
  SamplingPartial* __restrict__ partials = nullptr;
  // Set by the launcher: blocks per row of the first pass (1: the row's block does it itself).
  int32_t splits = 1;
};

cudaError_t RunSampling(const SamplingLaunch& launch, cudaStream_t stream);

// Fills out[i] = SampleUniform(seeds[i], positions[i]) on the device (for checking the device's
// draw against the host's, bit for bit).
cudaError_t RunSampleUniformValues(const uint64_t* seeds, const uint64_t* positions, double* out,
                                   int64_t n, cudaStream_t stream);

}  // namespace mamba::kernels
