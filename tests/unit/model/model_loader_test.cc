#include "engine/model/model_loader.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/model/temp_checkpoint.h"

namespace mamba {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing::TempDir;

// A small valid checkpoint in a temp folder, written from synthetic weights.
struct SmallCheckpoint {
  SmallCheckpoint() : config(testing::SmallConfig()) {
    auto w = model::MakeSyntheticWeights(config, 7, model::DType::kF32);
    EXPECT_TRUE(w.ok()) << w.status();
    if (w.ok()) weights = *std::move(w);
    EXPECT_TRUE(model::SaveCheckpoint(config, weights, dir.path()).ok());
  }

  // Rewrites model.safetensors from `tensors`.
  void WriteWeights(const std::vector<model::NamedTensor>& tensors) const {
    ASSERT_TRUE(model::WriteSafetensors(dir.File("model.safetensors"), tensors).ok());
  }
  std::vector<model::NamedTensor> Tensors() const { return testing::NamedTensors(config, weights); }
  std::vector<model::NamedTensor> Without(const std::string& name) const {
    std::vector<model::NamedTensor> out;
    for (const model::NamedTensor& t : Tensors()) {
      if (t.name != name) out.push_back(t);
    }
    return out;
  }
  void WriteConfig(const model::ModelConfig& c) const {
    testing::WriteText(dir.File("config.json"), model::ToHfConfigJson(c));
  }
  // Rewrites the checkpoint as shards of at most 20000 bytes (several for SmallConfig) and
  // returns their file names in order.
  std::vector<std::string> Shard() const {
    EXPECT_TRUE(model::SaveCheckpoint(config, weights, dir.path(), 20000).ok());
    std::vector<std::string> shards;
    for (const auto& e : fs::directory_iterator(dir.path())) {
      if (e.path().extension() == ".safetensors") shards.push_back(e.path().filename().string());
    }
    std::sort(shards.begin(), shards.end());
    return shards;
  }
  // Applies `edit` to the JSON header of model.safetensors, keeping the data section: for damage
  // the writer refuses to produce.
  void EditHeader(const std::function<std::string(std::string)>& edit) const {
    const std::string path = dir.File("model.safetensors");
    const std::string raw = testing::ReadText(path);
    uint64_t len = 0;
    std::memcpy(&len, raw.data(), 8);
    testing::WriteRawSafetensors(path, edit(raw.substr(8, len)), raw.substr(8 + len));
  }

  TempDir dir;
  model::ModelConfig config;
  model::ModelWeights weights;
};

class CheckpointTest : public ::testing::Test {
 protected:
  SmallCheckpoint ck_;
  // Shorthands for the tests below.
  const TempDir& dir_ = ck_.dir;
  model::ModelConfig& config_ = ck_.config;
  model::ModelWeights& weights_ = ck_.weights;
  void WriteWeights(const std::vector<model::NamedTensor>& t) { ck_.WriteWeights(t); }
  std::vector<model::NamedTensor> Tensors() const { return ck_.Tensors(); }
};

TEST_F(CheckpointTest, LoadsWhatWasSaved) {
  absl::StatusOr<model::LoadedModel> m = model::LoadModel(dir_.path());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->config, config_);
  EXPECT_EQ(m->source, dir_.path());
  EXPECT_EQ(m->name, fs::path(dir_.path()).filename().string());
  EXPECT_TRUE(m->tokenizer_path.empty());
  EXPECT_TRUE(m->warnings.empty());
  EXPECT_TRUE(m->weights.lm_head_tied);
  EXPECT_EQ(m->weights.lm_head.data, m->weights.embedding.data);
  EXPECT_EQ(m->weights.TotalBytes(), static_cast<size_t>(config_.NumParameters()) * 4);
  const std::vector<model::NamedTensor> want = Tensors();
  const std::vector<model::NamedTensor> got = testing::NamedTensors(m->config, m->weights);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].name, want[i].name);
    EXPECT_EQ(testing::Bytes(got[i].view), testing::Bytes(want[i].view)) << got[i].name;
  }
  EXPECT_EQ(m->identity, model::ModelIdentity(config_, weights_));
  EXPECT_EQ(m->identity.size(), 16u);

  // A path to a file inside the folder names the folder; a tokenizer beside it is found.
  testing::WriteText(dir_.File("tokenizer.json"), "{}");
  m = model::LoadModel(dir_.File("config.json"));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->tokenizer_path, dir_.File("tokenizer.json"));
}

