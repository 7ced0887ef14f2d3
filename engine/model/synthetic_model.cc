// Synthetic models: the public Mamba-1, Mamba-2 and FalconMamba shapes with weights drawn from a
// seed, so that benchmarks, demos and tests need no download. Declared in model_loader.h.
#include <cmath>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "engine/model/model_loader.h"

namespace mamba::model {
namespace {

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;
// Elements per generation job; a multiple of 4 (one 64-bit draw yields four 16-bit indices).
constexpr int64_t kBlock = int64_t{1} << 20;
constexpr int kLevels = 1 << 16;

// The SplitMix64 output function: a bijective mixer whose outputs at key + i * kGolden are the
// SplitMix64 sequence, so any element's draw is computed directly from its index.
inline uint64_t Mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBull;
  x ^= x >> 31;
  return x;
}
inline uint64_t Draw(uint64_t key, uint64_t i) { return Mix64(key + (i + 1) * kGolden); }
inline double Unit(uint64_t r) { return static_cast<double>(r >> 11) * 0x1.0p-53; }

// A stream key per (seed, tensor name): a tensor's values do not depend on which other tensors
// exist, so tiny and 2.8b with one seed share nothing by accident but stay reproducible.
uint64_t StreamKey(uint64_t seed, const std::string& name) {
  uint64_t h = 0xCBF29CE484222325ull;  // FNV-1a
  for (unsigned char c : name) h = (h ^ c) * 0x100000001B3ull;
  return Mix64(Mix64(seed ^ 0x6D616D6261ull) ^ h);
}

// Standard normal quantiles at (k + 0.5) / 65536: a 16-bit draw indexes an exact quantile, which
// is cheaper than Box-Muller by an order of magnitude and as good for weights.
const std::vector<double>& NormalQuantiles() {
  static const std::vector<double>* table = [] {
    auto* t = new std::vector<double>(kLevels);
    for (int k = kLevels / 2; k < kLevels; ++k) {
      const double p = (k + 0.5) / kLevels;  // > 0.5
      // Abramowitz & Stegun 26.2.23 as a start, then Newton on Phi(x) = p.
      const double q = 1 - p;
      const double s = std::sqrt(-2 * std::log(q));
      double x = s - (2.515517 + 0.802853 * s + 0.010328 * s * s) /
                         (1 + 1.432788 * s + 0.189269 * s * s + 0.001308 * s * s * s);
      for (int it = 0; it < 4; ++it) {
        const double cdf = 0.5 * std::erfc(-x / std::sqrt(2.0));
        const double pdf = std::exp(-0.5 * x * x) / std::sqrt(2 * M_PI);
        x -= (cdf - p) / pdf;
      }
      (*t)[k] = x;
      (*t)[kLevels - 1 - k] = -x;
    }
    return t;
  }();
  return *table;
}

enum class Init { kNormal, kUniform, kOnes, kALog, kDtBias };

struct Job {
  TensorView* view;
  void* data;
  Init init;
  double scale;  // std (normal) or bound (uniform)
  uint64_t key;
  std::vector<uint8_t> table;  // kLevels values in the target dtype (normal, uniform)
};

Init InitOf(const std::string& name, const ModelConfig& c, double* scale) {
  *scale = 0.02;
  if (absl::EndsWith(name, "norm.weight") || absl::EndsWith(name, "norm_f.weight") ||
      absl::EndsWith(name, ".D")) {
    return Init::kOnes;
  }
  if (absl::EndsWith(name, "A_log")) return Init::kALog;
  if (absl::EndsWith(name, "dt_proj.bias") || absl::EndsWith(name, "dt_bias")) {
    return Init::kDtBias;
  }
  if (absl::EndsWith(name, "dt_proj.weight")) {
    *scale = 1.0 / std::sqrt(static_cast<double>(c.dt_rank));
    return Init::kUniform;
  }
  if (absl::StrContains(name, "conv1d.")) {
    *scale = 1.0 / std::sqrt(static_cast<double>(c.d_conv));
    return Init::kUniform;
  }
  if (absl::EndsWith(name, "out_proj.weight")) {
    *scale = 0.02 / std::sqrt(static_cast<double>(c.n_layer));
  }
  return Init::kNormal;
}

void Store(DType dtype, float value, void* data, int64_t i) {
  ConvertFromFloat(dtype, &value, static_cast<uint8_t*>(data) + i * DTypeSize(dtype), 1);
}

void BuildTable(Job& job, DType dtype) {
  std::vector<float> values(kLevels);
  const std::vector<double>& normal = NormalQuantiles();
  for (int k = 0; k < kLevels; ++k) {
    values[k] = static_cast<float>(job.init == Init::kNormal
                                       ? job.scale * normal[k]
                                       : job.scale * ((k + 0.5) / kLevels * 2.0 - 1.0));
  }
  job.table.resize(static_cast<size_t>(kLevels) * DTypeSize(dtype));
  ConvertFromFloat(dtype, values.data(), job.table.data(), kLevels);
}

template <typename T>
void FillFromTable(const T* table, uint64_t key, T* out, int64_t first, int64_t n) {
  int64_t i = first;
  const int64_t end = first + n;
  for (; i + 4 <= end; i += 4) {
    const uint64_t r = Draw(key, static_cast<uint64_t>(i / 4));
    out[i] = table[r & 0xFFFF];
    out[i + 1] = table[(r >> 16) & 0xFFFF];
    out[i + 2] = table[(r >> 32) & 0xFFFF];
    out[i + 3] = table[r >> 48];
  }
  if (i < end) {  // the tensor's last, partial group of four
    const uint64_t r = Draw(key, static_cast<uint64_t>(i / 4));
    for (int lane = 0; i < end; ++i, ++lane) out[i] = table[(r >> (16 * lane)) & 0xFFFF];
  }
}

void Fill(const Job& job, DType dtype, const ModelConfig& c, int64_t first, int64_t n) {
  switch (job.init) {
    case Init::kNormal:
    case Init::kUniform:
      if (dtype == DType::kF32) {
        FillFromTable(reinterpret_cast<const float*>(job.table.data()), job.key,
                      static_cast<float*>(job.data), first, n);
      } else {
        FillFromTable(reinterpret_cast<const uint16_t*>(job.table.data()), job.key,
                      static_cast<uint16_t*>(job.data), first, n);
      }
      return;
    case Init::kOnes:
      for (int64_t i = first; i < first + n; ++i) Store(dtype, 1.0f, job.data, i);
      return;
    case Init::kALog:
      for (int64_t i = first; i < first + n; ++i) {
        // Mamba-1: S4D-real, A[d][s] = -(s + 1). Mamba-2: one A per head, spread over [1, 16]
        // (mamba_ssm draws it uniformly from that range).
        const double a = c.family == ModelFamily::kMamba2
                             ? 1.0 + 15.0 * (static_cast<double>(i) + 0.5) / c.n_heads
                             : static_cast<double>(i % c.d_state + 1);
        Store(dtype, static_cast<float>(std::log(a)), job.data, i);
      }
      return;
    case Init::kDtBias: {
      const double lo = std::log(static_cast<double>(c.time_step_min));
      const double hi = std::log(static_cast<double>(c.time_step_max));
      for (int64_t i = first; i < first + n; ++i) {
        double dt = std::exp(lo + Unit(Draw(job.key, static_cast<uint64_t>(i))) * (hi - lo));
        dt = std::max(dt, static_cast<double>(c.time_step_floor));
        // softplus(x) = dt  <=>  x = dt + log(1 - exp(-dt))
        Store(dtype, static_cast<float>(dt + std::log(-std::expm1(-dt))), job.data, i);
      }
      return;
    }
  }
}

}  // namespace

