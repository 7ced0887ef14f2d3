#include "engine/sessions/session_codec.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace mamba::sessions {
namespace {

constexpr char kMagic[8] = {'M', 'A', 'M', 'B', 'A', 'S', 'E', 'S'};
constexpr uint32_t kVersion = 3;
constexpr size_t kMacBytes = 32;
// Dimension bounds, those of ModelConfig::Validate, so that sizes computed from them cannot
// overflow.
constexpr uint32_t kMaxLayers = 1u << 12;
constexpr uint32_t kMaxChannels = 1u << 18;
constexpr uint32_t kMaxConvWidth = 64;
constexpr uint32_t kMaxState = 1u << 12;

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

absl::StatusOr<SessionKeys> SessionKeys::Parse(std::string_view text, std::string_view source) {
  SessionKeys keys;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(absl::string_view(text.data(), text.size()), '\n')) {
    ++line_number;
    const absl::string_view key = absl::StripAsciiWhitespace(line);
    if (key.empty() || key[0] == '#') continue;
    if (key.size() < kMinKeyBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat(std::string(source), " line ", line_number, ": the key has ", key.size(),
                       " characters; a session key needs at least ", kMinKeyBytes,
                       " (make one with `openssl rand -hex 32`)"));
    }
    keys.keys_.emplace_back(key);
  }
  if (keys.keys_.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        std::string(source),
        " holds no session key; put one per line (make one with `openssl rand -hex 32`)"));
  }
  return keys;
}

absl::StatusOr<SessionKeys> SessionKeys::FromFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open the session key file"));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat(path, ": read error"));
  return Parse(text.str(), path);
}

SessionKeys SessionKeys::Random() {
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof bytes) != 1) std::abort();  // no randomness: nothing safe to do
  SessionKeys keys;
  keys.keys_.emplace_back(reinterpret_cast<const char*>(bytes), sizeof bytes);
  return keys;
}

namespace {

std::string Mac(const std::string& key, std::string_view bytes) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), out, &len);
  return std::string(reinterpret_cast<const char*>(out), len);
}

}  // namespace

std::string SessionKeys::Sign(std::string_view bytes) const { return Mac(keys_.front(), bytes); }

bool SessionKeys::Verify(std::string_view bytes, std::string_view mac) const {
  if (mac.size() != kMacBytes) return false;
  bool match = false;
  for (const std::string& key : keys_) {
    const std::string expected = Mac(key, bytes);
    match |= CRYPTO_memcmp(expected.data(), mac.data(), kMacBytes) == 0;
  }
  return match;
}

std::string EncodeSession(const SessionSnapshot& s, const SessionKeys& keys) {
  std::string out;
  out.reserve(64 + s.model_identity.size() + s.pending.size() * 4 + s.payload.size());
  out.append(kMagic, sizeof kMagic);
  Put<uint32_t>(&out, kVersion);
  Put<uint32_t>(&out, static_cast<uint32_t>(s.model_identity.size()));
  out.append(s.model_identity);
  Put<uint8_t>(&out, static_cast<uint8_t>(s.state_dtype));
  Put<uint8_t>(&out, static_cast<uint8_t>(s.family));
  out.append(2, '\0');
  Put<uint32_t>(&out, static_cast<uint32_t>(s.layout.n_layer));
  Put<uint32_t>(&out, static_cast<uint32_t>(s.layout.conv_channels));
  Put<uint32_t>(&out, static_cast<uint32_t>(s.layout.conv_width));
  Put<uint32_t>(&out, static_cast<uint32_t>(s.layout.ssm_channels));
  Put<uint32_t>(&out, static_cast<uint32_t>(s.layout.ssm_state));
  Put<int64_t>(&out, s.tokens);
  Put<uint32_t>(&out, static_cast<uint32_t>(s.pending.size()));
  for (int32_t id : s.pending) Put<int32_t>(&out, id);
  Put<uint64_t>(&out, s.payload.size());
  out.append(s.payload);
  out.append(keys.Sign(out));
  return out;
}

