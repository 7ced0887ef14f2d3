#include "engine/sessions/session_codec.h"

#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace mamba {
namespace {

const sessions::SessionKeys& Keys() {
  static const sessions::SessionKeys* keys = new sessions::SessionKeys(
      sessions::SessionKeys::Parse("test-key-0123456789abcdef0123456789abcdef", "test").value());
  return *keys;
}

sessions::SessionSnapshot Sample() {
  sessions::SessionSnapshot s;
  s.model_identity = "model-abc";
  s.state_dtype = model::DType::kF32;
  s.layout = {/*n_layer=*/2, /*conv_channels=*/4, /*conv_width=*/4, /*ssm_channels=*/4,
              /*ssm_state=*/3};
  s.tokens = 17;
  s.pending = {5, 6};
  const size_t n = 2 * 4 * (3 + 3);
  s.payload.resize(n * 4);
  for (size_t i = 0; i < n; ++i) {
    const float v = 0.25f * static_cast<float>(i) - 3.0f;
    std::memcpy(&s.payload[i * 4], &v, 4);
  }
  return s;
}

TEST(SessionCodecTest, RoundTrip) {
  const sessions::SessionSnapshot s = Sample();
  absl::StatusOr<sessions::SessionSnapshot> back =
      sessions::DecodeSession(sessions::EncodeSession(s, Keys()), Keys());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->model_identity, s.model_identity);
  EXPECT_EQ(back->tokens, 17);
  EXPECT_EQ(back->pending, s.pending);
  EXPECT_EQ(back->payload, s.payload);
  EXPECT_EQ(back->layout.ssm_state, 3);
}

TEST(SessionCodecTest, RejectsCorruption) {
  const std::string good = sessions::EncodeSession(Sample(), Keys());
  struct Case {
    std::string name;
    std::string bytes;
  };
  std::string flipped = good;
  flipped[good.size() / 2] ^= 0x10;
  std::string bad_magic = good;
  bad_magic[0] = 'X';
  const std::vector<Case> cases = {
      {"empty", ""},
      {"truncated", good.substr(0, good.size() - 9)},
      {"flipped byte", flipped},
      {"bad magic", bad_magic},
      {"only magic", good.substr(0, 8)},
      {"extra bytes", good + "x"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<sessions::SessionSnapshot> got = sessions::DecodeSession(c.bytes, Keys());
    EXPECT_FALSE(got.ok()) << c.name;
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument) << c.name;
  }
}

// The bytes carry a keyed MAC: anyone can rebuild an unkeyed checksum over altered bytes, nobody
// can rebuild this one without the key.
TEST(SessionCodecTest, RefusesForgedAlteredAndForeignExports) {
  sessions::SessionSnapshot s = Sample();
  const std::string good = sessions::EncodeSession(s, Keys());
  // A state replaced with NaN, everything else kept, and a new MAC made without the key.
  sessions::SessionSnapshot poisoned = s;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (size_t i = 0; i < poisoned.payload.size(); i += 4)
    std::memcpy(&poisoned.payload[i], &nan, 4);
  absl::StatusOr<sessions::SessionKeys> attacker =
      sessions::SessionKeys::Parse("attacker-key-0123456789abcdef0123456789ab", "attacker");
  ASSERT_TRUE(attacker.ok());
  for (const std::string& bytes :
       {sessions::EncodeSession(poisoned, *attacker), good.substr(0, good.size() - 1) + "x"}) {
    absl::StatusOr<sessions::SessionSnapshot> got = sessions::DecodeSession(bytes, Keys());
    ASSERT_FALSE(got.ok());
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(std::string(got.status().message()).find("failed authentication"), std::string::npos)
        << got.status();
  }
  // A random per-process key accepts only its own exports.
  const sessions::SessionKeys random = sessions::SessionKeys::Random();
  EXPECT_TRUE(sessions::DecodeSession(sessions::EncodeSession(s, random), random).ok());
  EXPECT_FALSE(sessions::DecodeSession(sessions::EncodeSession(s, random), Keys()).ok());
  // Version 1 (an unkeyed checksum) is refused with a message saying so.
  std::string v1 = good;
  v1[8] = 1;
  absl::Status old = sessions::DecodeSession(v1, Keys()).status();
  EXPECT_EQ(old.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(old.message()).find("version 1"), std::string::npos) << old;
}