std::vector<std::string> SyntheticModelNames() {
  return {"tiny",          "130m",         "370m",        "790m",         "1.4b",
          "2.8b",          "mamba2-tiny",  "mamba2-130m", "mamba2-370m",  "mamba2-780m",
          "mamba2-1.3b",   "mamba2-2.7b",  "codestral-7b", "falcon-mamba-tiny",
          "falcon-mamba-7b"};
}

namespace {

// The fields every synthetic model shares: d_conv 4, conv bias, no in/out_proj bias, fp32
// residuals, dt_rank auto.
ModelConfig SyntheticBase(ModelFamily family, int32_t n_layer, int32_t d_model) {
  ModelConfig c;
  c.family = family;
  c.n_layer = n_layer;
  c.d_model = d_model;
  c.expand = 2;
  c.d_inner = 2 * d_model;
  c.d_conv = 4;
  c.dt_rank = (d_model + 15) / 16;
  c.use_bias = false;
  c.use_conv_bias = true;
  c.residual_in_fp32 = true;
  return c;
}

// 256 byte tokens plus <|endoftext|> = 256, so a byte-level tokenizer covers it.
void ByteVocabulary(ModelConfig* c) {
  c->vocab_size = 257;
  c->bos_token_id = c->eos_token_id = c->pad_token_id = 256;
}

// A state-spaces Mamba-2 (mamba2-130m ... 2.7b): d_state 128, heads of 64, one group, GPT-NeoX's
// vocabulary padded to a multiple of 16, tied embeddings, mamba_ssm's fixed norm epsilons.
ModelConfig StateSpacesMamba2(int32_t n_layer, int32_t d_model) {
  ModelConfig c = SyntheticBase(ModelFamily::kMamba2, n_layer, d_model);
  c.d_state = 128;
  c.head_dim = 64;
  c.n_heads = c.d_inner / c.head_dim;
  c.n_groups = 1;
  c.vocab_size = 50288;
  c.tie_word_embeddings = true;
  c.bos_token_id = c.eos_token_id = c.pad_token_id = 0;
  return c;
}

}  // namespace

