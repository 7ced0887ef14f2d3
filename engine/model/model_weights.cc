#include "engine/model/model_weights.h"

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <system_error>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

namespace mamba::model {
namespace {

// Buffers at least this large are mapped from the kernel: already zero, no memset. (No
// MADV_HUGEPAGE: with the common defrag=madvise setting it makes every fault compact memory,
// tripling the time to build a synthetic model.)
constexpr size_t kMapThreshold = size_t{1} << 20;
// Conversion runs in blocks of this many elements, spread over the cores.
constexpr int64_t kConvertBlock = int64_t{1} << 20;

// f16 <-> f32 with the F16C instructions, 8 at a time, where the CPU has them (every x86-64
// server since 2012); the engine library is built for the x86-64 baseline, so this is chosen at
// run time. Results are bit-identical to HalfToFloat / FloatToHalf: NaNs, whose payload handling
// differs, are redone by the scalar code.
#if defined(__x86_64__)
__attribute__((target("avx,f16c"))) void HalfToFloatF16c(const uint16_t* src, float* dst,
                                                         size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
  }
  for (; i < n; ++i) dst[i] = HalfToFloat(src[i]);
  for (i = 0; i < n; ++i) {
    if ((src[i] & 0x7C00u) == 0x7C00u && (src[i] & 0x03FFu) != 0) dst[i] = HalfToFloat(src[i]);
  }
}

__attribute__((target("avx,f16c"))) void FloatToHalfF16c(const float* src, uint16_t* dst,
                                                         size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), h);
  }
  for (; i < n; ++i) dst[i] = FloatToHalf(src[i]);
  for (i = 0; i < n; ++i) {
    if (std::isnan(src[i])) dst[i] = FloatToHalf(src[i]);
  }
}

bool HaveF16c() {
  // CPUID leaf 1 for F16C: clang (the fuzz build) has no __builtin_cpu_supports("f16c").
  static const bool have = [] {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    return __builtin_cpu_supports("avx") && __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 &&
           (ecx & bit_F16C) != 0;
  }();
  return have;
}
#endif

void ToFloat(DType from, const void* src, float* dst, size_t n) {
#if defined(__x86_64__)
  if (from == DType::kF16 && HaveF16c()) {
    return HalfToFloatF16c(static_cast<const uint16_t*>(src), dst, n);
  }
#endif
  ConvertToFloat(from, src, dst, n);
}

void FromFloat(DType to, const float* src, void* dst, size_t n) {
#if defined(__x86_64__)
  if (to == DType::kF16 && HaveF16c()) return FloatToHalfF16c(src, static_cast<uint16_t*>(dst), n);
#endif
  ConvertFromFloat(to, src, dst, n);
}

// Where one tensor of CheckpointTensors lives in a ModelWeights: a top-level field, or a field of
// layers[layer].
struct Slot {
  TensorSpec spec;
  int layer = -1;
  TensorView ModelWeights::*top = nullptr;
  TensorView LayerWeights::*member = nullptr;
};

