// The forward pass on the CPU, in fp32, as HF transformers computes it (DESIGN.md, "The model"):
// embedding, then per layer residual add, RMSNorm and the family's mixer (cpu/mixer.h), then the
// final norm and the output head on each sequence's last row. Big matrices stay in the
// checkpoint's dtype and are widened as they are read; the per-channel vectors (norms, conv taps
// and biases, A = -exp(A_log), D) are widened once at creation, about 1.5% of a model's bytes.
//
// Numerics: every value a sequence computes depends only on that sequence's tokens and state, in
// a fixed order of operations. So a batch gives each sequence exactly (bitwise) what it would get
// alone, and a prefill split into chunks gives exactly what one prefill gives.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/cpu/mixer.h"
#include "engine/cpu/sequence_state.h"
#include "engine/cpu/thread_pool.h"
#include "engine/model/model_config.h"
#include "engine/model/model_weights.h"

namespace mamba::cpu {

// One sequence's part of a Forward call.
struct SequenceInput {
  SequenceState* state = nullptr;    // advanced in place over `tokens`
  absl::Span<const int32_t> tokens;  // at least one
  // Receives the logits after the last token ([vocab_size] floats); null skips the output head
  // for this sequence (a prefill chunk that is not the end of its prompt).
  float* logits = nullptr;
};

class CpuModel {
 public:
  // Validates `weights` against `config` and takes ownership of them. num_threads 0 means every
  // core of the machine.
  static absl::StatusOr<std::unique_ptr<CpuModel>> Create(const model::ModelConfig& config,
                                                          model::ModelWeights weights,
                                                          int num_threads);
  ~CpuModel();
  CpuModel(const CpuModel&) = delete;
  CpuModel& operator=(const CpuModel&) = delete;

  const model::ModelConfig& config() const { return config_; }
  const model::ModelWeights& weights() const { return weights_; }
  int num_threads() const { return pool_.num_threads(); }
  ThreadPool& pool() { return pool_; }

  // Feeds each sequence's tokens through the model from its state. Every state must be distinct,
  // every token in [0, vocab_size), every token list non-empty; on an invalid input nothing is
  // changed and the status says which sequence and value were wrong. Weights are read once per
  // chunk of up to max_chunk_tokens() tokens for all sequences together. Not thread-safe.
  absl::Status Forward(absl::Span<const SequenceInput> batch);

  // Tokens processed per pass over the weights; longer inputs are cut into passes of this size
  // (with the same results, by the numerics above), which bounds the scratch memory.
  int64_t max_chunk_tokens() const { return max_chunk_tokens_; }

 private:
  struct Piece;  // a run of one sequence's tokens inside a chunk
  struct Scratch;

  CpuModel(const model::ModelConfig& config, model::ModelWeights weights, int num_threads);
  void RunChunk(absl::Span<const Piece> pieces, int64_t num_tokens);

  model::ModelConfig config_;
  model::ModelWeights weights_;
  ThreadPool pool_;
  int64_t max_chunk_tokens_ = 512;
  std::unique_ptr<Mixer> mixer_;          // the family's layers; reads weights_
  std::vector<std::vector<float>> norm_;  // [n_layer][d_model] pre-norm weights, widened
  std::vector<float> norm_f_;
  std::unique_ptr<Scratch> scratch_;
};

}  // namespace mamba::cpu
