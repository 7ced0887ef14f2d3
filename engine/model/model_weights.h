// The parameters of a model as typed views over memory the ModelWeights object keeps alive
// (a memory-mapped checkpoint, or buffers it owns for converted and synthetic weights).
//
// Each tensor carries its own dtype. A checkpoint loaded without a dtype option keeps the dtypes
// of its file, which may differ between tensors (a half-precision checkpoint may store A_log and D
// in f32); ConvertTo makes them uniform.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/dtype.h"
#include "engine/model/model_config.h"

namespace mamba::model {

// A read-only view of a dense row-major tensor. Does not own its memory. The data pointer is
// aligned to the element size (loaders copy misaligned tensors).
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
  // Every element widened to float, in order (empty for an empty view).
  std::vector<float> ToFloat() const;
};

// "[2, 3]".
std::string ShapeString(const std::vector<int64_t>& shape);

// One Mamba block's parameters. Shapes as in the HF checkpoint (PyTorch Linear: [out, in]);
// E = d_inner, N = d_state, R = dt_rank, K = d_conv; for Mamba-2, H = n_heads, G = n_groups,
// S = d_ssm = H * head_dim and C = conv_dim = S + 2 G N. Fields a family does not have are empty.
struct LayerWeights {
  TensorView norm;     // [d_model]
  // Mamba-1: [2E, d_model], rows [0, E) give x, [E, 2E) give z. Mamba-2: [2E + 2GN + H, d_model],
  // rows give the MLP's z0 and x0 (E - S each), z (S), xBC (C) and dt (H).
  TensorView in_proj;
  TensorView in_proj_bias;   // [in_proj rows] when use_bias, else empty
  TensorView conv;           // [E, 1, K]; Mamba-2 [C, 1, K]
  TensorView conv_bias;      // [E] / [C] when use_conv_bias, else empty
  TensorView x_proj;         // [R + 2N, E]; rows give dt_low, B, C (Mamba-1, FalconMamba)
  TensorView dt_proj;        // [E, R] (Mamba-1, FalconMamba)
  TensorView dt_proj_bias;   // [E] (Mamba-1, FalconMamba)
  TensorView dt_bias;        // [H] (Mamba-2)
  TensorView a_log;          // [E, N]; Mamba-2 [H]; A = -exp(A_log)
  TensorView d;              // [E]; Mamba-2 [H], or [S] with D_has_hdim
  TensorView gated_norm;     // [S]: the gated RMSNorm's weight (Mamba-2 with rms_norm)
  TensorView out_proj;       // [d_model, E]
  TensorView out_proj_bias;  // [d_model] when use_bias, else empty
};

// One tensor a checkpoint of a given config holds: its HF name, the shape the config implies,
// and how that shape follows from the config (for error messages).
struct TensorSpec {
  std::string name;            // e.g. "backbone.layers.3.mixer.x_proj.weight"
  std::vector<int64_t> shape;  // e.g. {dt_rank + 2 * d_state, d_inner}
  std::string shape_rule;      // e.g. "[dt_rank + 2*d_state, d_inner]"
};

// Every tensor a checkpoint of `config` holds, in canonical order: the embedding, each layer's
// tensors, norm_f, then lm_head.weight when the embeddings are not tied. Optional tensors
// (biases) appear only when the config has them.
std::vector<TensorSpec> CheckpointTensors(const ModelConfig& config);

class ModelWeights {
 public:
  ModelWeights() = default;
  ModelWeights(const ModelWeights&) = delete;
  ModelWeights& operator=(const ModelWeights&) = delete;
  ModelWeights(ModelWeights&&) = default;
  ModelWeights& operator=(ModelWeights&&) = default;

  TensorView embedding;  // [vocab, d_model]
  std::vector<LayerWeights> layers;
  TensorView norm_f;   // [d_model]
  TensorView lm_head;  // [vocab, d_model]; same memory as embedding when tied
  bool lm_head_tied = true;

  // Keeps `storage` alive as long as these weights (mapped files, owned buffers).
  void Retain(std::shared_ptr<const void> storage) { storage_.push_back(std::move(storage)); }

  // Allocates an owned, zero-initialized, 64-byte aligned buffer of `bytes` kept alive by these
  // weights. Large buffers come straight from the kernel (zero pages, no memset).
  void* AllocateOwned(size_t bytes);

  // Total bytes of all distinct tensors (the tied lm_head counted once).
  size_t TotalBytes() const;

  // The dtype of the large matrices (in_proj of layer 0); f32 when there are no layers.
  DType MatrixDType() const;

  // Returns weights with every tensor converted to `dtype` (A_log, D, biases and norms included);
  // converted tensors live in memory the result owns, tensors already in `dtype` stay views that
  // share this object's storage (the result keeps it alive). Tensors that share memory here
  // (the tied lm_head) share it in the result. Uses all cores.
  absl::StatusOr<ModelWeights> ConvertTo(DType dtype) const;

  // Checks that every tensor `config` implies is present with the expected shape, that optional
  // tensors the config does not have are absent, and that lm_head is tied exactly when the
  // config ties it. INVALID_ARGUMENT names `source`, the tensor and the expected shape.
  absl::Status Validate(const ModelConfig& config, const std::string& source) const;

  // Calls fn(spec, view) for each entry of CheckpointTensors(config) with the view that holds it.
  // `layers` must have config.n_layer entries; for the mutable form, call ResizeFor first.
  void ForEachTensor(const ModelConfig& config,
                     const std::function<void(const TensorSpec&, const TensorView&)>& fn) const;
  void ForEachMutableTensor(const ModelConfig& config,
                            const std::function<void(const TensorSpec&, TensorView&)>& fn);
  // Makes room for config.n_layer layers.
  void ResizeFor(const ModelConfig& config) { layers.resize(config.n_layer); }

 private:
  std::vector<std::shared_ptr<const void>> storage_;
};

// Runs fn(i) for every i in [0, n) on up to `threads` threads (0: one per core), each thread
// taking the next index in turn. fn must be safe to call concurrently for different i. Used to
// spread conversion, synthetic generation and hashing over blocks of a fixed size, so results
// never depend on the number of threads.
void ParallelFor(int64_t n, const std::function<void(int64_t)>& fn, int threads = 0);

}  // namespace mamba::model