TEST_F(CheckpointTest, ShardedEqualsSingleFile) {
  absl::StatusOr<model::LoadedModel> single = model::LoadModel(dir_.path());
  ASSERT_TRUE(single.ok()) << single.status();
  TempDir sharded;
  ASSERT_TRUE(model::SaveCheckpoint(config_, weights_, sharded.path(), 20000).ok());
  EXPECT_FALSE(fs::exists(sharded.File("model.safetensors")));
  EXPECT_TRUE(fs::exists(sharded.File("model.safetensors.index.json")));
  int shards = 0;
  for (const auto& e : fs::directory_iterator(sharded.path())) {
    shards += e.path().extension() == ".safetensors";
  }
  EXPECT_GE(shards, 3);
  absl::StatusOr<model::LoadedModel> m = model::LoadModel(sharded.path());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->identity, single->identity);
}

TEST_F(CheckpointTest, UntiedUsesLmHead) {
  config_.tie_word_embeddings = false;
  auto w = model::MakeSyntheticWeights(config_, 3, model::DType::kF16);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE(model::SaveCheckpoint(config_, *w, dir_.path()).ok());
  absl::StatusOr<model::LoadedModel> m = model::LoadModel(dir_.path());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_FALSE(m->weights.lm_head_tied);
  EXPECT_NE(m->weights.lm_head.data, m->weights.embedding.data);
  EXPECT_EQ(testing::Bytes(m->weights.lm_head), testing::Bytes(w->lm_head));
  EXPECT_NE(testing::Bytes(m->weights.lm_head), testing::Bytes(m->weights.embedding));
}

TEST_F(CheckpointTest, TiedModelIgnoresStoredLmHead) {
  std::vector<model::NamedTensor> t = Tensors();
  t.push_back({"lm_head.weight", weights_.embedding});  // identical copy: silently tied
  WriteWeights(t);
  absl::StatusOr<model::LoadedModel> m = model::LoadModel(dir_.path());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_TRUE(m->warnings.empty());

  t.back().view = weights_.layers[0].in_proj;  // different bytes (and shape): ignored, warned
  WriteWeights(t);
  m = model::LoadModel(dir_.path());
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_EQ(m->warnings.size(), 1u);
  EXPECT_THAT(m->warnings[0], HasSubstr("lm_head.weight ignored"));
  EXPECT_EQ(m->weights.lm_head.data, m->weights.embedding.data);
}

TEST_F(CheckpointTest, ExtraTensorOutsideBackboneIsAWarning) {
  std::vector<model::NamedTensor> t = Tensors();
  const float x = 1;
  t.push_back({"some_adapter.scale", {model::DType::kF32, {1}, &x}});
  WriteWeights(t);
  absl::StatusOr<model::LoadedModel> m = model::LoadModel(dir_.path());
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_EQ(m->warnings.size(), 1u);
  EXPECT_THAT(m->warnings[0], HasSubstr("'some_adapter.scale'"));
}

TEST_F(CheckpointTest, OriginalEmbeddingNameIsAccepted) {
  std::vector<model::NamedTensor> t = Tensors();
  t[0].name = "backbone.embedding.weight";
  WriteWeights(t);
  absl::StatusOr<model::LoadedModel> m = model::LoadModel(dir_.path());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(testing::Bytes(m->weights.embedding), testing::Bytes(weights_.embedding));
}

TEST_F(CheckpointTest, MisalignedTensorsAreCopiedAligned) {
  std::vector<model::NamedTensor> t = Tensors();
  const uint16_t odd = model::FloatToHalf(1.0f);
  t.insert(t.begin(), {"odd.f16", {model::DType::kF16, {1}, &odd}});  // shifts the rest by 2 bytes
  WriteWeights(t);
  absl::StatusOr<model::LoadedModel> m = model::LoadModel(dir_.path());
  ASSERT_TRUE(m.ok()) << m.status();
  m->weights.ForEachTensor(
      m->config, [&](const model::TensorSpec& spec, const model::TensorView& v) {
        EXPECT_EQ(reinterpret_cast<uintptr_t>(v.data) % model::DTypeSize(v.dtype), 0u) << spec.name;
      });
  EXPECT_EQ(m->identity, model::ModelIdentity(config_, weights_));
}

