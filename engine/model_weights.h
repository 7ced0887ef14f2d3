// The parameters of a Mamba-1 model as typed views over memory the ModelWeights object keeps alive
// (a memory-mapped checkpoint, or buffers it owns for converted and synthetic weights).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/dtype.h"
#include "engine/model_config.h"

namespace mamba {

// A read-only view of a dense row-major tensor. Does not own its memory.
struct TensorView {
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const void* data = nullptr;

  bool empty() const { return data == nullptr; }
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  size_t nbytes() const { return static_cast<size_t>(numel()) * DTypeSize(dtype); }
  // Element i widened to float (slow path: for tests and setup code, not inner loops).
  float At(int64_t i) const;
};

// One Mamba block's parameters. Shapes as in the HF checkpoint (PyTorch Linear: [out, in]).
struct LayerWeights {
  TensorView norm;       // [d_model]
  TensorView in_proj;    // [2 * d_inner, d_model]; rows [0, d_inner) give x, [d_inner, 2d) give z
  TensorView in_proj_bias;   // [2 * d_inner] when use_bias, else empty
  TensorView conv;       // [d_inner, 1, d_conv]
  TensorView conv_bias;  // [d_inner] when use_conv_bias, else empty
  TensorView x_proj;     // [dt_rank + 2 * d_state, d_inner]; rows give dt_low, B, C
  TensorView dt_proj;    // [d_inner, dt_rank]
  TensorView dt_proj_bias;   // [d_inner]
  TensorView a_log;      // [d_inner, d_state]; A = -exp(A_log)
  TensorView d;          // [d_inner]
  TensorView out_proj;   // [d_model, d_inner]
  TensorView out_proj_bias;  // [d_model] when use_bias, else empty
};

class ModelWeights {
 public:
  ModelWeights() = default;
  ModelWeights(const ModelWeights&) = delete;
  ModelWeights& operator=(const ModelWeights&) = delete;
  ModelWeights(ModelWeights&&) = default;
  ModelWeights& operator=(ModelWeights&&) = default;

  TensorView embedding;           // [vocab, d_model]
  std::vector<LayerWeights> layers;
  TensorView norm_f;              // [d_model]
  TensorView lm_head;             // [vocab, d_model]; same memory as embedding when tied
  bool lm_head_tied = true;

  // Keeps `storage` alive as long as these weights (mapped files, owned buffers).
  void Retain(std::shared_ptr<const void> storage) { storage_.push_back(std::move(storage)); }

  // Allocates an owned, zero-initialized buffer of `bytes` kept alive by these weights.
  void* AllocateOwned(size_t bytes);

  // Total bytes of all distinct tensors (the tied lm_head counted once).
  size_t TotalBytes() const;

  // The dtype of the large matrices (in_proj of layer 0); f32 when there are no layers.
  DType MatrixDType() const;

  // Returns weights with every tensor converted to `dtype` (A_log, D, biases and norms included);
  // the result owns its memory. A no-op copy of views when already in that dtype.
  absl::StatusOr<ModelWeights> ConvertTo(DType dtype) const;

  // Checks that every tensor is present with the shape `config` implies. `source` names the
  // checkpoint in error messages.
  absl::Status Validate(const ModelConfig& config, const std::string& source) const;

 private:
  std::vector<std::shared_ptr<const void>> storage_;
};

}  // namespace mamba
