// One sequence's recurrent state on the CPU, in fp32, laid out as model::StateLayoutOf(config)
// says (and as a HostState holds it): the conv state of every layer (per channel, oldest input
// first, so entry conv_width - 2 is the last input seen), then the SSM state of every layer. A
// fresh sequence is all zeros. Copies are deep and independent.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/types/span.h"
#include "engine/model/model_config.h"
#include "engine/model/model_family.h"

namespace mamba::cpu {

class SequenceState {
 public:
  explicit SequenceState(const model::ModelConfig& config);

  float* conv(int layer) { return data_.data() + layout_.conv_offset(layer); }
  const float* conv(int layer) const { return data_.data() + layout_.conv_offset(layer); }
  float* ssm(int layer) { return data_.data() + layout_.ssm_offset(layer); }
  const float* ssm(int layer) const { return data_.data() + layout_.ssm_offset(layer); }

  const model::StateLayout& layout() const { return layout_; }
  absl::Span<float> values() { return absl::MakeSpan(data_); }
  absl::Span<const float> values() const { return data_; }
  size_t bytes() const { return data_.size() * sizeof(float); }

  // Back to zeros (a fresh sequence).
  void Reset();

 private:
  model::StateLayout layout_;
  std::vector<float> data_;
};

}  // namespace mamba::cpu