TEST_F(CheckpointTest, DtypeConversionAtLoad) {
  for (model::DType to : {model::DType::kF16, model::DType::kBF16, model::DType::kF32}) {
    SCOPED_TRACE(std::string(model::DTypeName(to)));
    model::LoadOptions options;
    options.dtype = to;
    absl::StatusOr<model::LoadedModel> m = model::LoadModel(dir_.path(), options);
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_EQ(m->weights.MatrixDType(), to);
    EXPECT_EQ(m->weights.TotalBytes(),
              static_cast<size_t>(config_.NumParameters()) * model::DTypeSize(to));
    EXPECT_EQ(m->weights.lm_head.data, m->weights.embedding.data) << "tie survives conversion";
    ASSERT_TRUE(m->weights.Validate(m->config, "converted").ok());
    const std::vector<model::NamedTensor> src = Tensors();
    const std::vector<model::NamedTensor> got = testing::NamedTensors(m->config, m->weights);
    for (size_t i = 0; i < got.size(); ++i) {
      ASSERT_EQ(got[i].view.dtype, to) << got[i].name;
      for (int64_t e = 0; e < got[i].view.numel(); e += 7) {
        const float x = src[i].view.At(e);
        const float want = to == model::DType::kF16 ? model::HalfToFloat(model::FloatToHalf(x))
                           : to == model::DType::kBF16
                               ? model::BFloat16ToFloat(model::FloatToBFloat16(x))
                               : x;
        ASSERT_EQ(got[i].view.At(e), want) << got[i].name << "[" << e << "]";
      }
    }
    if (to == model::DType::kF32) {
      EXPECT_EQ(m->identity, model::ModelIdentity(config_, weights_));
    } else {
      EXPECT_NE(m->identity, model::ModelIdentity(config_, weights_));
    }
  }
}

TEST_F(CheckpointTest, MixedDtypesStayAsStoredUnlessConverted) {
  auto half = weights_.ConvertTo(model::DType::kF16);
  ASSERT_TRUE(half.ok());
  std::vector<model::NamedTensor> t = testing::NamedTensors(config_, *half);
  for (model::NamedTensor& n : t) {  // A_log and D in f32, as some half checkpoints keep them
    if (n.name.ends_with("A_log") || n.name.ends_with(".D")) {
      for (const model::NamedTensor& f : Tensors()) {
        if (f.name == n.name) n.view = f.view;
      }
    }
  }
  WriteWeights(t);
  absl::StatusOr<model::LoadedModel> m = model::LoadModel(dir_.path());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->weights.MatrixDType(), model::DType::kF16);
  EXPECT_EQ(m->weights.layers[1].a_log.dtype, model::DType::kF32);
  EXPECT_EQ(m->weights.layers[1].d.dtype, model::DType::kF32);
  model::LoadOptions options;
  options.dtype = model::DType::kF16;
  m = model::LoadModel(dir_.path(), options);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->weights.layers[1].a_log.dtype, model::DType::kF16);
  EXPECT_EQ(m->identity, model::ModelIdentity(config_, *half));
}

TEST_F(CheckpointTest, IdentityCoversEveryByte) {
  const std::string base = model::ModelIdentity(config_, weights_);
  EXPECT_EQ(base, model::ModelIdentity(config_, weights_));
  // Flip one element of the last tensor in a private copy.
  std::vector<float> d(static_cast<size_t>(weights_.layers[1].d.numel()));
  std::memcpy(d.data(), weights_.layers[1].d.data, d.size() * 4);
  d.back() = std::nextafter(d.back(), 2.0f);
  const model::TensorView original = weights_.layers[1].d;
  weights_.layers[1].d.data = d.data();
  EXPECT_NE(model::ModelIdentity(config_, weights_), base);
  weights_.layers[1].d = original;
  model::ModelConfig other = config_;
  other.eos_token_id = 1;
  EXPECT_NE(model::ModelIdentity(other, weights_), base);
}

TEST(Xxh64Test, KnownValues) {
  EXPECT_EQ(model::Xxh64("", 0), 0xEF46DB3751D8E999ull);
  const std::string text(1000, 'x');
  EXPECT_EQ(model::Xxh64(text.data(), text.size()), model::Xxh64(text.data(), text.size()));
  EXPECT_NE(model::Xxh64(text.data(), text.size()), model::Xxh64(text.data(), text.size() - 1));
  EXPECT_NE(model::Xxh64(text.data(), text.size(), 1), model::Xxh64(text.data(), text.size(), 2));
}