std::vector<Slot> Slots(const ModelConfig& c) {
  const int64_t D = c.d_model, E = c.d_inner, N = c.d_state, R = c.dt_rank, K = c.d_conv,
                V = c.vocab_size;
  const bool mamba2 = c.family == ModelFamily::kMamba2;
  const int64_t H = c.n_heads, S = c.d_ssm(), C = c.conv_dim(), P = c.in_proj_dim();
  std::vector<Slot> slots;
  slots.reserve(3 + static_cast<size_t>(c.n_layer) * 12);
  slots.push_back({{"backbone.embeddings.weight", {V, D}, "[vocab_size, hidden_size]"},
                   -1,
                   &ModelWeights::embedding});
  for (int i = 0; i < c.n_layer; ++i) {
    const std::string p = absl::StrCat("backbone.layers.", i, ".");
    const std::string m = p + "mixer.";
    auto add = [&](std::string name, std::vector<int64_t> shape, std::string rule,
                   TensorView LayerWeights::*member) {
      slots.push_back({{std::move(name), std::move(shape), std::move(rule)}, i, nullptr, member});
    };
    add(p + "norm.weight", {D}, "[hidden_size]", &LayerWeights::norm);
    if (mamba2) {
      add(m + "in_proj.weight", {P, D},
          "[2*intermediate_size + 2*n_groups*state_size + num_heads, hidden_size]",
          &LayerWeights::in_proj);
      if (c.use_bias) {
        add(m + "in_proj.bias", {P}, "[in_proj rows] (use_bias)", &LayerWeights::in_proj_bias);
      }
      const std::string conv_rule = "num_heads*head_dim + 2*n_groups*state_size";
      add(m + "conv1d.weight", {C, 1, K}, absl::StrCat("[", conv_rule, ", 1, conv_kernel]"),
          &LayerWeights::conv);
      if (c.use_conv_bias) {
        add(m + "conv1d.bias", {C}, absl::StrCat("[", conv_rule, "] (use_conv_bias)"),
            &LayerWeights::conv_bias);
      }
      add(m + "dt_bias", {H}, "[num_heads]", &LayerWeights::dt_bias);
      add(m + "A_log", {H}, "[num_heads]", &LayerWeights::a_log);
      if (c.d_per_channel) {
        add(m + "D", {S}, "[num_heads*head_dim] (D_has_hdim)", &LayerWeights::d);
      } else {
        add(m + "D", {H}, "[num_heads]", &LayerWeights::d);
      }
      if (c.gated_norm) {
        add(m + "norm.weight", {S}, "[num_heads*head_dim]", &LayerWeights::gated_norm);
      }
      add(m + "out_proj.weight", {D, E}, "[hidden_size, intermediate_size]",
          &LayerWeights::out_proj);
    } else {
      add(m + "in_proj.weight", {2 * E, D}, "[2*intermediate_size, hidden_size]",
          &LayerWeights::in_proj);
      if (c.use_bias) {
        add(m + "in_proj.bias", {2 * E}, "[2*intermediate_size] (use_bias)",
            &LayerWeights::in_proj_bias);
      }
      add(m + "conv1d.weight", {E, 1, K}, "[intermediate_size, 1, conv_kernel]",
          &LayerWeights::conv);
      if (c.use_conv_bias) {
        add(m + "conv1d.bias", {E}, "[intermediate_size] (use_conv_bias)",
            &LayerWeights::conv_bias);
      }
      add(m + "x_proj.weight", {R + 2 * N, E},
          "[time_step_rank + 2*state_size, intermediate_size]", &LayerWeights::x_proj);
      add(m + "dt_proj.weight", {E, R}, "[intermediate_size, time_step_rank]",
          &LayerWeights::dt_proj);
      add(m + "dt_proj.bias", {E}, "[intermediate_size]", &LayerWeights::dt_proj_bias);
      add(m + "A_log", {E, N}, "[intermediate_size, state_size]", &LayerWeights::a_log);
      add(m + "D", {E}, "[intermediate_size]", &LayerWeights::d);
      add(m + "out_proj.weight", {D, E}, "[hidden_size, intermediate_size]",
          &LayerWeights::out_proj);
    }
    if (c.use_bias) {
      add(m + "out_proj.bias", {D}, "[hidden_size] (use_bias)", &LayerWeights::out_proj_bias);
    }
  }
  slots.push_back({{"backbone.norm_f.weight", {D}, "[hidden_size]"}, -1, &ModelWeights::norm_f});
  if (!c.tie_word_embeddings) {
    slots.push_back({{"lm_head.weight", {V, D}, "[vocab_size, hidden_size] (untied)"},
                     -1,
                     &ModelWeights::lm_head});
  }
  return slots;
}

template <typename W>
auto& SlotView(W& w, const Slot& s) {
  return s.layer >= 0 ? w.layers[static_cast<size_t>(s.layer)].*s.member : w.*s.top;
}

// Every view field of `w` (empty ones included), in a fixed order.
template <typename W, typename Fn>
void ForEachField(W& w, Fn fn) {
  fn(w.embedding);
  for (auto& l : w.layers) {
    for (auto member :
         {&LayerWeights::norm, &LayerWeights::in_proj, &LayerWeights::in_proj_bias,
          &LayerWeights::conv, &LayerWeights::conv_bias, &LayerWeights::x_proj,
          &LayerWeights::dt_proj, &LayerWeights::dt_proj_bias, &LayerWeights::dt_bias,
          &LayerWeights::a_log, &LayerWeights::d, &LayerWeights::gated_norm,
          &LayerWeights::out_proj, &LayerWeights::out_proj_bias}) {
      fn(l.*member);
    }
  }
  fn(w.norm_f);
  fn(w.lm_head);
}

}  // namespace

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

