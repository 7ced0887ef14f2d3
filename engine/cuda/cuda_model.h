// The Mamba-1 forward pass on one GPU: the weights in device memory (matrices in fp16 or bf16, the
// per-channel vectors in fp32, A precomputed as -exp(A_log) * log2(e)), the activation workspace,
// and the sequence of kernels of one step. The backend (cuda_backend.cc) owns the state pool,
// moves inputs and results, and captures decode steps into graphs; this class only launches.
//
// One step, for a packed batch of sequences (DESIGN.md's math, per layer):
//   rms_norm (embedding gather for layer 0; residual add of the previous block otherwise)
//   in_proj GEMM -> [x | z]
//   conv1d + silu from the slot's conv state (prefill: packed varlen; decode: by slot)
//   x_proj GEMM -> [dt_low | B | C]
//   prefill: dt_proj GEMM, then the fused selective scan from the slot's SSM state
//   decode:  the fused state update (dt_proj + softplus + update + C + D + gate in one kernel)
//   out_proj GEMM
// then the final norm on each sequence's last position only, the lm_head GEMM (fp32 logits) and
// device sampling. Decode steps of few rows (<= kDecodeStepMaxRows) run every layer in one
// persistent kernel instead (kernels/decode_step_params.h), with the same math and rounding
// points; the batch-invariant mode always uses the layered kernels.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/cuda/device_memory.h"
#include "engine/cuda/kernel_timer.h"
#include "engine/cuda/state_pool.h"
#include "engine/model/dtype.h"
#include "engine/model/model_config.h"
#include "engine/model/model_weights.h"
#include "kernels/decode_step_params.h"
#include "kernels/gemm.h"
#include "kernels/kernel_types.h"
#include "kernels/sampling_params.h"

namespace mamba::cuda {

// The device inputs of one forward pass. All pointers are device memory.
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

class CudaModel {
 public:
  struct Capacity {
    int64_t tokens = 0;     // packed tokens per forward pass
    int64_t head_rows = 0;  // head rows per forward pass
  };

  // Uploads `weights` (matrices converted to `dtype`, f16 or bf16) and allocates the workspace
  // for `capacity`. With `deterministic`, every GEMM runs on the batch-invariant kernel and the
  // decode step takes dt from the same GEMM as prefill, so a sequence's results do not depend on
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
  kernels::KernelDType kernel_dtype() const { return kdtype_; }
  size_t weight_bytes() const { return weight_bytes_; }
  size_t workspace_bytes() const { return workspace_.size(); }
  const Capacity& capacity() const { return capacity_; }
  bool deterministic() const { return deterministic_; }

  // fp32 logits of the last forward's head rows ([head_rows, vocab_size], row stride vocab_size).
  const float* logits() const { return logits_; }

 private:
  struct Layer {
    const void* in_proj = nullptr;         // [2E, D]
    const float* in_proj_bias = nullptr;   // [2E] or null
    const float* conv_weight = nullptr;    // [E, d_conv]
    const float* conv_bias = nullptr;      // [E] or null
    const void* x_proj = nullptr;          // [R + 2N, E]
    const void* dt_proj = nullptr;         // [E, R]
    const float* dt_bias = nullptr;        // [E]
    const float* a2 = nullptr;             // [E, N]
    const float* d = nullptr;              // [E]
    const void* out_proj = nullptr;        // [D, E]
    const float* out_proj_bias = nullptr;  // [D] or null
    const float* norm = nullptr;           // [D]
  };

