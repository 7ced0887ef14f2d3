#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "engine/model/model_loader.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/model/temp_checkpoint.h"

namespace mamba {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

struct Shape {
  std::string name;
  int32_t n_layer;
  int32_t d_model;
};

TEST(SyntheticModelTest, PublicShapes) {
  EXPECT_THAT(model::SyntheticModelNames(),
              ElementsAre("tiny", "130m", "370m", "790m", "1.4b", "2.8b", "mamba2-tiny",
                          "mamba2-130m", "mamba2-370m", "mamba2-780m", "mamba2-1.3b",
                          "mamba2-2.7b", "codestral-7b", "falcon-mamba-tiny", "falcon-mamba-7b"));
  const std::vector<Shape> shapes = {{"130m", 24, 768},
                                     {"370m", 48, 1024},
                                     {"790m", 48, 1536},
                                     {"1.4b", 48, 2048},
                                     {"2.8b", 64, 2560}};
  for (const Shape& s : shapes) {
    SCOPED_TRACE(s.name);
    absl::StatusOr<model::ModelConfig> c = model::SyntheticConfig(s.name);
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_TRUE(c->Validate().ok());
    EXPECT_EQ(c->n_layer, s.n_layer);
    EXPECT_EQ(c->d_model, s.d_model);
    EXPECT_EQ(c->d_inner, 2 * s.d_model);
    EXPECT_EQ(c->dt_rank, (s.d_model + 15) / 16);
    EXPECT_EQ(c->d_state, 16);
    EXPECT_EQ(c->d_conv, 4);
    EXPECT_EQ(c->vocab_size, 50280);
    EXPECT_TRUE(c->tie_word_embeddings);
    EXPECT_TRUE(c->use_conv_bias);
    EXPECT_FALSE(c->use_bias);
  }
  // Parameter counts of the public checkpoints, as transformers reports them.
  EXPECT_EQ(model::SyntheticConfig("130m")->NumParameters(), 129135360);
  EXPECT_EQ(model::SyntheticConfig("2.8b")->NumParameters(), 2768345600);

  absl::StatusOr<model::ModelConfig> tiny = model::SyntheticConfig("tiny");
  ASSERT_TRUE(tiny.ok());
  EXPECT_EQ(tiny->n_layer, 4);
  EXPECT_EQ(tiny->d_model, 128);
  EXPECT_EQ(tiny->vocab_size, 257);
  EXPECT_EQ(tiny->eos_token_id, 256);
  EXPECT_EQ(tiny->d_state, 16);

  EXPECT_THAT(std::string(model::SyntheticConfig("7b").status().message()),
              HasSubstr("allowed: tiny, 130m"));
}

TEST(SyntheticModelTest, Mamba2AndFalconMambaShapes) {
  const std::vector<Shape> mamba2 = {{"mamba2-130m", 24, 768},
                                     {"mamba2-370m", 48, 1024},
                                     {"mamba2-780m", 48, 1536},
                                     {"mamba2-1.3b", 48, 2048},
                                     {"mamba2-2.7b", 64, 2560}};
  for (const Shape& s : mamba2) {
    SCOPED_TRACE(s.name);
    absl::StatusOr<model::ModelConfig> c = model::SyntheticConfig(s.name);
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_TRUE(c->Validate().ok());
    EXPECT_EQ(c->family, model::ModelFamily::kMamba2);
    EXPECT_EQ(c->n_layer, s.n_layer);
    EXPECT_EQ(c->d_model, s.d_model);
    EXPECT_EQ(c->n_heads * c->head_dim, 2 * s.d_model);
    EXPECT_EQ(c->head_dim, 64);
    EXPECT_EQ(c->n_groups, 1);
    EXPECT_EQ(c->d_state, 128);
    EXPECT_EQ(c->vocab_size, 50288);
  }
  // A mamba2-130m session is about 19 MB in fp32, Codestral's about 276 MB.
  EXPECT_EQ(model::StateLayoutOf(*model::SyntheticConfig("mamba2-130m")).elements() * 4,
            19390464);
  const model::ModelConfig codestral = *model::SyntheticConfig("codestral-7b");
  EXPECT_EQ(codestral.n_heads, 128);
  EXPECT_EQ(codestral.n_groups, 8);
  EXPECT_EQ(codestral.vocab_size, 32768);
  EXPECT_EQ(codestral.NumParameters(), 7285403648);
  EXPECT_EQ(model::StateLayoutOf(codestral).elements() * 4, 276299776);
  const model::ModelConfig falcon = *model::SyntheticConfig("falcon-mamba-7b");
  EXPECT_EQ(falcon.family, model::ModelFamily::kFalconMamba);
  EXPECT_EQ(falcon.NumParameters(), 7272665088);
  for (const char* tiny : {"mamba2-tiny", "falcon-mamba-tiny"}) {
    SCOPED_TRACE(tiny);
    const model::ModelConfig c = *model::SyntheticConfig(tiny);
    EXPECT_EQ(c.vocab_size, 257);
    EXPECT_EQ(c.eos_token_id, 256);
    EXPECT_EQ(c.n_layer, 4);
  }
  EXPECT_EQ(model::SyntheticConfig("mamba2-tiny")->n_groups, 2);
  // Weights for them: Mamba-2's per-head vectors are initialized like mamba_ssm's.
  const model::ModelConfig c = *model::SyntheticConfig("mamba2-tiny");
  absl::StatusOr<model::ModelWeights> w = model::MakeSyntheticWeights(c, 1, model::DType::kF32);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_TRUE(w->Validate(c, "synthetic").ok());
  const std::vector<float> a_log = w->layers[0].a_log.ToFloat();
  ASSERT_EQ(a_log.size(), 8u);
  for (float v : a_log) {
    EXPECT_GE(std::exp(v), 1.0f);
    EXPECT_LE(std::exp(v), 16.0f);
  }
  for (float v : w->layers[0].dt_bias.ToFloat()) {
    const double dt = std::log1p(std::exp(static_cast<double>(v)));  // softplus
    EXPECT_GE(dt, c.time_step_min * 0.999);
    EXPECT_LE(dt, c.time_step_max * 1.001);
  }
  for (float v : w->layers[0].gated_norm.ToFloat()) EXPECT_EQ(v, 1.0f);
}

struct Moments {
  double mean = 0, std = 0, min = 1e30, max = -1e30;
  int64_t zeros = 0;
};

Moments Measure(const model::TensorView& v) {
  Moments m;
  double sum = 0, sum2 = 0;
  for (int64_t i = 0; i < v.numel(); ++i) {
    const double x = v.At(i);
    sum += x;
    sum2 += x * x;
    m.min = std::min(m.min, x);
    m.max = std::max(m.max, x);
    m.zeros += x == 0;
  }
  m.mean = sum / v.numel();
  m.std = std::sqrt(sum2 / v.numel() - m.mean * m.mean);
  return m;
}

TEST(SyntheticModelTest, InitializedLikeRealMamba) {
  const model::ModelConfig c = *model::SyntheticConfig("tiny");
  absl::StatusOr<model::ModelWeights> w = model::MakeSyntheticWeights(c, 1, model::DType::kF32);
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_TRUE(w->Validate(c, "synthetic:tiny").ok());
  EXPECT_TRUE(w->lm_head_tied);
  EXPECT_EQ(w->lm_head.data, w->embedding.data);

  const Moments emb = Measure(w->embedding);
  EXPECT_NEAR(emb.mean, 0.0, 0.001);
  EXPECT_NEAR(emb.std, 0.02, 0.001);
  EXPECT_LT(emb.zeros, 3);
  EXPECT_GT(emb.max, 0.06);  // normal tails, not a uniform or a clipped band
  EXPECT_LT(emb.max, 0.02 * 4.5);

  for (size_t l = 0; l < w->layers.size(); ++l) {
    SCOPED_TRACE(l);
    const model::LayerWeights& L = w->layers[l];
    EXPECT_NEAR(Measure(L.in_proj).std, 0.02, 0.001);
    EXPECT_NEAR(Measure(L.x_proj).std, 0.02, 0.002);
    EXPECT_NEAR(Measure(L.out_proj).std, 0.02 / std::sqrt(4.0), 0.001);
    const double dt_bound = 1 / std::sqrt(static_cast<double>(c.dt_rank));
    const Moments dt_w = Measure(L.dt_proj);
    EXPECT_LE(dt_w.max, dt_bound);
    EXPECT_GE(dt_w.min, -dt_bound);
    EXPECT_NEAR(dt_w.std, dt_bound / std::sqrt(3.0), dt_bound * 0.1);  // uniform
    const Moments conv = Measure(L.conv);
    EXPECT_LE(conv.max, 0.5);
    EXPECT_GE(conv.min, -0.5);
    EXPECT_GT(conv.max, 0.4);
    EXPECT_NEAR(Measure(L.conv_bias).std, 0.5 / std::sqrt(3.0), 0.05);
    for (int64_t i = 0; i < L.a_log.numel(); i += 13) {
      ASSERT_FLOAT_EQ(L.a_log.At(i), std::log(static_cast<float>(i % c.d_state + 1)));
    }
    for (int64_t i = 0; i < c.d_inner; ++i) {
      ASSERT_EQ(L.d.At(i), 1.0f);
      const double dt = std::log1p(std::exp(static_cast<double>(L.dt_proj_bias.At(i))));
      ASSERT_GE(dt, c.time_step_min * 0.999);
      ASSERT_LE(dt, c.time_step_max * 1.001);
    }
    EXPECT_EQ(Measure(L.norm).min, 1.0);
    EXPECT_EQ(Measure(L.norm).max, 1.0);
  }
  EXPECT_EQ(Measure(w->norm_f).min, 1.0);
}

TEST(SyntheticModelTest, SameSeedSameBytesOtherSeedOtherBytes) {
  const model::ModelConfig c = *model::SyntheticConfig("tiny");
  auto a = model::MakeSyntheticWeights(c, 42, model::DType::kF32);
  auto b = model::MakeSyntheticWeights(c, 42, model::DType::kF32);
  auto other = model::MakeSyntheticWeights(c, 43, model::DType::kF32);
  ASSERT_TRUE(a.ok() && b.ok() && other.ok());
  const std::vector<model::NamedTensor> ta = testing::NamedTensors(c, *a);
  const std::vector<model::NamedTensor> tb = testing::NamedTensors(c, *b);
  const std::vector<model::NamedTensor> tother = testing::NamedTensors(c, *other);
  for (size_t i = 0; i < ta.size(); ++i) {
    EXPECT_EQ(testing::Bytes(ta[i].view), testing::Bytes(tb[i].view)) << ta[i].name;
    const bool random = !ta[i].name.ends_with("A_log") && !ta[i].name.ends_with(".D") &&
                        !ta[i].name.ends_with("norm.weight") &&
                        !ta[i].name.ends_with("norm_f.weight");
    if (random) {
      EXPECT_NE(testing::Bytes(ta[i].view), testing::Bytes(tother[i].view)) << ta[i].name;
    }
  }
  EXPECT_EQ(model::ModelIdentity(c, *a), model::ModelIdentity(c, *b));
  EXPECT_NE(model::ModelIdentity(c, *a), model::ModelIdentity(c, *other));
  // Layers do not repeat each other.
  EXPECT_NE(testing::Bytes(a->layers[0].in_proj), testing::Bytes(a->layers[1].in_proj));
}

TEST(SyntheticModelTest, HalfDtypesAreTheRoundedF32Values) {
  const model::ModelConfig c = *model::SyntheticConfig("tiny");
  auto f32 = model::MakeSyntheticWeights(c, 5, model::DType::kF32);
  auto f16 = model::MakeSyntheticWeights(c, 5, model::DType::kF16);
  auto bf16 = model::MakeSyntheticWeights(c, 5, model::DType::kBF16);
  ASSERT_TRUE(f32.ok() && f16.ok() && bf16.ok());
  EXPECT_EQ(f16->TotalBytes() * 2, f32->TotalBytes());
  const std::vector<model::NamedTensor> t32 = testing::NamedTensors(c, *f32);
  const std::vector<model::NamedTensor> t16 = testing::NamedTensors(c, *f16);
  const std::vector<model::NamedTensor> tb16 = testing::NamedTensors(c, *bf16);
  for (size_t i = 0; i < t32.size(); ++i) {
    ASSERT_EQ(t16[i].view.dtype, model::DType::kF16);
    for (int64_t e = 0; e < t32[i].view.numel(); e += 11) {
      const float x = t32[i].view.At(e);
      ASSERT_EQ(t16[i].view.At(e), model::HalfToFloat(model::FloatToHalf(x))) << t32[i].name;
      ASSERT_EQ(tb16[i].view.At(e), model::BFloat16ToFloat(model::FloatToBFloat16(x)))
          << t32[i].name;
    }
  }
}

TEST(SyntheticModelTest, UntiedAndBiasedConfigs) {
  model::ModelConfig c = testing::SmallConfig();
  c.tie_word_embeddings = false;
  c.use_bias = true;
  c.use_conv_bias = false;
  auto w = model::MakeSyntheticWeights(c, 9, model::DType::kBF16);
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_TRUE(w->Validate(c, "synthetic").ok());
  EXPECT_FALSE(w->lm_head_tied);
  EXPECT_NE(testing::Bytes(w->lm_head), testing::Bytes(w->embedding));
  EXPECT_GT(Measure(w->layers[0].in_proj_bias).std, 0.01);
  EXPECT_TRUE(w->layers[0].conv_bias.empty());
  EXPECT_EQ(model::MakeSyntheticWeights(model::ModelConfig{.d_model = 0}, 0, model::DType::kF32)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(SyntheticModelTest, LoadModelSynthetic) {
  absl::StatusOr<model::LoadedModel> tiny = model::LoadModel("synthetic:tiny");
  ASSERT_TRUE(tiny.ok()) << tiny.status();
  EXPECT_EQ(tiny->name, "synthetic:tiny");
  EXPECT_EQ(tiny->weights.MatrixDType(), model::DType::kF32);
  EXPECT_TRUE(tiny->tokenizer_path.empty());
  EXPECT_EQ(tiny->identity, model::ModelIdentity(tiny->config, tiny->weights));

  model::LoadOptions options;
  options.seed = 1;
  options.dtype = model::DType::kBF16;
  absl::StatusOr<model::LoadedModel> other = model::LoadModel("synthetic:tiny", options);
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(other->weights.MatrixDType(), model::DType::kBF16);
  EXPECT_NE(other->identity, tiny->identity);

  // Saving a synthetic model and loading it back gives the same model.
  testing::TempDir dir;
  ASSERT_TRUE(model::SaveCheckpoint(tiny->config, tiny->weights, dir.path()).ok());
  absl::StatusOr<model::LoadedModel> back = model::LoadModel(dir.path());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->identity, tiny->identity);
}

TEST(SyntheticModelTest, PublicShapeBuildsQuickly) {
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<model::LoadedModel> m = model::LoadModel("synthetic:130m");
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->weights.MatrixDType(), model::DType::kF16);
  EXPECT_EQ(m->weights.TotalBytes(), static_cast<size_t>(m->config.NumParameters()) * 2);
  ASSERT_TRUE(m->weights.Validate(m->config, "synthetic:130m").ok());
  std::printf("synthetic:130m (f16, %.0f MB) built and hashed in %.2f s\n",
              m->weights.TotalBytes() / 1e6, seconds);
  EXPECT_LT(seconds, 30.0);  // seconds, not minutes, even on a loaded CI machine
}

}  // namespace
}  // namespace mamba