float TensorView::At(int64_t i) const {
  // memcpy: views straight from a safetensors file may be misaligned (see SafetensorsFile::Get).
  const auto* p = static_cast<const uint8_t*>(data) + i * static_cast<int64_t>(DTypeSize(dtype));
  if (dtype == DType::kF32) {
    float f;
    std::memcpy(&f, p, sizeof f);
    return f;
  }
  uint16_t h;
  std::memcpy(&h, p, sizeof h);
  return dtype == DType::kF16 ? HalfToFloat(h) : BFloat16ToFloat(h);
}

std::vector<float> TensorView::ToFloat() const {
  std::vector<float> out(empty() ? 0 : static_cast<size_t>(numel()));
  if (!out.empty()) ConvertToFloat(dtype, data, out.data(), out.size());
  return out;
}

std::vector<TensorSpec> CheckpointTensors(const ModelConfig& config) {
  std::vector<TensorSpec> specs;
  for (Slot& s : Slots(config)) specs.push_back(std::move(s.spec));
  return specs;
}

void* ModelWeights::AllocateOwned(size_t bytes) {
  const size_t size = std::max<size_t>(64, (bytes + 63) / 64 * 64);
  if (size >= kMapThreshold) {
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return nullptr;
    storage_.push_back(std::shared_ptr<const void>(
        p, [size](const void* q) { munmap(const_cast<void*>(q), size); }));
    return p;
  }
  void* p = std::aligned_alloc(64, size);
  if (p == nullptr) return nullptr;
  std::memset(p, 0, size);
  storage_.push_back(
      std::shared_ptr<const void>(p, [](const void* q) { std::free(const_cast<void*>(q)); }));
  return p;
}

size_t ModelWeights::TotalBytes() const {
  std::set<const void*> seen;
  size_t total = 0;
  ForEachField(*this, [&](const TensorView& v) {
    if (!v.empty() && seen.insert(v.data).second) total += v.nbytes();
  });
  return total;
}

DType ModelWeights::MatrixDType() const {
  if (layers.empty() || layers[0].in_proj.empty()) return DType::kF32;
  return layers[0].in_proj.dtype;
}

absl::StatusOr<ModelWeights> ModelWeights::ConvertTo(DType dtype) const {
  ModelWeights out;
  out.layers.resize(layers.size());
  out.lm_head_tied = lm_head_tied;

  std::vector<const TensorView*> src;
  std::vector<TensorView*> dst;
  ForEachField(*this, [&](const TensorView& v) { src.push_back(&v); });
  ForEachField(out, [&](TensorView& v) { dst.push_back(&v); });

  struct Job {
    const TensorView* from;
    void* to;
  };
  std::vector<Job> jobs;
  std::map<const void*, void*> converted;  // shared source memory stays shared
  bool keeps_source = false;
  for (size_t i = 0; i < src.size(); ++i) {
    const TensorView& s = *src[i];
    TensorView& d = *dst[i];
    d = s;
    if (s.empty()) continue;
    if (s.dtype == dtype) {
      keeps_source = true;
      continue;
    }
    d.dtype = dtype;
    auto it = converted.find(s.data);
    if (it != converted.end()) {
      d.data = it->second;
      continue;
    }
    void* buffer = out.AllocateOwned(d.nbytes());
    if (buffer == nullptr) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "converting weights to ", std::string(DTypeName(dtype)), ": cannot allocate ", d.nbytes(),
          " bytes for a tensor of shape ", ShapeString(d.shape)));
    }
    converted[s.data] = buffer;
    d.data = buffer;
    jobs.push_back({&s, buffer});
  }
  if (keeps_source) out.storage_.insert(out.storage_.end(), storage_.begin(), storage_.end());

  // Blocks of every job, flattened, so that small tensors do not leave a core idle.
  std::vector<std::pair<size_t, int64_t>> blocks;  // (job, first element)
  for (size_t j = 0; j < jobs.size(); ++j) {
    for (int64_t e = 0; e < jobs[j].from->numel(); e += kConvertBlock) blocks.push_back({j, e});
  }
  ParallelFor(static_cast<int64_t>(blocks.size()), [&](int64_t b) {
    const auto [j, first] = blocks[static_cast<size_t>(b)];
    const TensorView& from = *jobs[j].from;
    const int64_t n = std::min(kConvertBlock, from.numel() - first);
    const auto* in = static_cast<const uint8_t*>(from.data) + first * DTypeSize(from.dtype);
    auto* to = static_cast<uint8_t*>(jobs[j].to) + first * DTypeSize(dtype);
    if (from.dtype == DType::kF32) {
      FromFloat(dtype, reinterpret_cast<const float*>(in), to, static_cast<size_t>(n));
    } else if (dtype == DType::kF32) {
      ToFloat(from.dtype, in, reinterpret_cast<float*>(to), static_cast<size_t>(n));
    } else {
      thread_local std::vector<float> scratch;
      scratch.resize(static_cast<size_t>(n));
      ToFloat(from.dtype, in, scratch.data(), static_cast<size_t>(n));
      FromFloat(dtype, scratch.data(), to, static_cast<size_t>(n));
    }
  });
  return out;
}

