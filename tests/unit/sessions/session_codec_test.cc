#include "engine/sessions/session_codec.h"

#include <string>

#include "gtest/gtest.h"

namespace mamba {
namespace {

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
      sessions::DecodeSession(sessions::EncodeSession(s));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->model_identity, s.model_identity);
  EXPECT_EQ(back->tokens, 17);
  EXPECT_EQ(back->pending, s.pending);
  EXPECT_EQ(back->payload, s.payload);
  EXPECT_EQ(back->layout.ssm_state, 3);
}

TEST(SessionCodecTest, RejectsCorruption) {
  const std::string good = sessions::EncodeSession(Sample());
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
    absl::StatusOr<sessions::SessionSnapshot> got = sessions::DecodeSession(c.bytes);
    EXPECT_FALSE(got.ok()) << c.name;
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument) << c.name;
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
  EXPECT_NE(std::string(st.message()).find("different model"), std::string::npos);
  c.d_state = 4;
  EXPECT_EQ(sessions::CheckSessionCompatible(s, c, "model-abc").code(),
            absl::StatusCode::kFailedPrecondition);
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
