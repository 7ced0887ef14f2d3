// The seam between the scheduler and the hardware: a Backend owns the model weights on its device
// and a fixed pool of state slots, and advances batches of sequences by slot index. cpu/ and
// cuda/ implement it; the engine's backend factory picks one from BackendOptions. Nothing here
// knows a model family's math: a backend builds the family's layers itself (the family is in the
// config), and the state layout comes from the family (model::StateLayoutOf).
//
// Fault isolation: the work of a step is checked and run per sequence. A fault that belongs to one
// sequence (an invalid slot or token, logits that are not finite, a sampler error) is reported in
// that sequence's SeqResult::status and leaves the other sequences' results and states exactly as
// if it had not been in the batch. Only a fault of the device itself fails the whole Step.
//
// Thread-safety: a Backend is used by one thread at a time (the scheduler thread that owns it),
// except DeviceMemory.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/model/dtype.h"
#include "engine/model/model_config.h"
#include "engine/sampling/sampling_params.h"

namespace mamba::backend {

// How to build a backend. Each default is written here once; the engine's and the server's
// options embed this struct.
struct BackendOptions {
  std::string kind = "auto";         // auto | cpu | cuda
  int32_t device = 0;                // GPU index (cuda)
  int32_t num_slots = 0;             // 0: the backend decides (cpu: 64; cuda: from memory)
  int32_t cpu_threads = 0;           // 0: all cores (cpu)
  std::string state_dtype = "f32";   // f32 | bf16 (cuda)
  double gpu_memory_fraction = 0.9;  // of free memory after the weights, for slots (cuda)
  // Largest batch the backend must step at once (cuda graphs). The engine sets it from the
  // scheduler's max_running.
  int32_t max_batch = 256;
  bool deterministic = false;  // batch-invariant kernels (cuda)
};

// One sequence's share of a step: feed `tokens` through the model starting from the state in
// `slot` (updated in place). Several tokens = a prefill chunk; one token = a decode step.
struct SeqWork {
  int32_t slot = -1;
  absl::Span<const int32_t> tokens;
  // Sample a token from the logits after the last of `tokens`.
  bool sample = false;
  // Valid by construction (sampling::ValidateSamplingParams ran at the engine's boundary).
  sampling::SamplingParams sampling;
  // Index of the token being sampled within its request (0 for the first generated token); with
  // sampling.seed it picks the random draw.
  uint64_t sample_position = 0;
  // Tokens the repetition penalty applies to (the prompt and what was generated so far).
  absl::Span<const int32_t> penalty_tokens;
  // Tokens the request has generated so far, which the additive penalties
  // (sampling.frequency_penalty, sampling.presence_penalty) count.
  absl::Span<const int32_t> output_tokens;
  // Alternatives to return with their log-probabilities (0..kMaxTopLogprobs), when sampling.
  int32_t top_logprobs = 0;
  // Return the full last-position logits in SeqResult::logits (tests, scoring).
  bool want_logits = false;
};

struct SeqResult {
  // This sequence's outcome. Not OK: the sequence failed alone (the message says why, without
  // naming other sequences); the fields below are unset, and its state is unknown unless the
  // code is INVALID_ARGUMENT (the work was refused before anything ran: the state is untouched).
  absl::Status status;
  int32_t token = -1;    // when sampled
  float logprob = 0.0f;  // log-probability of `token` under the unmodified distribution
  std::vector<sampling::TokenLogprob> top;  // top alternatives, most likely first, when asked
  std::vector<float> logits;                // [vocab] when want_logits
};

// A slot's state copied to host memory (pinned on CUDA), in the layout of
// model::StateLayoutOf(config) (every layer's conv state, then every layer's SSM state) and the
// backend's state dtype.
class HostState {
 public:
  virtual ~HostState() = default;
  virtual model::DType dtype() const = 0;
  virtual uint8_t* data() = 0;
  virtual const uint8_t* data() const = 0;
  virtual size_t size() const = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual const model::ModelConfig& config() const = 0;
  // "cpu" or "cuda".
  virtual std::string name() const = 0;
  // Human-readable device description ("cpu (2 threads)", "NVIDIA H100 80GB HBM3").
  virtual std::string device() const = 0;
  virtual model::DType weight_dtype() const = 0;
  virtual model::DType state_dtype() const = 0;
  virtual size_t weight_bytes() const = 0;
  // Bytes of one slot's state.
  virtual size_t state_bytes() const = 0;
  virtual int32_t num_slots() const = 0;

  // Runs one step over `work` and fills `results` (same length, same order). Sequences are
  // independent: a sequence's result does not depend on the others in the batch, and a sequence
  // that fails (results[i].status) does not change the others' results. Returns an error only
  // when the step as a whole could not run (mismatched spans, a device fault); then every
  // sequence's state is unknown.
  virtual absl::Status Step(absl::Span<const SeqWork> work, absl::Span<SeqResult> results) = 0;

  // Sets a slot's state to zeros (a fresh sequence).
  virtual absl::Status ResetSlot(int32_t slot) = 0;
  // Copies the state of slot `from` over slot `to`.
  virtual absl::Status CopySlot(int32_t from, int32_t to) = 0;

  // Device memory in use and in total, in bytes (both 0 for the CPU backend). May be called from
  // any thread, concurrently with the owning thread's calls.
  virtual void DeviceMemory(int64_t* used, int64_t* total) const {
    *used = 0;
    *total = 0;
  }

  // Allocates host memory for one slot's state (pinned where the backend benefits from it).
  virtual std::unique_ptr<HostState> AllocateHostState() = 0;
  // Copies a slot's state to host memory / from host memory into a slot.
  virtual absl::Status SaveSlot(int32_t slot, HostState* out) = 0;
  virtual absl::Status LoadSlot(int32_t slot, const HostState& in) = 0;
};

// A HostState in ordinary heap memory.
class HeapHostState final : public HostState {
 public:
  HeapHostState(model::DType dtype, size_t size) : dtype_(dtype), bytes_(size) {}
  model::DType dtype() const override { return dtype_; }
  uint8_t* data() override { return bytes_.data(); }
  const uint8_t* data() const override { return bytes_.data(); }
  size_t size() const override { return bytes_.size(); }

 private:
  model::DType dtype_;
  std::vector<uint8_t> bytes_;
};

}  // namespace mamba::backend
