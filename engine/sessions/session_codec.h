// The byte format of an exported session: a session's recurrent state, the tokens not yet fed
// into it, and the identity of the model that made it, versioned and checksummed, so that a state
// can move between replicas and is never imported into a different model.
//
// Layout (little-endian): "MAMBASES" | u32 version (1) | u32 identity length | identity |
// u8 state dtype | 3 zero bytes | u32 n_layer, conv channels (d_inner), conv width (d_conv),
// SSM state per channel (d_state) | i64 tokens |
// u32 pending count | i32 pending ids | u64 payload length | payload (HostState layout) |
// u64 checksum of everything before it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/dtype.h"
#include "engine/model/model_config.h"
#include "engine/model/model_family.h"

namespace mamba::sessions {

struct SessionSnapshot {
  std::string model_identity;
  model::DType state_dtype = model::DType::kF32;
  model::StateLayout layout;  // of the model that made it
  int64_t tokens = 0;
  std::vector<int32_t> pending;
  std::string payload;  // conv states then SSM states, in state_dtype
};

std::string EncodeSession(const SessionSnapshot& snapshot);

// Parses and checks bytes from EncodeSession. INVALID_ARGUMENT for anything malformed or corrupt
// (bad magic, unknown version, lengths past the end, checksum mismatch, payload size not matching
// the dimensions).
absl::StatusOr<SessionSnapshot> DecodeSession(std::string_view bytes);

// Checks that `snapshot` fits a server running `config` with model `identity`: FAILED_PRECONDITION
// naming both models when it was exported from another model.
absl::Status CheckSessionCompatible(const SessionSnapshot& snapshot,
                                    const model::ModelConfig& config, const std::string& identity);

// Converts the payload to `dtype` (f32 <-> bf16/f16) in place.
absl::Status ConvertSessionPayload(SessionSnapshot* snapshot, model::DType dtype);

// A fast 64-bit checksum (not cryptographic).
uint64_t Checksum64(std::string_view bytes);

}  // namespace mamba::sessions
