// A model family's sequence mixer on the CPU: the part of each block between its pre-norm and its
// residual add (Mamba-1: in_proj, causal conv, x_proj, dt_proj, selective scan, gate, out_proj).
// CpuModel runs what every family shares (embedding, residual stream, per-layer RMSNorm, final
// norm, output head, cutting batches into chunks) and calls its family's mixer once per layer per
// chunk; MakeMixer picks the mixer from the config's family.
//
// Numerics: a mixer computes each row from that row's own inputs and its sequence's state only, in
// a fixed order of operations, so batches and chunking give bit-identical results (cpu_model.h).
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/cpu/sequence_state.h"
#include "engine/cpu/thread_pool.h"
#include "engine/model/model_config.h"
#include "engine/model/model_weights.h"

namespace mamba::cpu {

// A run of one sequence's consecutive rows inside a chunk, and the state it advances.
struct ChunkPiece {
  SequenceState* state = nullptr;
  int64_t row = 0;   // first row in the chunk
  int64_t rows = 0;  // at least one
};

class Mixer {
 public:
  virtual ~Mixer() = default;

  // out[t] = the mixer of layer `layer` applied to in[t], for the chunk's rows t < rows (each row
  // d_model floats, in and out distinct), advancing layer `layer`'s state of every piece in
  // place. Pieces cover the rows in order and their states are distinct. Not thread-safe (it
  // uses the pool and its own scratch).
  virtual void Forward(int layer, absl::Span<const ChunkPiece> pieces, int64_t rows,
                       const float* in, float* out) = 0;
};

// The mixer of `config`'s family over `weights` (validated against `config`; they must outlive
// the mixer), running its parallel regions on `pool`. INVALID_ARGUMENT when the family's shapes
// exceed what this backend supports (the message names the field and the limit).
absl::StatusOr<std::unique_ptr<Mixer>> MakeMixer(const model::ModelConfig& config,
                                                 const model::ModelWeights& weights,
                                                 ThreadPool* pool);

}  // namespace mamba::cpu
