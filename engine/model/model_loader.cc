#include "engine/model/model_loader.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/json_nesting.h"
#include "common/status_macros.h"
#include "engine/model/safetensors.h"
#include "nlohmann/json.hpp"

namespace mamba::model {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

constexpr char kSyntheticPrefix[] = "synthetic:";
constexpr char kSingleFile[] = "model.safetensors";
constexpr char kIndexFile[] = "model.safetensors.index.json";
constexpr size_t kHashBlock = size_t{4} << 20;

// ---- XXH64 ----------------------------------------------------------------------------------

constexpr uint64_t kP1 = 0x9E3779B185EBCA87ull;
constexpr uint64_t kP2 = 0xC2B2AE3D27D4EB4Full;
constexpr uint64_t kP3 = 0x165667B19E3779F9ull;
constexpr uint64_t kP4 = 0x85EBCA77C2B2AE63ull;
constexpr uint64_t kP5 = 0x27D4EB2F165667C5ull;

inline uint64_t Rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
inline uint64_t Read64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;  // x86-64 and aarch64 Linux are little-endian, as XXH64 reads
}
inline uint32_t Read32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline uint64_t Round(uint64_t acc, uint64_t input) {
  acc += input * kP2;
  acc = Rotl(acc, 31);
  return acc * kP1;
}
inline uint64_t MergeRound(uint64_t acc, uint64_t val) {
  acc ^= Round(0, val);
  return acc * kP1 + kP4;
}

// ---- checkpoint reading -------------------------------------------------------------------------

std::string ConfigEcho(const ModelConfig& c) {
  if (c.family == ModelFamily::kMamba2) {
    return absl::StrFormat(
        "(config: mamba2, hidden_size %d, intermediate_size %d, num_heads %d, head_dim %d, "
        "n_groups %d, state_size %d, conv_kernel %d, vocab_size %d)",
        c.d_model, c.d_inner, c.n_heads, c.head_dim, c.n_groups, c.d_state, c.d_conv,
        c.vocab_size);
  }
  return absl::StrFormat(
      "(config: %s, hidden_size %d, intermediate_size %d, state_size %d, time_step_rank %d, "
      "conv_kernel %d, vocab_size %d)",
      std::string(FamilyName(c.family)), c.d_model, c.d_inner, c.d_state, c.dt_rank, c.d_conv,
      c.vocab_size);
}

// Where each stored tensor is: its file, and the header entry.
struct Located {
  const SafetensorsFile* file;
  const SafetensorsFile::Entry* entry;
};

struct OpenedWeights {
  std::vector<std::shared_ptr<SafetensorsFile>> files;
  std::map<std::string, Located> tensors;
  std::string description;  // "model.safetensors" or "3 shards of model.safetensors.index.json"
};

absl::Status AddFile(std::shared_ptr<SafetensorsFile> file, OpenedWeights* out) {
  for (const auto& [name, entry] : file->entries()) {
    auto [it, inserted] = out->tensors.emplace(name, Located{file.get(), &entry});
    if (!inserted) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' is stored twice: in ",
                                                     it->second.file->path(), " and ",
                                                     file->path()));
    }
  }
  out->files.push_back(std::move(file));
  return absl::OkStatus();
}