absl::StatusOr<SessionSnapshot> DecodeSession(std::string_view bytes, const SessionKeys& keys) {
  if (bytes.size() < sizeof kMagic + 4 || std::memcmp(bytes.data(), kMagic, sizeof kMagic) != 0) {
    return Corrupt("it does not start with the session magic bytes");
  }
  uint32_t version = 0;
  std::memcpy(&version, bytes.data() + sizeof kMagic, sizeof version);
  if (version == 1) {
    return absl::InvalidArgumentError(
        "session state has format version 1, which is unsigned and no longer accepted; export "
        "the session again from a server of this version");
  }
  if (version != 2 && version != kVersion) {
    return absl::InvalidArgumentError(absl::StrCat("session state has format version ", version,
                                                   "; this server reads versions 2 and ",
                                                   kVersion));
  }
  if (bytes.size() < sizeof kMagic + 4 + kMacBytes) return Corrupt("it is truncated");
  const std::string_view body = bytes.substr(0, bytes.size() - kMacBytes);
  if (!keys.Verify(body, bytes.substr(body.size()))) {
    return absl::InvalidArgumentError(
        "session state failed authentication: it was altered or truncated, or exported by a "
        "server with another session key (replicas that exchange sessions must share "
        "--session_key_file)");
  }

  Reader r(body);
  std::string_view magic;
  r.Bytes(sizeof kMagic, &magic);
  uint32_t id_len = 0;
  if (!r.Get(&version)) return Corrupt("no version");
  if (!r.Get(&id_len) || id_len > 4096) return Corrupt("bad model identity length");
  SessionSnapshot s;
  std::string_view id;
  if (!r.Bytes(id_len, &id)) return Corrupt("model identity past the end");
  s.model_identity = std::string(id);
  uint8_t dtype = 0;
  uint8_t family = 0;  // version 2: Mamba-1, and its byte is padding
  std::string_view pad;
  if (!r.Get(&dtype) || !r.Get(&family) || !r.Bytes(2, &pad)) {
    return Corrupt("header past the end");
  }
  if (dtype > static_cast<uint8_t>(model::DType::kBF16)) return Corrupt("unknown state dtype");
  if (version == 2 && family != 0) return Corrupt("nonzero padding");
  if (family > static_cast<uint8_t>(model::ModelFamily::kFalconMamba)) {
    return Corrupt("unknown model family");
  }
  s.state_dtype = static_cast<model::DType>(dtype);
  s.family = static_cast<model::ModelFamily>(family);
  // Version 2 has one channel count for both states.
  uint32_t dims[5];
  const int n_dims = version == 2 ? 4 : 5;
  for (int i = 0; i < n_dims; ++i) {
    if (!r.Get(&dims[i])) return Corrupt("dimensions past the end");
  }
  if (version == 2) {
    dims[4] = dims[3];
    dims[3] = dims[1];
  }
  if (dims[0] == 0 || dims[0] > kMaxLayers || dims[1] == 0 || dims[1] > kMaxChannels ||
      dims[2] == 0 || dims[2] > kMaxConvWidth || dims[3] == 0 || dims[3] > kMaxChannels ||
      dims[4] == 0 || dims[4] > kMaxState) {
    return Corrupt("dimension out of range");
  }
  s.layout.n_layer = static_cast<int32_t>(dims[0]);
  s.layout.conv_channels = dims[1];
  s.layout.conv_width = static_cast<int32_t>(dims[2]);
  s.layout.ssm_channels = dims[3];
  s.layout.ssm_state = dims[4];
  uint32_t n_pending = 0;
  if (!r.Get(&s.tokens)) return Corrupt("no token count");
  if (!r.Get(&n_pending) || n_pending > r.remaining() / 4) return Corrupt("bad pending count");
  s.pending.resize(n_pending);
  for (int32_t& t : s.pending) {
    if (!r.Get(&t)) return Corrupt("pending tokens past the end");
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

absl::Status ValidateSessionSnapshot(const SessionSnapshot& s, int32_t vocab_size,
                                     int32_t max_pending) {
  auto invalid = [](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat("session state: ", what));
  };
  if (s.tokens < 0 || s.tokens > kMaxSessionTokens) {
    return invalid(
        absl::StrCat("tokens = ", s.tokens, " is out of range; allowed: 0 to ", kMaxSessionTokens));
  }
  if (static_cast<int64_t>(s.pending.size()) > max_pending) {
    return invalid(absl::StrCat("pending holds ", s.pending.size(), " tokens; at most ",
                                max_pending, " are allowed (the server's --max_prompt_tokens)"));
  }
  for (size_t i = 0; i < s.pending.size(); ++i) {
    if (s.pending[i] < 0 || s.pending[i] >= vocab_size) {
      return invalid(absl::StrCat("pending[", i, "] = ", s.pending[i],
                                  " is outside the vocabulary; allowed: [0, ", vocab_size, ")"));
    }
  }
  const size_t width = model::DTypeSize(s.state_dtype);
  const size_t n = s.payload.size() / width;
  const model::StateLayout& l = s.layout;
  constexpr size_t kBlock = 4096;
  std::vector<float> values(kBlock);
  for (size_t start = 0; start < n; start += kBlock) {
    const size_t count = std::min(kBlock, n - start);
    model::ConvertToFloat(s.state_dtype, s.payload.data() + start * width, values.data(), count);
    for (size_t i = 0; i < count; ++i) {
      const float v = values[i];
      if (std::isfinite(v) && std::fabs(v) <= kMaxStateMagnitude) continue;
      const int64_t at = static_cast<int64_t>(start + i);
      const int64_t conv_total = l.n_layer * l.conv_elements_per_layer();
      const bool conv = at < conv_total;
      const int64_t per_layer = conv ? l.conv_elements_per_layer() : l.ssm_elements_per_layer();
      const int64_t layer = per_layer > 0 ? (conv ? at : at - conv_total) / per_layer : 0;
      return invalid(absl::StrCat("payload value ", at, " (the ", conv ? "conv" : "SSM",
                                  " state of layer ", layer, ") is ", v,
                                  "; allowed: finite, magnitude at most ", kMaxStateMagnitude));
    }
  }
  return absl::OkStatus();
}

namespace {

// "mamba2 model (24 layers; conv 1792 x 3, SSM 1536 x 128 per layer)".
std::string DescribeModel(model::ModelFamily family, const model::StateLayout& l) {
  return absl::StrCat(model::FamilyName(family), " model (", l.n_layer, " layers; conv ",
                      l.conv_channels, " x ", l.conv_history(), ", SSM ", l.ssm_channels, " x ",
                      l.ssm_state, " per layer)");
}

}  // namespace

absl::Status CheckSessionCompatible(const SessionSnapshot& s, const model::ModelConfig& config,
                                    const std::string& identity) {
  const model::StateLayout ours = model::StateLayoutOf(config);
  if (s.model_identity != identity || s.family != config.family || s.layout != ours) {
    return absl::FailedPreconditionError(absl::StrCat(
        "session state was exported from a ", DescribeModel(s.family, s.layout), ", identity ",
        s.model_identity, "; this server serves a ", DescribeModel(config.family, ours),
        ", identity ", identity, "; import it into a replica of that model"));
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
