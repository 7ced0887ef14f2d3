// The forward pass on one GPU, for any model family: the embedding, the fp32 residual stream and
// each layer's RMSNorm, the family's mixer per layer (cuda/mixer.h), then the final norm on each
// sequence's last position only, the lm_head GEMM (fp32 logits) and device sampling. The backend
// (cuda_backend.cc) owns the state pool, moves inputs and results, and captures decode steps into
// graphs; this class only launches.
//
// One step, for a packed batch of sequences, per layer:
//   rms_norm (embedding gather for layer 0; residual add of the previous block otherwise)
//   the family's mixer: normed rows -> block output, states advanced in place
// A family may run a whole decode step in one launch instead (Mamba-1's persistent kernel for
// few rows), leaving the same buffers for the head.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/cuda/device_memory.h"
#include "engine/cuda/forward_batch.h"
#include "engine/cuda/kernel_timer.h"
#include "engine/cuda/mixer.h"
#include "engine/cuda/state_pool.h"
#include "engine/model/dtype.h"
#include "engine/model/model_config.h"
#include "engine/model/model_weights.h"
#include "kernels/gemm.h"
#include "kernels/kernel_types.h"
#include "kernels/sampling_params.h"

namespace mamba::cuda {

class CudaModel {
 public:
  struct Capacity {
    int64_t tokens = 0;     // packed tokens per forward pass
    int64_t head_rows = 0;  // head rows per forward pass
  };

  // Uploads `weights` (matrices converted to `dtype`, f16 or bf16) and allocates the workspace
  // for `capacity`. With `deterministic`, every GEMM runs on the batch-invariant kernel and the
  // family's kernels take the batch-invariant paths, so a sequence's results do not depend on
  // the batch. `gemm` (cuBLASLt) must outlive the model.
  static absl::StatusOr<std::unique_ptr<CudaModel>> Create(
      const model::ModelConfig& config, const model::ModelWeights& weights, model::DType dtype,
      const Capacity& capacity, bool deterministic, kernels::CublasLtGemm* gemm);
  CudaModel(const CudaModel&) = delete;
  CudaModel& operator=(const CudaModel&) = delete;

  // Launches one forward pass of `batch` on `stream`, reading and writing states in `pool`. With
  // a timer, marks each kernel family (eager runs only). Requires batch.tokens <=
  // capacity().tokens and batch.head_rows <= capacity().head_rows.
  absl::Status Forward(const ForwardBatch& batch, const StatePool& pool, cudaStream_t stream,
                       KernelTimer* timer) const;

  // Chooses the cuBLASLt algorithms of every GEMM of a forward pass of `tokens` tokens and
  // `head_rows` head rows (timing candidates on `stream` for small ones), so that a decode graph
  // can be captured afterwards. Overwrites the workspace.
  absl::Status PrepareGemms(int64_t tokens, int64_t head_rows, bool decode,
                            cudaStream_t stream) const;

  const model::ModelConfig& config() const { return config_; }
  model::DType dtype() const { return dtype_; }
  size_t weight_bytes() const { return weights_.size() + mixer_->weight_bytes(); }
  size_t workspace_bytes() const { return workspace_.size() + mixer_->workspace_bytes(); }
  const Capacity& capacity() const { return capacity_; }
  Mixer* mixer() const { return mixer_.get(); }

  // fp32 logits of the last forward's head rows ([head_rows, vocab_size], row stride vocab_size).
  const float* logits() const { return logits_; }

 private:
  CudaModel() = default;
  absl::Status Upload(const model::ModelWeights& weights);
  absl::Status AllocateWorkspace();
  kernels::GemmArgs LmHead(int64_t rows) const;

  model::ModelConfig config_;
  model::DType dtype_ = model::DType::kBF16;
  kernels::KernelDType kdtype_ = kernels::KernelDType::kBF16;
  Capacity capacity_;
  std::unique_ptr<GemmRunner> gemm_;

  DeviceBuffer weights_;             // what every family has: embedding, norms, lm_head
  const void* embedding_ = nullptr;  // [V, D]
  const void* lm_head_ = nullptr;    // [V, D] (the embedding when tied)
  const float* norm_f_ = nullptr;    // [D]
  std::vector<const float*> norm_;   // [n_layer] of [D]
  std::unique_ptr<Mixer> mixer_;     // the family's layers, with their weights and workspace

  DeviceBuffer workspace_;
  float* residual_ = nullptr;  // [tokens, D] fp32
  void* xn_ = nullptr;         // [tokens, D] normed input of a block (and the head rows)
  void* h_ = nullptr;          // [tokens, D] block output
  float* logits_ = nullptr;    // [head_rows, V]
  float* sample_scratch_ = nullptr;                      // [head_rows, V]
  kernels::SamplingPartial* sample_partials_ = nullptr;  // [head_rows, kSamplingMaxSplits]
  // A whole-step path's second residual buffer and barrier counters.
  float* residual_alt_ = nullptr;         // [kDecodeStepMaxRows, D]
  unsigned int* step_barrier_ = nullptr;  // 2 counters, zero between launches
};

}  // namespace mamba::cuda
