// The byte format of an exported session: a session's recurrent state, the tokens not yet fed
// into it, and the identity of the model that made it, versioned and signed, so that a state can
// move between replicas, is never imported into a different model, and cannot be forged.
//
// Layout (little-endian): "MAMBASES" | u32 version (3) | u32 identity length | identity |
// u8 state dtype | u8 model family | 2 zero bytes | u32 n_layer, conv channels, conv width,
// SSM rows, SSM state per row (model::StateLayout) | i64 tokens |
// u32 pending count | i32 pending ids | u64 payload length | payload (HostState layout) |
// 32-byte HMAC-SHA256 of everything before it, under the cluster's session key.
//
// Version 1 ended in an unkeyed checksum that anyone could recompute over altered bytes; it is
// refused. Version 2 (Mamba-1 only) had no family byte and one channel count for both states
// (3 zero bytes after the dtype, then n_layer, channels, conv width, state): still read.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/model/dtype.h"
#include "engine/model/model_config.h"
#include "engine/model/model_family.h"

namespace mamba::sessions {

// The keys that sign and verify exports (HMAC-SHA256). Replicas that exchange sessions share them
// (--session_key_file); the first key signs, every key verifies, so a key is rotated by putting
// the new one first and removing the old one once no export signed with it is in flight.
// Thread-safe once built (const).
class SessionKeys {
 public:
  // Bytes a key must have at least.
  static constexpr size_t kMinKeyBytes = 32;

  // One key per line (surrounding whitespace trimmed; blank lines and lines starting with '#'
  // skipped), each at least kMinKeyBytes characters, e.g. `openssl rand -hex 32`. NOT_FOUND when
  // the file cannot be read; INVALID_ARGUMENT naming the file and line (never a key) otherwise.
  static absl::StatusOr<SessionKeys> FromFile(const std::string& path);
  // The same from `text` (named `source` in errors).
  static absl::StatusOr<SessionKeys> Parse(std::string_view text, std::string_view source);
  // One random 256-bit key from the OS: exports then import only into this process.
  static SessionKeys Random();

  // The 32-byte MAC of `bytes` under the first key.
  std::string Sign(std::string_view bytes) const;
  // True when `mac` is the MAC of `bytes` under one of the keys (compared in constant time).
  bool Verify(std::string_view bytes, std::string_view mac) const;
  size_t size() const { return keys_.size(); }

 private:
  SessionKeys() = default;  // only the factories make keys: a SessionKeys always has one
  std::vector<std::string> keys_;
};

struct SessionSnapshot {
  std::string model_identity;
  model::ModelFamily family = model::ModelFamily::kMamba1;  // of the model that made it
  model::DType state_dtype = model::DType::kF32;
  model::StateLayout layout;  // of the model that made it
  int64_t tokens = 0;
  std::vector<int32_t> pending;
  std::string payload;  // conv states then SSM states, in state_dtype
};

// Bounds an imported session must hold to; anything past them is refused before it reaches a
// slot.
inline constexpr int64_t kMaxSessionTokens = int64_t{1} << 40;
// Largest magnitude of a state value. Real states stay many orders below it; a value past it (or
// not finite) can only make the model's sums overflow.
inline constexpr double kMaxStateMagnitude = 1e9;

// Signs `snapshot` with `keys`' first key.
std::string EncodeSession(const SessionSnapshot& snapshot, const SessionKeys& keys);

// Parses and checks bytes from EncodeSession. INVALID_ARGUMENT for anything malformed, altered,
// forged or signed with another key (bad magic, unknown version, a MAC that none of `keys`
// makes, lengths past the end, payload size not matching the dimensions).
absl::StatusOr<SessionSnapshot> DecodeSession(std::string_view bytes, const SessionKeys& keys);

// Checks the contents of a decoded snapshot: tokens in [0, kMaxSessionTokens], at most
// `max_pending` pending tokens each in [0, vocab_size), every state value finite and within
// kMaxStateMagnitude. INVALID_ARGUMENT names the field (and the layer of a bad value).
absl::Status ValidateSessionSnapshot(const SessionSnapshot& snapshot, int32_t vocab_size,
                                     int32_t max_pending);

// Checks that `snapshot` fits a server running `config` with model `identity`: FAILED_PRECONDITION
// naming both models (family, state layout, identity) when it was exported from another model.
absl::Status CheckSessionCompatible(const SessionSnapshot& snapshot,
                                    const model::ModelConfig& config, const std::string& identity);

// Converts the payload to `dtype` (f32 <-> bf16/f16) in place.
absl::Status ConvertSessionPayload(SessionSnapshot* snapshot, model::DType dtype);

}  // namespace mamba::sessions