// Rotation: the first key signs, every key verifies.
TEST(SessionCodecTest, KeyFilesRotateAndRefuseWeakKeys) {
  absl::StatusOr<sessions::SessionKeys> old_only =
      sessions::SessionKeys::Parse("old-key-0123456789abcdef0123456789abcdef\n", "f");
  absl::StatusOr<sessions::SessionKeys> rotated = sessions::SessionKeys::Parse(
      "# new key first\n  new-key-0123456789abcdef0123456789abcdef  \n\n"
      "old-key-0123456789abcdef0123456789abcdef\n",
      "f");
  ASSERT_TRUE(old_only.ok() && rotated.ok());
  EXPECT_EQ(rotated->size(), 2u);
  const sessions::SessionSnapshot s = Sample();
  EXPECT_TRUE(sessions::DecodeSession(sessions::EncodeSession(s, *old_only), *rotated).ok());
  EXPECT_FALSE(sessions::DecodeSession(sessions::EncodeSession(s, *rotated), *old_only).ok());

  absl::Status weak = sessions::SessionKeys::Parse("a\nshort-key\n", "keys.txt").status();
  EXPECT_EQ(weak.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(weak.message()).find("keys.txt line 1"), std::string::npos) << weak;
  EXPECT_EQ(std::string(weak.message()).find("short-key"), std::string::npos) << "leaks the key";
  EXPECT_EQ(sessions::SessionKeys::Parse("# nothing\n", "f").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(sessions::SessionKeys::FromFile("/nonexistent/keys").status().code(),
            absl::StatusCode::kNotFound);
}

// What an import refuses after the MAC: counters and values out of range, each named.
TEST(SessionCodecTest, ImportValidationNamesTheField) {
  struct Row {
    const char* name;
    std::function<void(sessions::SessionSnapshot*)> mutate;
    const char* message;
  };
  auto fill = [](sessions::SessionSnapshot* s, size_t at, float v) {
    std::memcpy(&s->payload[at * 4], &v, 4);
  };
  const std::vector<Row> rows = {
      {"tokens INT64_MAX", [](auto* s) { s->tokens = std::numeric_limits<int64_t>::max(); },
       "tokens = "},
      {"negative tokens", [](auto* s) { s->tokens = -1; }, "tokens = -1"},
      {"too many pending", [](auto* s) { s->pending.assign(9, 1); }, "at most 8"},
      {"pending outside the vocabulary",
       [](auto* s) {
         s->pending = {1, 300};
       },
       "pending[1]"},
      {"NaN in a conv state", [&](auto* s) { fill(s, 3, std::numeric_limits<float>::quiet_NaN()); },
       "conv state of layer 0"},
      {"inf in an SSM state",
       [&](auto* s) { fill(s, 2 * 4 * 3 + 4 * 3 + 1, std::numeric_limits<float>::infinity()); },
       "SSM state of layer 1"},
      {"3e38", [&](auto* s) { fill(s, 0, 3e38f); }, "magnitude at most"},
  };
  EXPECT_TRUE(
      sessions::ValidateSessionSnapshot(Sample(), /*vocab_size=*/257, /*max_pending=*/8).ok());
  for (const Row& row : rows) {
    SCOPED_TRACE(row.name);
    sessions::SessionSnapshot s = Sample();
    row.mutate(&s);
    absl::Status st = sessions::ValidateSessionSnapshot(s, 257, 8);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(std::string(st.message()).find(row.message), std::string::npos) << st;
  }
}

TEST(SessionCodecTest, RefusesAnotherModel) {
  const sessions::SessionSnapshot s = Sample();
  model::ModelConfig c;
  c.n_layer = 2;
  c.d_inner = 4;
  c.d_conv = 4;
  c.d_state = 3;
  EXPECT_TRUE(sessions::CheckSessionCompatible(s, c, "model-abc").ok());
  absl::Status st = sessions::CheckSessionCompatible(s, c, "model-xyz");
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  // Both models are named: family, state layout and identity.
  EXPECT_NE(std::string(st.message()).find("exported from a mamba1 model (2 layers; conv 4 x 3, "
                                           "SSM 4 x 3 per layer), identity model-abc"),
            std::string::npos)
      << st;
  EXPECT_NE(std::string(st.message()).find("identity model-xyz"), std::string::npos) << st;
  c.d_state = 4;
  EXPECT_EQ(sessions::CheckSessionCompatible(s, c, "model-abc").code(),
            absl::StatusCode::kFailedPrecondition);
  // Another family, even with the same identity string, is another model.
  c.d_state = 3;
  c.family = model::ModelFamily::kFalconMamba;
  st = sessions::CheckSessionCompatible(s, c, "model-abc");
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(std::string(st.message()).find("serves a falcon_mamba model"), std::string::npos)
      << st;
}

TEST(SessionCodecTest, Mamba2LayoutsRoundTrip) {
  // Conv and SSM states over different channels, as Mamba-2's are.
  sessions::SessionSnapshot s = Sample();
  s.family = model::ModelFamily::kMamba2;
  s.layout = {/*n_layer=*/2, /*conv_channels=*/6, /*conv_width=*/3, /*ssm_channels=*/4,
              /*ssm_state=*/5};
  s.payload.assign(static_cast<size_t>(s.layout.elements()) * 4, '\0');
  absl::StatusOr<sessions::SessionSnapshot> back =
      sessions::DecodeSession(sessions::EncodeSession(s, Keys()), Keys());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->family, model::ModelFamily::kMamba2);
  EXPECT_EQ(back->layout, s.layout);
  model::ModelConfig c;
  c.family = model::ModelFamily::kMamba2;
  c.n_layer = 2;
  c.d_conv = 3;
  c.d_state = 5;
  c.n_heads = 2;
  c.head_dim = 2;  // ssm rows 4
  c.n_groups = 1;  // conv channels 4 + 2 * 1 * 5 = 14: not this state's 6
  EXPECT_EQ(sessions::CheckSessionCompatible(*back, c, "model-abc").code(),
            absl::StatusCode::kFailedPrecondition);
}

