// The device-resident recurrent states: `num_slots` slots allocated once at startup, plus one
// scratch slot that the padding rows of a graph-captured decode step write to.
//
// Slot layout (that of backend.h's HostState, so a slot moves to and from host memory in one
// copy): the conv state of every layer ([n_layer][d_inner][d_conv - 1]) then the SSM state of
// every layer ([n_layer][d_inner][d_state]), in the state dtype (f32, or bf16). Slots are padded
// to 256 bytes so every slot starts aligned for 16-byte vector accesses.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "engine/cuda/device_memory.h"
#include "engine/model/dtype.h"
#include "engine/model/model_config.h"

namespace mamba::cuda {

class StatePool {
 public:
  // Bytes of one slot's state (the HostState size), without padding.
  static size_t StateBytes(const model::ModelConfig& config, model::DType dtype);
  // Device bytes one slot takes, padding included.
  static size_t SlotFootprint(const model::ModelConfig& config, model::DType dtype);

  // Allocates num_slots + 1 slots, zeroed. RESOURCE_EXHAUSTED names the sizes when they do not fit.
  static absl::StatusOr<StatePool> Create(const model::ModelConfig& config, model::DType dtype,
                                          int32_t num_slots);

  StatePool() = default;
  StatePool(StatePool&&) = default;
  StatePool& operator=(StatePool&&) = default;

  int32_t num_slots() const { return num_slots_; }
  int32_t scratch_slot() const { return num_slots_; }
  model::DType dtype() const { return dtype_; }
  size_t state_bytes() const { return state_bytes_; }
  // Elements between the starts of consecutive slots.
  int64_t slot_stride() const { return slot_stride_; }

  // Layer `layer`'s conv / SSM state within slot 0 (slot s is slot_stride() elements further).
  void* conv(int layer) const;
  void* ssm(int layer) const;
  // The first byte of slot `slot`.
  void* slot(int32_t slot) const;

 private:
  int32_t num_slots_ = 0;
  model::DType dtype_ = model::DType::kF32;
  int64_t conv_per_layer_ = 0;  // elements
  int64_t ssm_per_layer_ = 0;
  int64_t ssm_offset_ = 0;
  int64_t slot_stride_ = 0;
  size_t state_bytes_ = 0;
  DeviceBuffer buffer_;
};

}  // namespace mamba::cuda
