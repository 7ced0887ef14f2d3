// Turns a model spec into a loaded model: a Hugging Face checkpoint folder (config.json plus
// model.safetensors or a sharded model.safetensors.index.json) or "synthetic:NAME".
//
// Checkpoint rules (what a user can rely on):
// - config.json: HF MambaConfig fields with HF's defaults (see ParseHfConfig); the original
//   state-spaces format is accepted too.
// - Weights: model.safetensors when present (as transformers does), else the shards listed in
//   model.safetensors.index.json ("weight_map": tensor -> shard file in the same folder). Files
//   are memory-mapped; F32, F16 and BF16 tensors, mixed freely.
// - Every tensor CheckpointTensors(config) lists must be present with exactly that shape.
//   "backbone.embedding.weight" (the original naming) is accepted for the embedding.
// - lm_head.weight is used when tie_word_embeddings is false (and then required). When it is
//   true, lm_head is the embedding and a stored lm_head.weight is ignored, as transformers does;
//   LoadedModel::warnings says so when its bytes differ from the embedding.
// - Unexpected tensors under "backbone." (a bias the config does not have, a layer beyond
//   num_hidden_layers) mean the config and the weights disagree: an error. Any other unexpected
//   tensor is ignored with a warning.
// - Errors: NOT_FOUND for missing folders and files, DATA_LOSS for corrupt safetensors files,
//   INVALID_ARGUMENT for configs and tensors that do not match; each names the file, the field
//   or tensor, and what was expected. Nothing is half-loaded: an error returns no model.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/dtype.h"
#include "engine/model/model_config.h"
#include "engine/model/model_weights.h"

namespace mamba::model {

struct LoadedModel {
  std::string name;    // folder base name or "synthetic:130m"
  std::string source;  // the folder path, or the synthetic spec
  ModelConfig config;
  ModelWeights weights;
  std::string tokenizer_path;  // tokenizer.json beside the checkpoint, "" when there is none
  // Identifies the weights exactly: ModelIdentity(config, weights) after any dtype conversion.
  // Session exports carry it so that a state is never imported into a different model.
  std::string identity;
  // Things the loader ignored (unexpected tensors, an untied lm_head.weight in a tied model),
  // one sentence each, for the server to log.
  std::vector<std::string> warnings;
};

struct LoadOptions {
  // Convert all tensors to this dtype at load; nullopt keeps the checkpoint's dtypes (synthetic
  // models: f32 for tiny, f16 for the public shapes).
  std::optional<DType> dtype;
  // Seed for synthetic weights.
  uint64_t seed = 0;
};

// Loads `spec`: "synthetic:NAME", or a checkpoint folder (a path to a file inside it, such as
// its config.json, names the folder too). Nothing is half-loaded: on any error the status names
// the file, the tensor and what was expected, and no model is returned.
absl::StatusOr<LoadedModel> LoadModel(const std::string& spec, const LoadOptions& options = {});

// Names accepted after "synthetic:": Mamba-1 tiny, 130m, 370m, 790m, 1.4b, 2.8b; Mamba-2
// mamba2-tiny, mamba2-130m, mamba2-370m, mamba2-780m, mamba2-1.3b, mamba2-2.7b, codestral-7b;
// FalconMamba falcon-mamba-tiny, falcon-mamba-7b.
std::vector<std::string> SyntheticModelNames();
// The config of synthetic model `name`: the public shapes. Mamba-1: vocab 50280, d_state 16,
// expand 2, d_conv 4, dt_rank auto, tied embeddings, token ids 0. Mamba-2 (state-spaces'
// mamba2-*): d_state 128, heads of 64, one group, vocab 50288, tied; codestral-7b: 64 x 4096, 128
// heads of 64 in 8 groups, d_state 128, vocab 32768, untied. falcon-mamba-7b: 64 x 4096, d_inner
// 8192, d_state 16, dt_rank 256, vocab 65024, untied. The tiny ones: 4 layers x 128 over 256
// bytes plus <|endoftext|> = 256 (vocab 257; bos, eos and pad 256); mamba2-tiny has 8 heads of 32
// in 2 groups and d_state 16. INVALID_ARGUMENT for other names.
absl::StatusOr<ModelConfig> SyntheticConfig(const std::string& name);
// Builds weights for `config` from `seed`, initialized like a real Mamba: A_log[d][n] =
// log(n + 1) (Mamba-2: A_log[h] = log of a value spread over [1, 16]), D = 1, norms 1, dt_proj.bias = softplus^-1(dt) with dt log-uniform in
// [time_step_min, time_step_max] floored at time_step_floor (also Mamba-2's dt_bias), dt_proj.weight uniform
// +-dt_rank^-0.5, conv1d weight and bias uniform +-1/sqrt(d_conv), other matrices and the
// embedding normal(0, 0.02) with out_proj scaled by 1/sqrt(n_layer); in/out_proj biases (when the
// config has them) normal(0, 0.02) rather than zero, so that they are exercised. Random values
// come from a counter-based generator keyed by (seed, tensor name, element), drawn through
// 65536-level quantile tables (normals are exact quantiles, clipped near 4.3 sigma), so the bytes
// depend only on (config, seed, dtype), not on the thread count. Uses all cores.
absl::StatusOr<ModelWeights> MakeSyntheticWeights(const ModelConfig& config, uint64_t seed,
                                                  DType dtype);

// The identity of (config, weights): 16 hex digits of XXH64 over a manifest of the canonical
// config JSON and, per tensor in CheckpointTensors order, its name, dtype, shape and the XXH64 of
// each 4 MiB block of its bytes (blocks hashed on all cores). Every byte counts, so two models
// share an identity only if they compute the same thing; it is not a cryptographic hash.
std::string ModelIdentity(const ModelConfig& config, const ModelWeights& weights);

// XXH64 of `len` bytes (exposed for tests).
uint64_t Xxh64(const void* data, size_t len, uint64_t seed = 0);

// Writes `config` and `weights` as a Hugging Face checkpoint folder (created if needed):
// config.json and model.safetensors, or, when the tensors exceed `max_shard_bytes` (> 0), shards
// model-0000i-of-0000n.safetensors of at most that size (a larger tensor gets a shard of its own)
// plus model.safetensors.index.json. The other form's files are removed so LoadModel reads what
// was written. Used by tests and tools; LoadModel of the result gives back the same identity.
absl::Status SaveCheckpoint(const ModelConfig& config, const ModelWeights& weights,
                            const std::string& dir, size_t max_shard_bytes = 0);

}  // namespace mamba::model