absl::StatusOr<OpenedWeights> OpenSharded(const fs::path& dir) {
  const std::string index_path = (dir / kIndexFile).string();
  std::ifstream in(index_path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(index_path, ": cannot open"));
  std::stringstream text;
  text << in.rdbuf();
  if (!common::JsonNestingWithin(text.str())) {
    return absl::DataLossError(absl::StrCat(index_path, ": arrays or objects nested more than ",
                                            common::kMaxJsonNesting, " levels deep"));
  }
  Json j;
  try {
    j = Json::parse(text.str());
  } catch (const Json::exception& e) {
    return absl::DataLossError(absl::StrCat(index_path, ": not valid JSON (", e.what(), ")"));
  }
  if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object()) {
    return absl::DataLossError(
        absl::StrCat(index_path, ": expected an object with a \"weight_map\" object"));
  }
  std::map<std::string, std::string> weight_map;
  std::set<std::string> shards;
  for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
    if (!it->is_string()) {
      return absl::DataLossError(absl::StrCat(index_path, ": weight_map entry '", it.key(),
                                              "' must name a shard file, got ", it->dump()));
    }
    const std::string shard = it->get<std::string>();
    // Shards live beside the index; a path elsewhere is refused rather than followed.
    if (shard.empty() || shard.find('/') != std::string::npos || shard == "." || shard == "..") {
      return absl::InvalidArgumentError(
          absl::StrCat(index_path, ": weight_map entry '", it.key(), "' names shard '", shard,
                       "'; allowed: a file name in the checkpoint folder"));
    }
    weight_map[it.key()] = shard;
    shards.insert(shard);
  }
  if (shards.empty()) {
    return absl::DataLossError(absl::StrCat(index_path, ": weight_map is empty"));
  }
  OpenedWeights out;
  std::map<std::string, const SafetensorsFile*> by_shard;
  for (const std::string& shard : shards) {
    auto file = SafetensorsFile::Open((dir / shard).string());
    if (!file.ok()) {
      if (absl::IsNotFound(file.status())) {
        return absl::NotFoundError(absl::StrCat(index_path, " lists shard '", shard,
                                                "', which is missing: ", file.status().message()));
      }
      return file.status();
    }
    by_shard[shard] = file->get();
    MAMBA_RETURN_IF_ERROR(AddFile(*std::move(file), &out));
  }
  for (const auto& [name, shard] : weight_map) {
    auto it = out.tensors.find(name);
    if (it == out.tensors.end() || it->second.file != by_shard[shard]) {
      return absl::DataLossError(absl::StrCat(index_path, ": weight_map puts tensor '", name,
                                              "' in ", shard, ", which does not hold it"));
    }
  }
  out.description = absl::StrCat(shards.size(), " shards listed in ", kIndexFile);
  return out;
}

absl::StatusOr<OpenedWeights> OpenWeights(const fs::path& dir) {
  std::error_code ec;
  if (fs::exists(dir / kSingleFile, ec)) {
    MAMBA_ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open((dir / kSingleFile).string()));
    OpenedWeights out;
    MAMBA_RETURN_IF_ERROR(AddFile(std::move(file), &out));
    out.description = kSingleFile;
    return out;
  }
  if (fs::exists(dir / kIndexFile, ec)) return OpenSharded(dir);
  std::string hint;
  if (fs::exists(dir / "pytorch_model.bin", ec)) {
    hint = "; pytorch_model.bin checkpoints are not supported: convert them to safetensors";
  }
  return absl::NotFoundError(
      absl::StrCat(dir.string(), ": no ", kSingleFile, " or ", kIndexFile, hint));
}

// Why an unexpected tensor under "backbone." contradicts the config, for the error message.
std::string WhyUnexpected(const std::string& name, const ModelConfig& c) {
  std::vector<std::string> parts = absl::StrSplit(name, '.');
  int layer = -1;
  if (parts.size() > 2 && parts[1] == "layers" && absl::SimpleAtoi(parts[2], &layer) &&
      layer >= c.n_layer) {
    return absl::StrCat("the config has num_hidden_layers = ", c.n_layer);
  }
  if (absl::EndsWith(name, "in_proj.bias") || absl::EndsWith(name, "out_proj.bias")) {
    return "the config has use_bias = false";
  }
  if (absl::EndsWith(name, "conv1d.bias")) return "the config has use_conv_bias = false";
  if (c.family == ModelFamily::kMamba2 && absl::EndsWith(name, "mixer.norm.weight")) {
    return "the config has no gated norm (rms_norm = false)";
  }
  return absl::StrCat("it is not part of a ", FamilyName(c.family), " checkpoint");
}

bool SameTensor(const TensorView& a, const TensorView& b) {
  return a.dtype == b.dtype && a.shape == b.shape &&
         (a.data == b.data || std::memcmp(a.data, b.data, a.nbytes()) == 0);
}