  CudaModel() = default;
  absl::Status Upload(const model::ModelWeights& weights);
  absl::Status AllocateWorkspace();
  absl::Status Gemm(const kernels::GemmArgs& args, cudaStream_t stream) const;
  // The arguments of each GEMM for `rows` rows (so Forward and PrepareGemms agree).
  kernels::GemmArgs InProj(const Layer& l, int64_t rows) const;
  kernels::GemmArgs XProj(const Layer& l, int64_t rows) const;
  kernels::GemmArgs DtProj(const Layer& l, int64_t rows) const;
  kernels::GemmArgs OutProj(const Layer& l, int64_t rows) const;
  kernels::GemmArgs LmHead(int64_t rows) const;
  // The persistent decode kernel's arguments for a decode batch (shapes only when `pool` is null).
  kernels::DecodeStepParams DecodeStep(const ForwardBatch& b, const StatePool* pool) const;
  // Whether a pass of `rows` rows takes dt from the low-rank projection inside the fused state
  // update (decode only, never in the batch-invariant mode, which takes it from the same GEMM as
  // prefill so that a sequence's tokens do not depend on its batch).
  bool UsesFusedDt(int64_t rows, bool decode) const;
  // Whether `b` (with states in `state`) runs on the persistent decode kernel.
  bool UsesDecodeStep(const ForwardBatch& b, kernels::KernelDType state) const;

  model::ModelConfig config_;
  model::DType dtype_ = model::DType::kBF16;
  kernels::KernelDType kdtype_ = kernels::KernelDType::kBF16;
  Capacity capacity_;
  bool deterministic_ = false;
  kernels::CublasLtGemm* gemm_ = nullptr;

  DeviceBuffer weights_;
  size_t weight_bytes_ = 0;
  std::vector<Layer> layers_;
  const void* embedding_ = nullptr;  // [V, D]
  const void* lm_head_ = nullptr;    // [V, D] (the embedding when tied)
  const float* norm_f_ = nullptr;    // [D]
  DeviceBuffer layer_table_;         // [n_layer] kernels::DecodeStepLayer

  DeviceBuffer workspace_;
  int64_t dbc_ld_ = 0;         // row stride of [dt_low | B | C], padded to whole 16-byte vectors
  float* residual_ = nullptr;  // [tokens, D] fp32
  void* xn_ = nullptr;         // [tokens, D] normed input of a block (and the head rows)
  void* xz_ = nullptr;         // [tokens, 2E]
  void* xc_ = nullptr;         // [tokens, E] conv output
  void* dbc_ = nullptr;        // [tokens, dbc_ld_]
  void* dt_ = nullptr;         // [tokens, E] dt_proj output (before bias and softplus)
  void* y_ = nullptr;          // [tokens, E] gated SSM output
  void* h_ = nullptr;          // [tokens, D] block output
  float* logits_ = nullptr;    // [head_rows, V]
  // The time-parallel scan's scratch (prefill of few sequences; not in the deterministic mode).
  float* segment_state_ = nullptr;   // [kScanSegmentEntries, E, N]
  float* segment_dt_sum_ = nullptr;  // [kScanSegmentEntries, E]
  float* sample_scratch_ = nullptr;  // [head_rows, V]
  kernels::SamplingPartial* sample_partials_ = nullptr;  // [head_rows, kSamplingMaxSplits]
  // The persistent decode kernel's second residual buffer and barrier counters.
  float* residual_alt_ = nullptr;         // [kDecodeStepMaxRows, D]
  unsigned int* step_barrier_ = nullptr;  // 2 counters, zero between launches
};

// Decode batches of fewer rows than FusedDtMaxRows() compute dt inside the fused state update
// (dt_proj's weights read per block of channels) instead of a dt_proj GEMM before it. Larger
// batches measured slower fused on the H100 (130m batch 256: 1573 vs 1364 us per step; 1.4b batch
// 64: 3668 vs 3128). The setter is process-wide, for A/B measurements, and takes effect for
// graphs captured after it.
inline constexpr int64_t kDefaultFusedDtMaxRows = 32;
void SetFusedDtMaxRows(int64_t rows);
int64_t FusedDtMaxRows();

// The kernels' name for an engine dtype.
kernels::KernelDType ToKernelDType(model::DType t);

}  // namespace mamba::cuda
