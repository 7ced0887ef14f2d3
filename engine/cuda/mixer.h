// A model family's layers on the GPU: the part of each block between its pre-norm and its residual
// add (Mamba-1: in_proj, causal conv, x_proj, dt_proj, the selective scan or state update, gate,
// out_proj), with its weights and its share of the workspace. CudaModel runs what every family
// shares (embedding gather, residual stream and per-layer RMSNorm, final norm, lm_head, sampling)
// and calls its family's mixer once per layer; MakeMixer picks the mixer from the config's family.
// A family may also run a whole decode step in one launch (ForwardAllLayers), as Mamba-1's
// persistent kernel does for few rows.
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/cuda/forward_batch.h"
#include "engine/cuda/kernel_timer.h"
#include "engine/cuda/state_pool.h"
#include "engine/model/dtype.h"
#include "engine/model/model_config.h"
#include "engine/model/model_weights.h"
#include "kernels/gemm.h"
#include "kernels/kernel_types.h"

namespace mamba::cuda {

// The kernels' name for an engine dtype.
kernels::KernelDType ToKernelDType(model::DType t);

// Runs a GEMM the way the model asked for: every product on the batch-invariant kernel in the
// deterministic mode, decode-sized products on the skinny kernel, the rest through cuBLASLt.
class GemmRunner {
 public:
  GemmRunner(bool deterministic, kernels::CublasLtGemm* gemm)
      : deterministic_(deterministic), gemm_(gemm) {}
  absl::Status Run(const kernels::GemmArgs& args, cudaStream_t stream) const;
  // Chooses the cuBLASLt algorithms of `gemms` (timing candidates on `stream` for small ones).
  absl::Status Prepare(const std::vector<kernels::GemmArgs>& gemms, cudaStream_t stream) const;
  bool deterministic() const { return deterministic_; }

 private:
  bool deterministic_;
  kernels::CublasLtGemm* gemm_;
};

// What the model shares with its mixer. Device pointers stay valid for the mixer's lifetime.
struct MixerContext {
  const model::ModelConfig* config = nullptr;
  model::DType dtype = model::DType::kBF16;  // activations and matrices: f16 or bf16
  int64_t capacity_tokens = 0;               // packed tokens per pass
  const GemmRunner* gemm = nullptr;
  // The block's input and output rows ([tokens, d_model], activation dtype): Forward reads xn
  // and writes h (before the output bias, which the next norm adds).
  void* xn = nullptr;
  void* h = nullptr;
  // For a whole-step path: the embedding, the per-layer norm weights (fp32, [n_layer] pointers),
  // the fp32 residual stream in two buffers, and two barrier counters left zero between launches.
  const void* embedding = nullptr;
  std::vector<const float*> norms;
  float* residual = nullptr;      // [tokens, d_model]
  float* residual_alt = nullptr;  // [kDecodeStepMaxRows, d_model]
  unsigned int* barrier = nullptr;
};

class Mixer {
 public:
  virtual ~Mixer() = default;

  // Device bytes of the mixer's weights and workspace.
  virtual size_t weight_bytes() const = 0;
  virtual size_t workspace_bytes() const = 0;

  // Launches layer `layer` over `batch`: reads the context's xn, writes its h, and advances the
  // layer's states in `pool`. With a timer, marks each kernel family (eager runs only).
  virtual absl::Status Forward(int layer, const ForwardBatch& batch, const StatePool& pool,
                               cudaStream_t stream, KernelTimer* timer) const = 0;
  // The bias of layer `layer`'s output, added by the next residual add, or null.
  virtual const float* OutputBias(int layer) const = 0;

  // Half-precision range (docs/cuda.md, "Output scales"). A family whose half-precision SSM
  // output can exceed f16's range (Mamba-1 and FalconMamba: y = (C.h + D x) silu(z) is a product
  // of five activations; Mamba-2 keeps its y in fp32 and normalizes it) stores layer l's y times
  // 2^-shift[l]; its out_proj then yields h * 2^-shift[l], which the next residual add multiplies
  // by OutputScale(l). The backend chooses the shifts once, before capturing any graph.
  virtual bool ScalesOutput() const { return false; }
  void set_output_shifts(std::vector<int> shifts) {
    output_shifts_ = std::move(shifts);
    any_output_shift_ = std::any_of(output_shifts_.begin(), output_shifts_.end(),
                                    [](int s) { return s != 0; });
  }
  int output_shift(int layer) const {
    return output_shifts_.empty() ? 0 : output_shifts_[static_cast<size_t>(layer)];
  }
  bool any_output_shift() const { return any_output_shift_; }
  float OutputScale(int layer) const { return std::ldexp(1.0f, output_shift(layer)); }
  // With a probe ([n_layer] fp32 on the device), Forward also folds each layer's largest stored
  // |y| into probe[layer] (the shift calibration's eager passes only).
  void set_probe(float* probe) { probe_ = probe; }
  // Appends the GEMMs one layer of a pass of `rows` rows launches (for GemmRunner::Prepare).
  virtual void AppendGemms(int64_t rows, bool decode,
                           std::vector<kernels::GemmArgs>* out) const = 0;

  // Every layer of a decode batch in one launch (embedding and norms included), leaving in h and
  // in *head_residual what the per-layer loop leaves for the head. Returns false, launching
  // nothing, when the family or the batch has no such path (states in `state` dtype).
  virtual absl::StatusOr<bool> ForwardAllLayers(const ForwardBatch& batch, const StatePool& pool,
                                                cudaStream_t stream, KernelTimer* timer,
                                                float** head_residual) const {
    (void)batch, (void)pool, (void)stream, (void)timer, (void)head_residual;
    return false;
  }

 protected:
  std::vector<int> output_shifts_;  // empty: all zero
  bool any_output_shift_ = false;
  float* probe_ = nullptr;
};

// The mixer of the context's config's family over `weights` (uploaded here; the host copy may go
// once this returns). INVALID_ARGUMENT when the family's shapes exceed what the kernels support
// (the message names the field and the limit).
absl::StatusOr<std::unique_ptr<Mixer>> MakeMixer(const MixerContext& context,
                                                 const model::ModelWeights& weights);

// About the workspace bytes per packed token the mixer of `config`'s family takes (sizes the
// prefill pass before any mixer exists).
size_t MixerWorkspaceBytesPerToken(const model::ModelConfig& config);

}  // namespace mamba::cuda