// ---- the corruption table --------------------------------------------------------------------

struct CorruptCase {
  std::string name;
  std::function<void(SmallCheckpoint& ck)> damage;  // applied to a valid checkpoint
  absl::StatusCode code;
  std::vector<std::string> fragments;  // each must appear in the message
  std::string spec = "";               // "" = the checkpoint folder; "/x" appends to it
};

std::vector<CorruptCase> CorruptCases() {
  const auto kInvalid = absl::StatusCode::kInvalidArgument;
  const auto kDataLoss = absl::StatusCode::kDataLoss;
  const auto kNotFound = absl::StatusCode::kNotFound;
  auto with_config = [](std::function<void(model::ModelConfig&)> edit) {
    return [edit](SmallCheckpoint& ck) {
      model::ModelConfig k = ck.config;
      edit(k);
      ck.WriteConfig(k);
    };
  };
  return {
      {"missing folder",
       [](SmallCheckpoint&) {},
       kNotFound,
       {"no such file or directory", "synthetic:NAME"},
       "/nope"},
      {"no config.json",
       [](SmallCheckpoint& ck) { fs::remove(ck.dir.File("config.json")); },
       kNotFound,
       {"no config.json"}},
      {"config not JSON",
       [](SmallCheckpoint& ck) {
         testing::WriteText(ck.dir.File("config.json"), "{\"hidden_size\": ");
       },
       kInvalid,
       {"config.json", "not valid JSON"}},
      {"config field of the wrong type",
       [](SmallCheckpoint& ck) {
         testing::WriteText(ck.dir.File("config.json"), R"({"hidden_size": "32"})");
       },
       kInvalid,
       {"config.json", "'hidden_size'", "must be an integer"}},
      {"config inconsistent in itself",
       with_config([](model::ModelConfig& k) { k.eos_token_id = k.vocab_size; }),
       kInvalid,
       {"config.json", "eos_token_id is 50", "vocab_size"}},
      {"no weights",
       [](SmallCheckpoint& ck) { fs::remove(ck.dir.File("model.safetensors")); },
       kNotFound,
       {"no model.safetensors or model.safetensors.index.json"}},
      {"empty weights file",
       [](SmallCheckpoint& ck) { testing::WriteText(ck.dir.File("model.safetensors"), ""); },
       kDataLoss,
       {"model.safetensors", "file is 0 bytes"}},
      {"truncated file",
       [](SmallCheckpoint& ck) {
         const std::string path = ck.dir.File("model.safetensors");
         fs::resize_file(path, fs::file_size(path) - 100);
       },
       kDataLoss,
       {"model.safetensors", "'backbone.norm_f.weight'", "truncated"}},
      {"header length past the end",
       [](SmallCheckpoint& ck) {
         const std::string path = ck.dir.File("model.safetensors");
         std::string raw = testing::ReadText(path);
         raw[6] = 1;  // length += 2^48
         testing::WriteText(path, raw);
       },
       kDataLoss,
       {"model.safetensors", "header length", "runs past the end of the file"}},
      {"malformed header JSON",
       [](SmallCheckpoint& ck) {
         ck.EditHeader([](std::string h) {
           return absl::StrReplaceAll(h, {{"\"dtype\"", "dtype"}});
         });
       },
       kDataLoss,
       {"model.safetensors", "not valid JSON"}},
      {"header not an object",
       [](SmallCheckpoint& ck) { ck.EditHeader([](std::string) { return std::string("[1]"); }); },
       kDataLoss,
       {"model.safetensors", "must be a JSON object"}},
      {"unknown dtype",
       [](SmallCheckpoint& ck) {
         ck.EditHeader([](std::string h) {
           const size_t at = h.find("\"F32\"", h.find("backbone.layers.1.mixer.D"));
           return h.replace(at, 5, "\"I32\"");
         });
       },
       kInvalid,
       {"model.safetensors", "'backbone.layers.1.mixer.D'", "'I32'", "F32, F16, BF16"}},
      {"overlapping offsets",
       [](SmallCheckpoint& ck) {
         ck.EditHeader([](std::string h) {
           // Point norm_f at the start of the data section, inside the embedding.
           const size_t at = h.find("\"data_offsets\"", h.find("backbone.norm_f.weight"));
           return h.replace(at, h.find(']', at) + 1 - at, "\"data_offsets\":[0,128]");
         });
       },
       kDataLoss,
       {"model.safetensors", "overlaps"}},
      {"offsets out of range",
       [](SmallCheckpoint& ck) {
         ck.EditHeader([](std::string h) {
           const size_t at = h.find("\"data_offsets\"", h.find("backbone.norm_f.weight"));
           return h.replace(at, h.find(']', at) + 1 - at, "\"data_offsets\":[1000000,1000128]");
         });
       },
       kDataLoss,
       {"'backbone.norm_f.weight'", "run past the end of the data section"}},
      {"shape disagrees with offsets",
       [](SmallCheckpoint& ck) {
         ck.EditHeader([](std::string h) {
           const size_t at = h.find("\"shape\"", h.find("backbone.norm_f.weight"));
           return h.replace(at, h.find(']', at) + 1 - at, "\"shape\":[33]");
         });
       },
       kDataLoss,
       {"'backbone.norm_f.weight'", "needs 132 bytes", "hold 128"}},
      {"missing tensor",
       [](SmallCheckpoint& ck) {
         ck.WriteWeights(ck.Without("backbone.layers.1.mixer.x_proj.weight"));
       },
       kInvalid,
       {"'backbone.layers.1.mixer.x_proj.weight' is missing", "expected shape [10, 64]",
        "time_step_rank + 2*state_size"}},
      {"misshapen tensor",
       [](SmallCheckpoint& ck) {
         std::vector<model::NamedTensor> v = ck.Tensors();
         for (model::NamedTensor& n : v) {
           if (n.name == "backbone.layers.0.mixer.A_log") n.view.shape = {4, 64};
         }
         ck.WriteWeights(v);
       },
       kInvalid,
       {"model.safetensors", "'backbone.layers.0.mixer.A_log' has shape [4, 64]",
        "expected [64, 4]", "[intermediate_size, state_size]"}},
      {"config state_size disagrees with the weights",
       with_config([](model::ModelConfig& k) { k.d_state = 8; }),
       kInvalid,
       {"x_proj.weight' has shape [10, 64]", "expected [18, 64]", "state_size 8"}},
      {"config has more layers than the weights",
       with_config([](model::ModelConfig& k) { k.n_layer = 3; }),
       kInvalid,
       {"'backbone.layers.2.norm.weight' is missing"}},
      {"config has fewer layers than the weights",
       with_config([](model::ModelConfig& k) { k.n_layer = 1; }),
       kInvalid,
       {"unexpected tensor 'backbone.layers.1.", "num_hidden_layers = 1"}},
      {"bias present but use_bias false",
       [](SmallCheckpoint& ck) {
         std::vector<model::NamedTensor> v = ck.Tensors();
         v.push_back({"backbone.layers.0.mixer.out_proj.bias", ck.weights.layers[0].norm});
         ck.WriteWeights(v);
       },
       kInvalid,
       {"unexpected tensor 'backbone.layers.0.mixer.out_proj.bias'", "use_bias = false"}},
      {"use_bias true but no biases",
       with_config([](model::ModelConfig& k) { k.use_bias = true; }),
       kInvalid,
       {"'backbone.layers.0.mixer.in_proj.bias' is missing", "(use_bias)"}},
      {"conv bias missing while use_conv_bias",
       [](SmallCheckpoint& ck) {
         ck.WriteWeights(ck.Without("backbone.layers.0.mixer.conv1d.bias"));
       },
       kInvalid,
       {"'backbone.layers.0.mixer.conv1d.bias' is missing", "use_conv_bias"}},
      {"untied config without lm_head.weight",
       with_config([](model::ModelConfig& k) { k.tie_word_embeddings = false; }),
       kInvalid,
       {"'lm_head.weight' is missing", "expected shape [50, 32]"}},
      {"index lists a missing shard",
       [](SmallCheckpoint& ck) { fs::remove(ck.dir.File(ck.Shard()[1])); },
       kNotFound,
       {"model.safetensors.index.json lists shard 'model-00002-of-", "missing"}},
      {"index points at the wrong shard",
       [](SmallCheckpoint& ck) {
         ck.Shard();
         const std::string index = ck.dir.File("model.safetensors.index.json");
         std::string text = testing::ReadText(index);
         const size_t at = text.find("model-0000", text.find("backbone.norm_f.weight"));
         testing::WriteText(index, text.replace(at, 11, "model-00001"));
       },
       kDataLoss,
       {"weight_map puts tensor 'backbone.norm_f.weight'", "does not hold it"}},
      {"index escapes the folder",
       [](SmallCheckpoint& ck) {
         fs::remove(ck.dir.File("model.safetensors"));
         testing::WriteText(ck.dir.File("model.safetensors.index.json"),
                            R"({"weight_map": {"backbone.norm_f.weight": "../x.safetensors"}})");
       },
       kInvalid,
       {"'../x.safetensors'", "allowed: a file name in the checkpoint folder"}},
      {"index not JSON",
       [](SmallCheckpoint& ck) {
         fs::remove(ck.dir.File("model.safetensors"));
         testing::WriteText(ck.dir.File("model.safetensors.index.json"), "{weight_map");
       },
       kDataLoss,
       {"model.safetensors.index.json", "not valid JSON"}},
      // Found by fuzzing: copying or printing a JSON value recurses once per level, so deeply
      // nested JSON in any checkpoint file overflowed the stack instead of giving an error.
      {"config nested too deep",
       [](SmallCheckpoint& ck) {
         testing::WriteText(
             ck.dir.File("config.json"),
             R"({"eos_token_id": )" + std::string(200000, '[') + std::string(200000, ']') + "}");
       },
       kInvalid,
       {"config.json", "nested more than 64 levels deep"}},
      {"safetensors header nested too deep",
       [](SmallCheckpoint& ck) {
         testing::WriteRawSafetensors(
             ck.dir.File("model.safetensors"),
             R"({"x": )" + std::string(200000, '[') + std::string(200000, ']') + "}", "");
       },
       kDataLoss,
       {"model.safetensors", "nests arrays or objects more than 64 levels deep"}},
      {"index nested too deep",
       [](SmallCheckpoint& ck) {
         fs::remove(ck.dir.File("model.safetensors"));
         testing::WriteText(ck.dir.File("model.safetensors.index.json"),
                            R"({"weight_map": {"backbone.norm_f.weight": )" +
                                std::string(200000, '[') + std::string(200000, ']') + "}}");
       },
       kDataLoss,
       {"model.safetensors.index.json", "nested more than 64 levels deep"}},
      {"tensor stored in two shards",
       [](SmallCheckpoint& ck) {
         const std::vector<std::string> shards = ck.Shard();
         ASSERT_TRUE(model::WriteSafetensors(ck.dir.File(shards.back()), ck.Tensors()).ok());
       },
       kInvalid,
       {"is stored twice"}},
      {"unknown synthetic model",
       [](SmallCheckpoint&) {},
       kInvalid,
       {"unknown synthetic model 'huge'", "tiny, 130m, 370m, 790m, 1.4b, 2.8b"},
       "synthetic:huge"},
  };
}

TEST(CorruptCheckpointTable, EachGivesItsError) {
  const std::vector<CorruptCase> cases = CorruptCases();
  ASSERT_GE(cases.size(), 10u);
  for (const CorruptCase& c : cases) {
    SCOPED_TRACE(c.name);
    SmallCheckpoint ck;
    ASSERT_TRUE(model::LoadModel(ck.dir.path()).ok()) << "the undamaged checkpoint loads";
    c.damage(ck);
    const std::string spec =
        absl::StartsWith(c.spec, "synthetic:") ? c.spec : ck.dir.path() + c.spec;
    absl::StatusOr<model::LoadedModel> m = model::LoadModel(spec);
    ASSERT_FALSE(m.ok()) << "loaded a damaged checkpoint";
    EXPECT_EQ(m.status().code(), c.code) << m.status();
    const std::string message(m.status().message());
    for (const std::string& f : c.fragments) EXPECT_THAT(message, HasSubstr(f));
    // The messages are what an operator sees; print them for review.
    std::printf("%-46s %s: %s\n", c.name.c_str(), absl::StatusCodeToString(c.code).c_str(),
                absl::StrReplaceAll(message, {{ck.dir.path(), "<dir>"}}).c_str());
  }
}

}  // namespace
}  // namespace mamba