absl::StatusOr<LoadedModel> LoadCheckpoint(const std::string& spec, const LoadOptions& options) {
  std::error_code ec;
  fs::path dir(spec);
  const fs::file_status st = fs::status(dir, ec);
  if (!fs::exists(st)) {
    return absl::NotFoundError(
        absl::StrCat("model '", spec,
                     "': no such file or directory; expected a checkpoint folder (config.json "
                     "and model.safetensors) or synthetic:NAME with NAME one of ",
                     absl::StrJoin(SyntheticModelNames(), ", ")));
  }
  if (!fs::is_directory(st)) dir = dir.parent_path().empty() ? fs::path(".") : dir.parent_path();

  const fs::path config_path = dir / "config.json";
  if (!fs::exists(config_path, ec)) {
    return absl::NotFoundError(
        absl::StrCat(dir.string(), ": no config.json; a checkpoint folder holds config.json and ",
                     kSingleFile, " (or ", kIndexFile, " and its shards)"));
  }
  MAMBA_ASSIGN_OR_RETURN(ModelConfig config, LoadHfConfig(config_path.string()));
  MAMBA_ASSIGN_OR_RETURN(OpenedWeights opened, OpenWeights(dir));

  LoadedModel model;
  ModelWeights& w = model.weights;
  w.ResizeFor(config);
  std::set<std::string> used;
  absl::Status status;
  w.ForEachMutableTensor(config, [&](const TensorSpec& spec_, TensorView& view) {
    if (!status.ok()) return;
    auto it = opened.tensors.find(spec_.name);
    if (it == opened.tensors.end() && spec_.name == "backbone.embeddings.weight") {
      it = opened.tensors.find("backbone.embedding.weight");
    }
    if (it == opened.tensors.end()) {
      status = absl::InvalidArgumentError(
          absl::StrCat(dir.string(), ": tensor '", spec_.name, "' is missing from ",
                       opened.description, "; expected shape ", ShapeString(spec_.shape), " = ",
                       spec_.shape_rule, " ", ConfigEcho(config)));
      return;
    }
    const SafetensorsFile& file = *it->second.file;
    if (it->second.entry->shape != spec_.shape) {
      status = absl::InvalidArgumentError(
          absl::StrCat(file.path(), ": tensor '", it->first, "' has shape ",
                       ShapeString(it->second.entry->shape), "; expected ",
                       ShapeString(spec_.shape), " = ", spec_.shape_rule, " ", ConfigEcho(config)));
      return;
    }
    auto v = file.Get(it->first);
    if (!v.ok()) {
      status = v.status();
      return;
    }
    view = *std::move(v);
    if (reinterpret_cast<uintptr_t>(view.data) % DTypeSize(view.dtype) != 0) {
      // Odd-sized half tensors before it: copy so every view is aligned for its dtype.
      void* copy = w.AllocateOwned(view.nbytes());
      if (copy == nullptr) {
        status = absl::ResourceExhaustedError(
            absl::StrCat(file.path(), ": cannot allocate a copy of tensor '", it->first, "'"));
        return;
      }
      std::memcpy(copy, view.data, view.nbytes());
      view.data = copy;
    }
    used.insert(it->first);
  });
  MAMBA_RETURN_IF_ERROR(status);

  if (config.tie_word_embeddings) {
    w.lm_head = w.embedding;
    w.lm_head_tied = true;
    if (auto it = opened.tensors.find("lm_head.weight"); it != opened.tensors.end()) {
      used.insert(it->first);
      auto stored = it->second.file->Get(it->first);
      if (stored.ok() && !SameTensor(*stored, w.embedding)) {
        model.warnings.push_back(
            absl::StrCat(it->second.file->path(),
                         ": lm_head.weight ignored: tie_word_embeddings is true, so "
                         "the output layer is backbone.embeddings.weight (as in transformers)"));
      }
    }
  } else {
    w.lm_head_tied = false;
  }
  for (const auto& [name, located] : opened.tensors) {
    if (used.count(name)) continue;
    if (absl::StartsWith(name, "backbone.")) {
      return absl::InvalidArgumentError(absl::StrCat(located.file->path(), ": unexpected tensor '",
                                                     name, "': ", WhyUnexpected(name, config), " ",
                                                     ConfigEcho(config)));
    }
    model.warnings.push_back(
        absl::StrCat(located.file->path(), ": ignored unexpected tensor '", name, "'"));
  }
  for (auto& file : opened.files) w.Retain(file);
  MAMBA_RETURN_IF_ERROR(w.Validate(config, dir.string()));

  if (options.dtype.has_value()) {
    MAMBA_ASSIGN_OR_RETURN(w, w.ConvertTo(*options.dtype));
  }
  fs::path normal = dir.lexically_normal();
  if (normal.filename().empty()) normal = normal.parent_path();
  model.name = normal.filename().string();
  if (model.name.empty() || model.name == ".") {
    model.name = fs::absolute(dir, ec).lexically_normal().filename().string();
  }
  model.source = dir.string();
  model.config = config;
  model.identity = ModelIdentity(config, w);
  if (fs::is_regular_file(dir / "tokenizer.json", ec)) {
    model.tokenizer_path = (dir / "tokenizer.json").string();
  }
  return model;
}

