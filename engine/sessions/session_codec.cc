#include "engine/sessions/session_codec.h"

#include <cstring>

#include "absl/strings/str_cat.h"

namespace mamba::sessions {
namespace {

constexpr char kMagic[8] = {'M', 'A', 'M', 'B', 'A', 'S', 'E', 'S'};
constexpr uint32_t kVersion = 1;

template <typename T>
void Put(std::string* out, T v) {
  char buf[sizeof(T)];
  std::memcpy(buf, &v, sizeof(T));
  out->append(buf, sizeof(T));
}

class Reader {
 public:
  explicit Reader(std::string_view b) : b_(b) {}
  template <typename T>
  bool Get(T* v) {
    if (b_.size() - pos_ < sizeof(T)) return false;
    std::memcpy(v, b_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return true;
  }
  bool Bytes(size_t n, std::string_view* out) {
    if (b_.size() - pos_ < n) return false;
    *out = b_.substr(pos_, n);
    pos_ += n;
    return true;
  }
  size_t pos() const { return pos_; }
  size_t remaining() const { return b_.size() - pos_; }

 private:
  std::string_view b_;
  size_t pos_ = 0;
};

absl::Status Corrupt(const std::string& what) {
  return absl::InvalidArgumentError(
      absl::StrCat("session state is corrupt or not from ExportSession: ", what));
}

}  // namespace

uint64_t Checksum64(std::string_view bytes) {
  // Word-wise multiply-xorshift over 8-byte lanes; fast enough for tens of MB.
  uint64_t h = 0x243F6A8885A308D3ull ^ (bytes.size() * 0x9E3779B97F4A7C15ull);
  size_t i = 0;
  for (; i + 8 <= bytes.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, bytes.data() + i, 8);
    h ^= w * 0xBF58476D1CE4E5B9ull;
    h = (h << 27 | h >> 37) * 0x94D049BB133111EBull;
  }
  uint64_t tail = 0;
  std::memcpy(&tail, bytes.data() + i, bytes.size() - i);
  h ^= tail * 0xBF58476D1CE4E5B9ull;
  h ^= h >> 31;
  h *= 0xD6E8FEB86659FD93ull;
  h ^= h >> 32;
  return h;
}

std::string EncodeSession(const SessionSnapshot& s) {
  std::string out;
  out.reserve(64 + s.model_identity.size() + s.pending.size() * 4 + s.payload.size());
  out.append(kMagic, sizeof kMagic);
  Put<uint32_t>(&out, kVersion);
  Put<uint32_t>(&out, static_cast<uint32_t>(s.model_identity.size()));
  out.append(s.model_identity);
  Put<uint8_t>(&out, static_cast<uint8_t>(s.state_dtype));
  out.append(3, '\0');
  Put<uint32_t>(&out, static_cast<uint32_t>(s.layout.n_layer));
  Put<uint32_t>(&out, static_cast<uint32_t>(s.layout.conv_channels));
  Put<uint32_t>(&out, static_cast<uint32_t>(s.layout.conv_width));
  Put<uint32_t>(&out, static_cast<uint32_t>(s.layout.ssm_state));
  Put<int64_t>(&out, s.tokens);
  Put<uint32_t>(&out, static_cast<uint32_t>(s.pending.size()));
  for (int32_t id : s.pending) Put<int32_t>(&out, id);
  Put<uint64_t>(&out, s.payload.size());
  out.append(s.payload);
  Put<uint64_t>(&out, Checksum64(out));
  return out;
}

absl::StatusOr<SessionSnapshot> DecodeSession(std::string_view bytes) {
  if (bytes.size() < sizeof kMagic + 8 || std::memcmp(bytes.data(), kMagic, sizeof kMagic) != 0) {
    return Corrupt("it does not start with the session magic bytes");
  }
  const std::string_view body = bytes.substr(0, bytes.size() - 8);
  uint64_t stored;
  std::memcpy(&stored, bytes.data() + body.size(), 8);
  if (stored != Checksum64(body)) return Corrupt("checksum mismatch (truncated or altered)");

  Reader r(body);
  std::string_view magic;
  r.Bytes(sizeof kMagic, &magic);
  uint32_t version = 0, id_len = 0;
  if (!r.Get(&version)) return Corrupt("no version");
  if (version != kVersion) {
    return absl::InvalidArgumentError(absl::StrCat("session state has format version ", version,
                                                   "; this server reads version ", kVersion));
  }
  if (!r.Get(&id_len) || id_len > 4096) return Corrupt("bad model identity length");
  SessionSnapshot s;
  std::string_view id;
  if (!r.Bytes(id_len, &id)) return Corrupt("model identity past the end");
  s.model_identity = std::string(id);
  uint8_t dtype = 0;
  std::string_view pad;
  if (!r.Get(&dtype) || !r.Bytes(3, &pad)) return Corrupt("header past the end");
  if (dtype > static_cast<uint8_t>(model::DType::kBF16)) return Corrupt("unknown state dtype");
  s.state_dtype = static_cast<model::DType>(dtype);
  uint32_t dims[4];
  for (uint32_t& d : dims) {
    if (!r.Get(&d)) return Corrupt("dimensions past the end");
  }
  for (uint32_t d : dims) {
    if (d == 0 || d > (1u << 20)) return Corrupt("dimension out of range");
  }
  // Version 1 describes layouts whose conv and SSM states span the same channels (Mamba-1).
  s.layout.n_layer = static_cast<int32_t>(dims[0]);
  s.layout.conv_channels = dims[1];
  s.layout.conv_width = static_cast<int32_t>(dims[2]);
  s.layout.ssm_channels = dims[1];
  s.layout.ssm_state = dims[3];
  uint32_t n_pending = 0;
  if (!r.Get(&s.tokens) || s.tokens < 0) return Corrupt("bad token count");
  if (!r.Get(&n_pending) || n_pending > r.remaining() / 4) return Corrupt("bad pending count");
  s.pending.resize(n_pending);
  for (int32_t& t : s.pending) {
    if (!r.Get(&t) || t < 0) return Corrupt("bad pending token");
  }
  uint64_t payload_len = 0;
  if (!r.Get(&payload_len) || payload_len != r.remaining()) return Corrupt("bad payload length");
  const uint64_t expected =
      static_cast<uint64_t>(s.layout.elements()) * model::DTypeSize(s.state_dtype);
  if (payload_len != expected) return Corrupt("payload size does not match its dimensions");
  std::string_view payload;
  r.Bytes(payload_len, &payload);
  s.payload = std::string(payload);
  return s;
}

absl::Status CheckSessionCompatible(const SessionSnapshot& s, const model::ModelConfig& config,
                                    const std::string& identity) {
  if (s.model_identity != identity) {
    return absl::FailedPreconditionError(absl::StrCat(
        "session state was exported from a different model (identity ", s.model_identity,
        "); this server serves model ", identity, "; import it into a replica of that model"));
  }
  if (s.layout != model::StateLayoutOf(config)) {
    return absl::FailedPreconditionError("session state dimensions do not match this model");
  }
  return absl::OkStatus();
}

absl::Status ConvertSessionPayload(SessionSnapshot* s, model::DType dtype) {
  if (s->state_dtype == dtype) return absl::OkStatus();
  const size_t n = s->payload.size() / model::DTypeSize(s->state_dtype);
  std::vector<float> f(n);
  model::ConvertToFloat(s->state_dtype, s->payload.data(), f.data(), n);
  std::string out(n * model::DTypeSize(dtype), '\0');
  model::ConvertFromFloat(dtype, f.data(), out.data(), n);
  s->payload = std::move(out);
  s->state_dtype = dtype;
  return absl::OkStatus();
}

}  // namespace mamba::sessions
