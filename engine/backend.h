// The seam between the scheduler and the hardware: a Backend owns the model weights on its device
// and a fixed pool of state slots, and advances batches of sequences by slot index.
//
// Thread-safety: a Backend is used by one thread at a time (the scheduler thread that owns it).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/dtype.h"
#include "engine/model_config.h"
#include "engine/sampling_params.h"

namespace mamba {

// One sequence's share of a step: feed `tokens` through the model starting from the state in
// `slot` (updated in place). Several tokens = a prefill chunk; one token = a decode step.
struct SeqWork {
  int32_t slot = -1;
  absl::Span<const int32_t> tokens;
  // Sample a token from the logits after the last of `tokens`.
  bool sample = false;
  SamplingParams sampling;
  // Index of the token being sampled within its request (0 for the first generated token); with
  // sampling.seed it picks the random draw.
  uint64_t sample_position = 0;
  // Tokens the repetition penalty applies to (the prompt and what was generated so far).
  absl::Span<const int32_t> penalty_tokens;
  // Alternatives to return with their log-probabilities (0..20), when sampling.
  int32_t top_logprobs = 0;
  // Return the full last-position logits in SeqResult::logits (tests, scoring).
  bool want_logits = false;
};

struct SeqResult {
  int32_t token = -1;          // when sampled
  float logprob = 0.0f;        // log-probability of `token` under the unmodified distribution
  std::vector<TokenLogprob> top;  // top alternatives, most likely first, when asked
  std::vector<float> logits;   // [vocab] when want_logits
};

// A slot's state copied to host memory (pinned on CUDA). Layout: conv state for every layer
// ([n_layer][d_inner][d_conv - 1]) followed by the SSM state ([n_layer][d_inner][d_state]), in
// the backend's state dtype.
class HostState {
 public:
  virtual ~HostState() = default;
  virtual DType dtype() const = 0;
  virtual uint8_t* data() = 0;
  virtual const uint8_t* data() const = 0;
  virtual size_t size() const = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual const ModelConfig& config() const = 0;
  // "cpu" or "cuda".
  virtual std::string name() const = 0;
  // Human-readable device description ("cpu (2 threads)", "NVIDIA H100 80GB HBM3").
  virtual std::string device() const = 0;
  virtual DType weight_dtype() const = 0;
  virtual DType state_dtype() const = 0;
  virtual size_t weight_bytes() const = 0;
  // Bytes of one slot's state.
  virtual size_t state_bytes() const = 0;
  virtual int32_t num_slots() const = 0;

  // Runs one step over `work` (distinct slots) and fills `results` (same length, same order).
  // Sequences are independent: a sequence's result does not depend on the others in the batch.
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
  HeapHostState(DType dtype, size_t size) : dtype_(dtype), bytes_(size) {}
  DType dtype() const override { return dtype_; }
  uint8_t* data() override { return bytes_.data(); }
  const uint8_t* data() const override { return bytes_.data(); }
  size_t size() const override { return bytes_.size(); }

 private:
  DType dtype_;
  std::vector<uint8_t> bytes_;
};

}  // namespace mamba