absl::StatusOr<LoadedModel> LoadSynthetic(const std::string& spec, const LoadOptions& options) {
  const std::string name = spec.substr(std::strlen(kSyntheticPrefix));
  MAMBA_ASSIGN_OR_RETURN(ModelConfig config, SyntheticConfig(name));
  const DType dtype =
      options.dtype.value_or(absl::EndsWith(name, "tiny") ? DType::kF32 : DType::kF16);
  LoadedModel model;
  MAMBA_ASSIGN_OR_RETURN(model.weights, MakeSyntheticWeights(config, options.seed, dtype));
  model.name = spec;
  model.source = spec;
  model.config = config;
  model.identity = ModelIdentity(config, model.weights);
  return model;
}

}  // namespace

uint64_t Xxh64(const void* data, size_t len, uint64_t seed) {
  const auto* p = static_cast<const uint8_t*>(data);
  const uint8_t* const end = p + len;
  uint64_t h;
  if (len >= 32) {
    uint64_t v1 = seed + kP1 + kP2, v2 = seed + kP2, v3 = seed, v4 = seed - kP1;
    const uint8_t* const limit = end - 32;
    do {
      v1 = Round(v1, Read64(p));
      v2 = Round(v2, Read64(p + 8));
      v3 = Round(v3, Read64(p + 16));
      v4 = Round(v4, Read64(p + 24));
      p += 32;
    } while (p <= limit);
    h = Rotl(v1, 1) + Rotl(v2, 7) + Rotl(v3, 12) + Rotl(v4, 18);
    h = MergeRound(h, v1);
    h = MergeRound(h, v2);
    h = MergeRound(h, v3);
    h = MergeRound(h, v4);
  } else {
    h = seed + kP5;
  }
  h += static_cast<uint64_t>(len);
  while (p + 8 <= end) {
    h ^= Round(0, Read64(p));
    h = Rotl(h, 27) * kP1 + kP4;
    p += 8;
  }
  if (p + 4 <= end) {
    h ^= static_cast<uint64_t>(Read32(p)) * kP1;
    h = Rotl(h, 23) * kP2 + kP3;
    p += 4;
  }
  while (p < end) {
    h ^= static_cast<uint64_t>(*p) * kP5;
    h = Rotl(h, 11) * kP1;
    ++p;
  }
  h ^= h >> 33;
  h *= kP2;
  h ^= h >> 29;
  h *= kP3;
  h ^= h >> 32;
  return h;
}

