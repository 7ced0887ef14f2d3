// Test fixtures for model loading: a temporary folder that removes itself, small configs, and
// writers for raw (possibly corrupt) safetensors files.
#pragma once

#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/model/model_config.h"
#include "engine/model/model_loader.h"
#include "engine/model/safetensors.h"
#include "gtest/gtest.h"

namespace mamba::testing {

// A fresh folder under the test temp dir, removed (with its contents) on destruction.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = std::filesystem::path(::testing::TempDir()) /
            absl::StrCat("mamba_model_test_", getpid(), "_", counter++);
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string path() const { return path_.string(); }
  std::string File(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// A small config that exercises every shape rule: d_inner != expand * d_model is not used here,
// but dt_rank, d_state and d_conv all differ from each other and from the defaults.
inline model::ModelConfig SmallConfig() {
  model::ModelConfig c;
  c.d_model = 32;
  c.n_layer = 2;
  c.d_state = 4;
  c.expand = 2;
  c.d_inner = 64;
  c.d_conv = 3;
  c.dt_rank = 2;
  c.vocab_size = 50;
  c.bos_token_id = c.eos_token_id = c.pad_token_id = 0;
  return c;
}

inline void WriteText(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

inline std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Writes a safetensors file from a raw header and data section, with the given length prefix
// (default: the header's real length).
inline void WriteRawSafetensors(const std::string& path, const std::string& header,
                                const std::string& data, int64_t length_prefix = -1) {
  const uint64_t len = length_prefix < 0 ? header.size() : static_cast<uint64_t>(length_prefix);
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((len >> (8 * i)) & 0xff);
  WriteText(path, bytes + header + data);
}

// The tensors of `weights` in checkpoint order, named as in a HF checkpoint.
inline std::vector<model::NamedTensor> NamedTensors(const model::ModelConfig& config,
                                                    const model::ModelWeights& weights) {
  std::vector<model::NamedTensor> out;
  weights.ForEachTensor(config, [&](const model::TensorSpec& spec, const model::TensorView& view) {
    out.push_back({spec.name, view});
  });
  return out;
}

// A checkpoint of synthetic:tiny, untied, whose embedding row for `token` is +inf, written to
// `dir`: any sequence fed that token gets NaN activations, a NaN state and NaN logits (a fault of
// that sequence alone; the output head stays finite for the others). `dtype` f32 or f16.
inline absl::Status WritePoisonedCheckpoint(const std::string& dir, int32_t token,
                                            model::DType dtype = model::DType::kF32) {
  model::ModelConfig config = model::SyntheticConfig("tiny").value();
  config.tie_word_embeddings = false;
  absl::StatusOr<model::ModelWeights> weights =
      model::MakeSyntheticWeights(config, /*seed=*/7, dtype);
  if (!weights.ok()) return weights.status();
  uint8_t* row = const_cast<uint8_t*>(static_cast<const uint8_t*>(weights->embedding.data)) +
                 int64_t{token} * config.d_model * model::DTypeSize(dtype);
  for (int i = 0; i < config.d_model; ++i) {
    if (dtype == model::DType::kF32) {
      const float inf = std::numeric_limits<float>::infinity();
      std::memcpy(row + i * 4, &inf, 4);
    } else {
      const uint16_t inf = dtype == model::DType::kF16 ? 0x7C00 : 0x7F80;
      std::memcpy(row + i * 2, &inf, 2);
    }
  }
  return model::SaveCheckpoint(config, *weights, dir);
}

// Bytes of a view, for comparisons.
inline std::string Bytes(const model::TensorView& v) {
  return std::string(static_cast<const char*>(v.data), v.nbytes());
}

}  // namespace mamba::testing
