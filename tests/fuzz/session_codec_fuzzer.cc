// Fuzzes the session import format: DecodeSession on arbitrary bytes, then what the server does
// with an accepted snapshot (compatibility check, dtype conversion).
//
// Input: byte 0 picks the mode. Even: the rest is the exported bytes as they are. Odd: the rest
// is everything but the MAC, which is appended here with the fuzz key, so that the fuzzer gets
// past the signature to the fields behind it.
//
// Checks: refusals are INVALID_ARGUMENT; an accepted snapshot has dimensions in range, a payload
// of exactly the size its dimensions need, and encodes back to the same bytes (except the two
// padding bytes, which the decoder ignores; a version-2 export re-encodes as the current version,
// one dimension longer, and must decode the same); ValidateSessionSnapshot refuses with
// INVALID_ARGUMENT or accepts only tokens, pending ids and values inside their bounds.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "engine/sessions/session_codec.h"
#include "tests/fuzz/fuzz_check.h"
#include "tests/fuzz/fuzz_session_keys.h"

namespace {

bool SameSnapshot(const mamba::sessions::SessionSnapshot& a,
                  const mamba::sessions::SessionSnapshot& b) {
  return a.model_identity == b.model_identity && a.state_dtype == b.state_dtype &&
         a.family == b.family && a.layout == b.layout && a.tokens == b.tokens && a.pending == b.pending &&
         a.payload == b.payload;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  std::string bytes(reinterpret_cast<const char*>(data + 1), size - 1);
  const mamba::sessions::SessionKeys& keys = mamba::fuzz::FuzzSessionKeys();
  if ((data[0] & 1) != 0) bytes += keys.Sign(bytes);
  absl::StatusOr<mamba::sessions::SessionSnapshot> s = mamba::sessions::DecodeSession(bytes, keys);
  if (!s.ok()) {
    FUZZ_CHECK(s.status().code() == absl::StatusCode::kInvalidArgument, "unexpected status %s",
               s.status().ToString().c_str());
    return 0;
  }
  const mamba::model::StateLayout& l = s->layout;
  FUZZ_CHECK(l.n_layer > 0 && l.conv_channels > 0 && l.conv_width > 0 && l.ssm_state > 0 &&
                 l.ssm_channels > 0,
             "a layout out of range accepted");
  const uint64_t expected = uint64_t(l.elements()) * mamba::model::DTypeSize(s->state_dtype);
  FUZZ_CHECK(s->payload.size() == expected, "payload of %zu bytes, dimensions need %llu",
             s->payload.size(), static_cast<unsigned long long>(expected));

  const std::string again = mamba::sessions::EncodeSession(*s, keys);
  absl::StatusOr<mamba::sessions::SessionSnapshot> back =
      mamba::sessions::DecodeSession(again, keys);
  FUZZ_CHECK(back.ok() && SameSnapshot(*back, *s), "re-encoded snapshot does not decode the same");
  uint32_t version = 0;
  std::memcpy(&version, bytes.data() + 8, sizeof version);
  if (version == 2) {
    // Version 2 has one channel count; the current version writes both.
    FUZZ_CHECK(again.size() == bytes.size() + 4, "re-encoded version-2 size %zu != %zu + 4",
               again.size(), bytes.size());
  } else {
    FUZZ_CHECK(again.size() == bytes.size(), "re-encoded size %zu != %zu", again.size(),
               bytes.size());
    std::string original = bytes;
    // magic, version, identity length, identity, dtype, family
    const size_t pad = 8 + 4 + 4 + s->model_identity.size() + 2;
    std::memset(original.data() + pad, 0, 2);
    std::string canonical = again;
    std::memset(canonical.data() + pad, 0, 2);
    // The MACs differ when the padding did; compare everything before them.
    FUZZ_CHECK(
        canonical.compare(0, canonical.size() - 32, original, 0, original.size() - 32) == 0,
        "re-encoded bytes differ beyond the padding");
  }

  // What an import checks next: the contents' bounds.
  constexpr int32_t kVocab = 1000, kMaxPending = 64;
  const absl::Status valid = mamba::sessions::ValidateSessionSnapshot(*s, kVocab, kMaxPending);
  if (!valid.ok()) {
    FUZZ_CHECK(valid.code() == absl::StatusCode::kInvalidArgument, "unexpected status %s",
               valid.ToString().c_str());
  } else {
    FUZZ_CHECK(s->tokens >= 0 && s->tokens <= mamba::sessions::kMaxSessionTokens,
               "token count %lld accepted", static_cast<long long>(s->tokens));
    FUZZ_CHECK(s->pending.size() <= size_t{kMaxPending}, "%zu pending tokens accepted",
               s->pending.size());
    for (int32_t id : s->pending) {
      FUZZ_CHECK(id >= 0 && id < kVocab, "pending id %d accepted", id);
    }
    const size_t n = s->payload.size() / mamba::model::DTypeSize(s->state_dtype);
    std::vector<float> values(n);
    mamba::model::ConvertToFloat(s->state_dtype, s->payload.data(), values.data(), n);
    for (float v : values) {
      FUZZ_CHECK(std::isfinite(v) && std::fabs(v) <= mamba::sessions::kMaxStateMagnitude,
                 "state value %g accepted", v);
    }
  }

  // A config of the snapshot's family with its dimensions, where one exists (Mamba-2: heads of
  // one channel, groups from the conv channels beyond the SSM's).
  mamba::model::ModelConfig config;
  config.family = s->family;
  config.n_layer = l.n_layer;
  config.d_inner = static_cast<int32_t>(l.ssm_channels);
  config.d_conv = l.conv_width;
  config.d_state = static_cast<int32_t>(l.ssm_state);
  bool expressible = l.conv_channels == l.ssm_channels;
  if (s->family == mamba::model::ModelFamily::kMamba2) {
    const int64_t extra = l.conv_channels - l.ssm_channels;
    config.n_heads = static_cast<int32_t>(l.ssm_channels);
    config.head_dim = 1;
    config.n_groups = extra > 0 && extra % (2 * l.ssm_state) == 0
                          ? static_cast<int32_t>(extra / (2 * l.ssm_state))
                          : 0;
    expressible = config.n_groups > 0 && config.n_heads % config.n_groups == 0;
  }
  if (expressible) {
    FUZZ_CHECK(mamba::model::StateLayoutOf(config) == l, "the config does not give the layout");
    FUZZ_CHECK(mamba::sessions::CheckSessionCompatible(*s, config, s->model_identity).ok(),
               "a snapshot is incompatible with its own dimensions");
  }
  FUZZ_CHECK(mamba::sessions::CheckSessionCompatible(*s, config, s->model_identity + "x").code() ==
                 absl::StatusCode::kFailedPrecondition,
             "a snapshot from another model was accepted");

  if (s->payload.size() <= (size_t{1} << 20)) {  // conversions allocate 2-4x the payload
    const size_t elements = s->payload.size() / mamba::model::DTypeSize(s->state_dtype);
    for (mamba::model::DType to :
         {mamba::model::DType::kF32, mamba::model::DType::kBF16, mamba::model::DType::kF16}) {
      mamba::sessions::SessionSnapshot converted = *s;
      FUZZ_CHECK(mamba::sessions::ConvertSessionPayload(&converted, to).ok(), "conversion failed");
      FUZZ_CHECK(converted.state_dtype == to &&
                     converted.payload.size() == elements * mamba::model::DTypeSize(to),
                 "converted payload has the wrong size");
    }
  }
  return 0;
}