std::string ModelIdentity(const ModelConfig& config, const ModelWeights& weights) {
  struct Tensor {
    const TensorSpec* spec;
    TensorView view;
    size_t first_block;
  };
  std::vector<TensorSpec> specs;
  std::vector<Tensor> tensors;
  size_t blocks = 0;
  weights.ForEachTensor(config, [&](const TensorSpec& spec, const TensorView& view) {
    specs.push_back(spec);
    tensors.push_back({nullptr, view, blocks});
    blocks += std::max<size_t>(1, (view.nbytes() + kHashBlock - 1) / kHashBlock);
  });
  for (size_t i = 0; i < tensors.size(); ++i) tensors[i].spec = &specs[i];

  std::vector<uint64_t> block_hash(blocks);
  std::vector<std::pair<size_t, size_t>> jobs;  // (tensor, block within it)
  for (size_t t = 0; t < tensors.size(); ++t) {
    const size_t n =
        (t + 1 < tensors.size() ? tensors[t + 1].first_block : blocks) - tensors[t].first_block;
    for (size_t b = 0; b < n; ++b) jobs.push_back({t, b});
  }
  ParallelFor(static_cast<int64_t>(jobs.size()), [&](int64_t j) {
    const auto [t, b] = jobs[static_cast<size_t>(j)];
    const TensorView& v = tensors[t].view;
    const size_t begin = b * kHashBlock;
    const size_t len = v.empty() ? 0 : std::min(kHashBlock, v.nbytes() - begin);
    block_hash[tensors[t].first_block + b] =
        len == 0 ? Xxh64(nullptr, 0) : Xxh64(static_cast<const uint8_t*>(v.data) + begin, len);
  });

  std::string manifest = "mamba-serve model identity v1\n";
  manifest += ToHfConfigJson(config);
  for (size_t t = 0; t < tensors.size(); ++t) {
    const TensorView& v = tensors[t].view;
    absl::StrAppend(&manifest, tensors[t].spec->name, " ", std::string(DTypeName(v.dtype)), " ",
                    ShapeString(v.shape), " ", v.nbytes(), "\n");
    const size_t end = t + 1 < tensors.size() ? tensors[t + 1].first_block : blocks;
    manifest.append(reinterpret_cast<const char*>(&block_hash[tensors[t].first_block]),
                    (end - tensors[t].first_block) * sizeof(uint64_t));
  }
  return absl::StrFormat("%016x", Xxh64(manifest.data(), manifest.size()));
}

absl::StatusOr<LoadedModel> LoadModel(const std::string& spec, const LoadOptions& options) {
  if (spec.empty()) {
    return absl::InvalidArgumentError(
        "empty model spec; expected a checkpoint folder or synthetic:NAME");
  }
  if (absl::StartsWith(spec, kSyntheticPrefix)) return LoadSynthetic(spec, options);
  return LoadCheckpoint(spec, options);
}

absl::Status SaveCheckpoint(const ModelConfig& config, const ModelWeights& weights,
                            const std::string& dir, size_t max_shard_bytes) {
  MAMBA_RETURN_IF_ERROR(config.Validate());
  MAMBA_RETURN_IF_ERROR(weights.Validate(config, dir));
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat(dir, ": cannot create the folder (", ec.message(), ")"));
  }
  {
    std::ofstream out(fs::path(dir) / "config.json", std::ios::trunc);
    out << ToHfConfigJson(config);
    if (!out) return absl::DataLossError(absl::StrCat(dir, "/config.json: write failed"));
  }
  std::vector<NamedTensor> tensors;
  size_t total = 0;
  weights.ForEachTensor(config, [&](const TensorSpec& spec, const TensorView& view) {
    tensors.push_back({spec.name, view});
    total += view.nbytes();
  });
  const std::map<std::string, std::string> metadata = {{"format", "pt"}};
  if (max_shard_bytes == 0 || total <= max_shard_bytes) {
    fs::remove(fs::path(dir) / kIndexFile, ec);
    return WriteSafetensors((fs::path(dir) / kSingleFile).string(), tensors, metadata);
  }
  std::vector<std::vector<NamedTensor>> shards(1);
  size_t in_shard = 0;
  for (NamedTensor& t : tensors) {
    if (in_shard > 0 && in_shard + t.view.nbytes() > max_shard_bytes) {
      shards.emplace_back();
      in_shard = 0;
    }
    in_shard += t.view.nbytes();
    shards.back().push_back(std::move(t));
  }
  Json weight_map = Json::object();
  for (size_t s = 0; s < shards.size(); ++s) {
    const std::string file =
        absl::StrFormat("model-%05d-of-%05d.safetensors", s + 1, shards.size());
    MAMBA_RETURN_IF_ERROR(WriteSafetensors((fs::path(dir) / file).string(), shards[s], metadata));
    for (const NamedTensor& t : shards[s]) weight_map[t.name] = file;
  }
  fs::remove(fs::path(dir) / kSingleFile, ec);
  const Json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
  std::ofstream out(fs::path(dir) / kIndexFile, std::ios::trunc);
  out << index.dump(2) << "\n";
  if (!out) return absl::DataLossError(absl::StrCat(dir, "/", kIndexFile, ": write failed"));
  return absl::OkStatus();
}

}  // namespace mamba::model
