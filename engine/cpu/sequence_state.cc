#include "engine/cpu/sequence_state.h"

#include <algorithm>

namespace mamba::cpu {

SequenceState::SequenceState(const model::ModelConfig& config)
    : layout_(model::StateLayoutOf(config)), data_(static_cast<size_t>(layout_.elements()), 0.0f) {}

void SequenceState::Reset() { std::fill(data_.begin(), data_.end(), 0.0f); }

}  // namespace mamba::cpu
