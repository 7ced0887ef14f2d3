#include "engine/model/model_weights.h"

#include <atomic>
#include <cstring>
#include <string>
#include <vector>

#include "engine/model/model_loader.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/model/temp_checkpoint.h"

namespace mamba {
namespace {

using ::testing::HasSubstr;

// Every bit pattern class: random patterns (NaNs with payloads, infinities, subnormals) plus the
// rounding edge cases, so the vectorized conversion must match the scalar one bit for bit.
std::vector<uint32_t> FloatPatterns() {
  std::vector<uint32_t> bits = {0x00000000u, 0x80000000u, 0x7F800000u, 0xFF800000u, 0x7FC00000u,
                                0x7F800001u, 0xFFBFFFFFu, 0x33000000u, 0x33000001u, 0x387FE000u,
                                0x38800000u, 0x477FE000u, 0x477FF000u, 0x477FEFFFu, 0x3F800000u,
                                0x3F801000u, 0x3F803000u, 0x00000001u, 0x007FFFFFu};
  uint64_t x = 12345;
  for (int i = 0; i < 20000; ++i) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    bits.push_back(static_cast<uint32_t>(x >> 32));
  }
  return bits;
}

model::ModelWeights OneTensor(model::DType dtype, const void* data, int64_t n) {
  model::ModelWeights w;
  w.embedding = {dtype, {n}, data};
  w.lm_head = w.embedding;
  return w;
}

TEST(ModelWeightsTest, ConvertToIsBitExact) {
  const std::vector<uint32_t> f32 = FloatPatterns();
  const int64_t n = static_cast<int64_t>(f32.size());
  auto half = OneTensor(model::DType::kF32, f32.data(), n).ConvertTo(model::DType::kF16);
  auto bf16 = OneTensor(model::DType::kF32, f32.data(), n).ConvertTo(model::DType::kBF16);
  ASSERT_TRUE(half.ok() && bf16.ok());
  EXPECT_EQ(half->lm_head.data, half->embedding.data);
  const auto* h = static_cast<const uint16_t*>(half->embedding.data);
  const auto* b = static_cast<const uint16_t*>(bf16->embedding.data);
  for (int64_t i = 0; i < n; ++i) {
    float x;
    std::memcpy(&x, &f32[i], 4);
    ASSERT_EQ(h[i], model::FloatToHalf(x)) << std::hex << f32[i];
    ASSERT_EQ(b[i], model::FloatToBFloat16(x)) << std::hex << f32[i];
  }

  std::vector<uint16_t> f16(65536);
  for (int i = 0; i < 65536; ++i) f16[i] = static_cast<uint16_t>(i);
  auto wide = OneTensor(model::DType::kF16, f16.data(), 65536).ConvertTo(model::DType::kF32);
  auto to_bf16 = OneTensor(model::DType::kF16, f16.data(), 65536).ConvertTo(model::DType::kBF16);
  ASSERT_TRUE(wide.ok() && to_bf16.ok());
  for (int i = 0; i < 65536; ++i) {
    const float want = model::HalfToFloat(f16[i]);
    float got;
    std::memcpy(&got, static_cast<const float*>(wide->embedding.data) + i, 4);
    ASSERT_EQ(std::memcmp(&got, &want, 4), 0) << std::hex << i;
    ASSERT_EQ(static_cast<const uint16_t*>(to_bf16->embedding.data)[i],
              model::FloatToBFloat16(want));
  }
}

TEST(ModelWeightsTest, ConvertToSameDtypeSharesMemory) {
  const model::ModelConfig c = testing::SmallConfig();
  auto w = model::MakeSyntheticWeights(c, 1, model::DType::kBF16);
  ASSERT_TRUE(w.ok());
  auto same = w->ConvertTo(model::DType::kBF16);
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(same->layers[1].in_proj.data, w->layers[1].in_proj.data);
  model::ModelWeights moved = *std::move(w);  // the copy keeps the storage alive on its own
  moved = model::ModelWeights();
  EXPECT_EQ(same->layers[1].d.At(3), 1.0f);
}

TEST(ModelWeightsTest, TotalBytesCountsTiedHeadOnce) {
  model::ModelConfig c = testing::SmallConfig();
  auto tied = model::MakeSyntheticWeights(c, 1, model::DType::kF32);
  c.tie_word_embeddings = false;
  auto untied = model::MakeSyntheticWeights(c, 1, model::DType::kF32);
  ASSERT_TRUE(tied.ok() && untied.ok());
  EXPECT_EQ(untied->TotalBytes() - tied->TotalBytes(), static_cast<size_t>(50 * 32 * 4));
  EXPECT_EQ(tied->MatrixDType(), model::DType::kF32);
  EXPECT_EQ(model::ModelWeights().MatrixDType(), model::DType::kF32);
}

TEST(ModelWeightsTest, ValidateNamesTheTensor) {
  const model::ModelConfig c = testing::SmallConfig();
  auto w = model::MakeSyntheticWeights(c, 1, model::DType::kF32);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE(w->Validate(c, "src").ok());

  w->layers[1].dt_proj.shape = {64, 3};
  absl::Status s = w->Validate(c, "src");
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("src: tensor 'backbone.layers.1.mixer.dt_proj.weight' has shape [64, 3]; "
                        "expected [64, 2]"));
  w->layers[1].dt_proj.shape = {64, 2};

  const model::TensorView bias = w->layers[0].norm;
  w->layers[0].out_proj_bias = bias;
  EXPECT_THAT(std::string(w->Validate(c, "src").message()), HasSubstr("use_bias = false"));
  w->layers[0].out_proj_bias = model::TensorView();

  w->lm_head = w->layers[0].in_proj;
  EXPECT_THAT(std::string(w->Validate(c, "src").message()), HasSubstr("must be tied"));
  w->lm_head = w->embedding;

  w->layers.pop_back();
  EXPECT_THAT(std::string(w->Validate(c, "src").message()), HasSubstr("1 layers; config has 2"));
}

TEST(ModelWeightsTest, CheckpointTensorsFollowTheConfig) {
  model::ModelConfig c = testing::SmallConfig();
  std::vector<model::TensorSpec> specs = model::CheckpointTensors(c);
  EXPECT_EQ(specs.size(), 2u + 2 * 10);  // 10 per layer with a conv bias; tied head
  EXPECT_EQ(specs.front().name, "backbone.embeddings.weight");
  EXPECT_EQ(specs.back().name, "backbone.norm_f.weight");
  c.use_bias = true;
  c.tie_word_embeddings = false;
  specs = model::CheckpointTensors(c);
  EXPECT_EQ(specs.size(), 3u + 2 * 12);  // + in_proj.bias, out_proj.bias; lm_head
  EXPECT_EQ(specs.back().name, "lm_head.weight");
  EXPECT_EQ(specs.back().shape, (std::vector<int64_t>{50, 32}));
}

TEST(ParallelForTest, EveryIndexExactlyOnce) {
  for (int threads : {0, 1, 2, 7}) {
    for (int64_t n : {0, 1, 5, 1000}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      model::ParallelFor(
          n, [&](int64_t i) { hits[static_cast<size_t>(i)]++; }, threads);
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1);
    }
  }
}

}  // namespace
}  // namespace mamba