absl::StatusOr<ModelConfig> SyntheticConfig(const std::string& name) {
  struct Shape {
    const char* name;
    int32_t n_layer;
    int32_t d_model;
  };
  static constexpr Shape kMamba1Shapes[] = {{"tiny", 4, 128},   {"130m", 24, 768},
                                            {"370m", 48, 1024}, {"790m", 48, 1536},
                                            {"1.4b", 48, 2048}, {"2.8b", 64, 2560}};
  for (const Shape& s : kMamba1Shapes) {
    if (name != s.name) continue;
    ModelConfig c = SyntheticBase(ModelFamily::kMamba1, s.n_layer, s.d_model);
    c.d_state = 16;
    c.vocab_size = 50280;
    c.tie_word_embeddings = true;
    c.bos_token_id = c.eos_token_id = c.pad_token_id = 0;
    if (name == "tiny") ByteVocabulary(&c);
    return c;
  }
  static constexpr Shape kMamba2Shapes[] = {{"mamba2-130m", 24, 768},  {"mamba2-370m", 48, 1024},
                                            {"mamba2-780m", 48, 1536}, {"mamba2-1.3b", 48, 2048},
                                            {"mamba2-2.7b", 64, 2560}};
  for (const Shape& s : kMamba2Shapes) {
    if (name == s.name) return StateSpacesMamba2(s.n_layer, s.d_model);
  }
  if (name == "mamba2-tiny") {
    // Small, but with what the big ones have: several heads per group, two groups.
    ModelConfig c = StateSpacesMamba2(4, 128);
    c.d_state = 16;
    c.head_dim = 32;
    c.n_heads = c.d_inner / c.head_dim;  // 8
    c.n_groups = 2;
    c.chunk_size = 64;
    ByteVocabulary(&c);
    return c;
  }
  if (name == "codestral-7b") {
    // mistralai/Mamba-Codestral-7B-v0.1: 64 x 4096, 128 heads of 64, d_state 128, 8 groups.
    ModelConfig c = SyntheticBase(ModelFamily::kMamba2, 64, 4096);
    c.d_state = 128;
    c.head_dim = 64;
    c.n_heads = 128;
    c.n_groups = 8;
    c.vocab_size = 32768;
    c.tie_word_embeddings = false;
    c.bos_token_id = 1;
    c.eos_token_id = 2;
    c.pad_token_id = 0;
    c.dt_rank = 256;
    c.gated_norm_epsilon = c.layer_norm_epsilon;
    return c;
  }
  if (name == "falcon-mamba-7b" || name == "falcon-mamba-tiny") {
    // tiiuae/falcon-mamba-7b: 64 x 4096, d_inner 8192, d_state 16, dt_rank 256, vocab 65024.
    const bool tiny = name == "falcon-mamba-tiny";
    ModelConfig c = SyntheticBase(ModelFamily::kFalconMamba, tiny ? 4 : 64, tiny ? 128 : 4096);
    c.d_state = 16;
    c.vocab_size = 65024;
    c.dt_rank = tiny ? 8 : 256;
    c.tie_word_embeddings = false;
    c.bos_token_id = 0;
    c.eos_token_id = c.pad_token_id = 11;
    c.mixer_rms_eps = 1e-6f;
    if (tiny) ByteVocabulary(&c);
    return c;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown synthetic model '", name, "'; allowed: ",
                                                 absl::StrJoin(SyntheticModelNames(), ", ")));
}

absl::StatusOr<ModelWeights> MakeSyntheticWeights(const ModelConfig& config, uint64_t seed,
                                                  DType dtype) {
  MAMBA_RETURN_IF_ERROR(config.Validate());
  ModelWeights w;
  w.ResizeFor(config);
  std::vector<Job> jobs;
  absl::Status status;
  w.ForEachMutableTensor(config, [&](const TensorSpec& spec, TensorView& view) {
    if (!status.ok()) return;
    view.dtype = dtype;
    view.shape = spec.shape;
    void* data = w.AllocateOwned(view.nbytes());
    if (data == nullptr) {
      status = absl::ResourceExhaustedError(absl::StrCat(
          "synthetic model: cannot allocate ", view.nbytes(), " bytes for '", spec.name, "'"));
      return;
    }
    view.data = data;
    Job job{&view, data, Init::kNormal, 0.0, StreamKey(seed, spec.name), {}};
    job.init = InitOf(spec.name, config, &job.scale);
    if (job.init == Init::kNormal || job.init == Init::kUniform) BuildTable(job, dtype);
    jobs.push_back(std::move(job));
  });
  MAMBA_RETURN_IF_ERROR(status);
  w.lm_head_tied = config.tie_word_embeddings;
  if (w.lm_head_tied) w.lm_head = w.embedding;

  std::vector<std::pair<size_t, int64_t>> blocks;  // (job, first element)
  for (size_t j = 0; j < jobs.size(); ++j) {
    for (int64_t e = 0; e < jobs[j].view->numel(); e += kBlock) blocks.push_back({j, e});
  }
  ParallelFor(static_cast<int64_t>(blocks.size()), [&](int64_t b) {
    const auto [j, first] = blocks[static_cast<size_t>(b)];
    Fill(jobs[j], dtype, config, first, std::min(kBlock, jobs[j].view->numel() - first));
  });
  return w;
}

}  // namespace mamba::model