absl::Status ModelWeights::Validate(const ModelConfig& config, const std::string& source) const {
  auto error = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", what));
  };
  if (layers.size() != static_cast<size_t>(config.n_layer)) {
    return error(absl::StrCat("weights have ", layers.size(), " layers; config has ",
                              config.n_layer, " (num_hidden_layers)"));
  }
  for (const Slot& s : Slots(config)) {
    const TensorView& v = SlotView(*this, s);
    if (v.empty()) {
      return error(absl::StrCat("tensor '", s.spec.name, "' is missing; expected shape ",
                                ShapeString(s.spec.shape), " ", s.spec.shape_rule));
    }
    if (v.shape != s.spec.shape) {
      return error(absl::StrCat("tensor '", s.spec.name, "' has shape ", ShapeString(v.shape),
                                "; expected ", ShapeString(s.spec.shape), " ", s.spec.shape_rule));
    }
  }
  for (size_t i = 0; i < layers.size(); ++i) {
    const LayerWeights& l = layers[i];
    const std::string m = absl::StrCat("backbone.layers.", i, ".mixer.");
    if (!config.use_bias && !(l.in_proj_bias.empty() && l.out_proj_bias.empty())) {
      return error(absl::StrCat("tensor '", m, l.in_proj_bias.empty() ? "out" : "in",
                                "_proj.bias' is present but the config has use_bias = false"));
    }
    if (!config.use_conv_bias && !l.conv_bias.empty()) {
      return error(absl::StrCat(
          "tensor '", m, "conv1d.bias' is present but the config has use_conv_bias = false"));
    }
  }
  if (config.tie_word_embeddings) {
    if (!lm_head_tied || lm_head.data != embedding.data || lm_head.shape != embedding.shape ||
        lm_head.dtype != embedding.dtype) {
      return error(
          "lm_head must be tied to backbone.embeddings.weight (tie_word_embeddings = true)");
    }
  } else if (lm_head_tied) {
    return error("lm_head is marked tied but the config has tie_word_embeddings = false");
  }
  return absl::OkStatus();
}

void ModelWeights::ForEachTensor(
    const ModelConfig& config,
    const std::function<void(const TensorSpec&, const TensorView&)>& fn) const {
  for (const Slot& s : Slots(config)) fn(s.spec, SlotView(*this, s));
}

void ModelWeights::ForEachMutableTensor(
    const ModelConfig& config, const std::function<void(const TensorSpec&, TensorView&)>& fn) {
  for (const Slot& s : Slots(config)) fn(s.spec, SlotView(*this, s));
}

void ParallelFor(int64_t n, const std::function<void(int64_t)>& fn, int threads) {
  if (n <= 0) return;
  int64_t count = threads > 0 ? threads : std::max(1u, std::thread::hardware_concurrency());
  count = std::min(count, n);
  std::atomic<int64_t> next{0};
  auto work = [&] {
    for (int64_t i = next.fetch_add(1); i < n; i = next.fetch_add(1)) fn(i);
  };
  std::vector<std::thread> pool;
  for (int64_t t = 1; t < count; ++t) {
    try {
      pool.emplace_back(work);
    } catch (const std::system_error&) {
      break;  // fewer threads: the calling thread still finishes every index
    }
  }
  work();
  for (std::thread& t : pool) t.join();
}

}  // namespace mamba::model
