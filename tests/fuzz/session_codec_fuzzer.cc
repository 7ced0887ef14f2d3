// Fuzzes the session import format: DecodeSession on arbitrary bytes, then what the server does
// with an accepted snapshot (compatibility check, dtype conversion).
//
// Input: byte 0 picks the mode. Even: the rest is the exported bytes as they are. Odd: the rest
// is everything but the checksum, which is appended here, so that the fuzzer gets past the
// checksum to the fields behind it.
//
// Checks: refusals are INVALID_ARGUMENT; an accepted snapshot has dimensions in range, a payload
// of exactly the size its dimensions need, no negative ids or counts, and encodes back to the
// same bytes (except the three padding bytes, which the decoder ignores).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "engine/sessions/session_codec.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

bool SameSnapshot(const mamba::sessions::SessionSnapshot& a,
                  const mamba::sessions::SessionSnapshot& b) {
  return a.model_identity == b.model_identity && a.state_dtype == b.state_dtype &&
         a.layout == b.layout && a.tokens == b.tokens && a.pending == b.pending &&
         a.payload == b.payload;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  std::string bytes(reinterpret_cast<const char*>(data + 1), size - 1);
  if ((data[0] & 1) != 0) {
    const uint64_t checksum = mamba::sessions::Checksum64(bytes);
    char tail[8];
    std::memcpy(tail, &checksum, 8);
    bytes.append(tail, 8);
  }
  absl::StatusOr<mamba::sessions::SessionSnapshot> s = mamba::sessions::DecodeSession(bytes);
  if (!s.ok()) {
    FUZZ_CHECK(s.status().code() == absl::StatusCode::kInvalidArgument, "unexpected status %s",
               s.status().ToString().c_str());
    return 0;
  }
  FUZZ_CHECK(s->n_layer > 0 && s->d_inner > 0 && s->d_conv > 0 && s->d_state > 0,
             "non-positive dimension accepted");
  FUZZ_CHECK(s->tokens >= 0, "negative token count accepted");
  for (int32_t id : s->pending) FUZZ_CHECK(id >= 0, "negative pending id %d accepted", id);
  const uint64_t expected = uint64_t(s->n_layer) * uint64_t(s->d_inner) *
                            (uint64_t(s->d_conv) - 1 + uint64_t(s->d_state)) *
                            mamba::model::DTypeSize(s->state_dtype);
  FUZZ_CHECK(s->payload.size() == expected, "payload of %zu bytes, dimensions need %llu",
             s->payload.size(), static_cast<unsigned long long>(expected));

  const std::string again = mamba::sessions::EncodeSession(*s);
  absl::StatusOr<mamba::sessions::SessionSnapshot> back = mamba::sessions::DecodeSession(again);
  FUZZ_CHECK(back.ok() && SameSnapshot(*back, *s), "re-encoded snapshot does not decode the same");
  FUZZ_CHECK(again.size() == bytes.size(), "re-encoded size %zu != %zu", again.size(),
             bytes.size());
  std::string original = bytes;
  const size_t pad = 8 + 4 + 4 + s->model_identity.size() + 1;  // magic, version, id, dtype
  std::memset(original.data() + pad, 0, 3);
  std::string canonical = again;
  std::memset(canonical.data() + pad, 0, 3);
  // The checksums differ when the padding did; compare everything before them.
  FUZZ_CHECK(canonical.compare(0, canonical.size() - 8, original, 0, original.size() - 8) == 0,
             "re-encoded bytes differ beyond the padding");

  mamba::model::ModelConfig config;
  config.n_layer = s->n_layer;
  config.d_inner = s->d_inner;
  config.d_conv = s->d_conv;
  config.d_state = s->d_state;
  FUZZ_CHECK(mamba::sessions::CheckSessionCompatible(*s, config, s->model_identity).ok(),
             "a snapshot is incompatible with its own dimensions");
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