// Exports of the previous format version (Mamba-1 only) still import.
TEST(SessionCodecTest, ReadsVersion2) {
  const sessions::SessionSnapshot s = Sample();
  std::string v2("MAMBASES", 8);
  auto put32 = [&v2](uint32_t v) { v2.append(reinterpret_cast<const char*>(&v), 4); };
  put32(2);
  put32(static_cast<uint32_t>(s.model_identity.size()));
  v2 += s.model_identity;
  v2.push_back(static_cast<char>(s.state_dtype));
  v2.append(3, '\0');
  for (uint32_t d : {2u, 4u, 4u, 3u}) put32(d);  // n_layer, channels, conv width, d_state
  const int64_t tokens = s.tokens;
  v2.append(reinterpret_cast<const char*>(&tokens), 8);
  put32(static_cast<uint32_t>(s.pending.size()));
  for (int32_t id : s.pending) v2.append(reinterpret_cast<const char*>(&id), 4);
  const uint64_t len = s.payload.size();
  v2.append(reinterpret_cast<const char*>(&len), 8);
  v2 += s.payload;
  v2 += Keys().Sign(v2);
  absl::StatusOr<sessions::SessionSnapshot> back = sessions::DecodeSession(v2, Keys());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->family, model::ModelFamily::kMamba1);
  EXPECT_EQ(back->layout, s.layout);
  EXPECT_EQ(back->payload, s.payload);
  EXPECT_EQ(back->pending, s.pending);
}

TEST(SessionCodecTest, ConvertsStateDtype) {
  sessions::SessionSnapshot s = Sample();
  const std::string f32 = s.payload;
  ASSERT_TRUE(sessions::ConvertSessionPayload(&s, model::DType::kBF16).ok());
  EXPECT_EQ(s.payload.size(), f32.size() / 2);
  ASSERT_TRUE(sessions::ConvertSessionPayload(&s, model::DType::kF32).ok());
  EXPECT_EQ(s.payload, f32);  // the sample values are exact in bf16
}

}  // namespace
}  // namespace mamba
