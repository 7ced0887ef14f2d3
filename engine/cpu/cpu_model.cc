// One chunk of tokens (all sequences of a step together, as rows [T, ...]) goes through each
// layer in five parallel regions:
//   A  rows:      residual += hidden; x = RMSNorm(residual) * w
//   B  channels:  in_proj rows of the thread's channels (x part and z part), then the causal
//                 conv + silu of those channels, sequence by sequence, from each conv state
//   C  x_proj rows (dt_low, B, C for every token)
//   D  channels:  dt_proj rows of the thread's channels, softplus, the selective scan from each
//                 SSM state, D skip and the silu(z) gate
//   E  out_proj rows
// A channel region hands each task a range of channels and the task runs that range's whole
// pipeline, so B and D need no barrier between their steps. The output head runs once per
// sequence that wants logits, on its last row.
#include "engine/cpu/cpu_model.h"

#include <algorithm>
#include <cmath>
#include <thread>

#include "absl/strings/str_cat.h"
#include "engine/cpu/gemm.h"
#include "engine/cpu/simd_math.h"

namespace mamba::cpu {
namespace {

constexpr int kMaxConvKernel = 16;
constexpr int kMaxStateVectors = 32;  // d_state up to 256
constexpr int64_t kDefaultChunkTokens = 512;

int64_t RoundUp8(int64_t n) { return (n + 7) / 8 * 8; }

std::vector<float> Widen(const TensorView& t) {
  std::vector<float> out(static_cast<size_t>(t.numel()));
  if (!t.empty()) ConvertToFloat(t.dtype, t.data, out.data(), out.size());
  return out;
}

template <class L>
void WidenRowTyped(const void* src, float* dst, int64_t n) {
  const auto* p = static_cast<const typename L::T*>(src);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, L::Load(p + i));
  if (i < n) simd::StoreF32Tail(dst + i, L::LoadTail(p + i, n - i), n - i);
}

// Row `row` of a [rows, n] tensor widened into dst.
void WidenRow(const TensorView& t, int64_t row, int64_t n, float* dst) {
  const size_t offset = static_cast<size_t>(row * n) * DTypeSize(t.dtype);
  const void* src = static_cast<const uint8_t*>(t.data) + offset;
  switch (t.dtype) {
    case DType::kF32:
      WidenRowTyped<simd::F32Weights>(src, dst, n);
      return;
    case DType::kF16:
      WidenRowTyped<simd::F16Weights>(src, dst, n);
      return;
    case DType::kBF16:
      WidenRowTyped<simd::BF16Weights>(src, dst, n);
      return;
  }
}

// out = RMSNorm(in) * w over n values: in * (1 / sqrt(mean(in^2) + eps)) * w.
void RmsNorm(const float* in, const float* w, int64_t n, float eps, float* out) {
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(in + i);
    acc = _mm256_fmadd_ps(v, v, acc);
  }
  if (i < n) {
    const __m256 v = simd::LoadF32Tail(in + i, n - i);
    acc = _mm256_fmadd_ps(v, v, acc);
  }
  const float mean = simd::HorizontalSum(acc) / static_cast<float>(n);
  const __m256 inv = _mm256_set1_ps(1.0f / std::sqrt(mean + eps));
  for (i = 0; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(in + i), inv),
                                            _mm256_loadu_ps(w + i)));
  }
  if (i < n) {
    const __m256 v = _mm256_mul_ps(_mm256_mul_ps(simd::LoadF32Tail(in + i, n - i), inv),
                                   simd::LoadF32Tail(w + i, n - i));
    simd::StoreF32Tail(out + i, v, n - i);
  }
}

// acc += add over n values.
void AddInPlace(float* acc, const float* add, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(acc + i, _mm256_add_ps(_mm256_loadu_ps(acc + i), _mm256_loadu_ps(add + i)));
  }
  for (; i < n; ++i) acc[i] += add[i];
}

// Loads lanes [c, c + n) of a channel vector (n <= 8; the others read as zero).
inline __m256 LoadLanes(const float* p, int64_t n) {
  return n == 8 ? _mm256_loadu_ps(p) : simd::LoadF32Tail(p, n);
}
inline void StoreLanes(float* p, __m256 v, int64_t n) {
  if (n == 8) {
    _mm256_storeu_ps(p, v);
  } else {
    simd::StoreF32Tail(p, v, n);
  }
}

// What the selective scan of one channel reads and writes: rows of the chunk's buffers.
struct ScanArgs {
  const float* dt;   // [T][d_inner], softplus already applied
  const float* xs;   // [T][d_inner]
  const float* dbc;  // [T][ldd]: dt_low, B, C
  float* y;          // [T][d_inner]: receives (h . C) + D * x
  int64_t di, ldd, dt_rank, d_state, s_pad;
};

// One state vector step: h = exp(dt * A) * h + (dt * x) * B; acc += h * C.
inline void ScanStep(__m256 delta, __m256 delta_x, __m256 a, __m256 b, __m256 c, __m256& h,
                     __m256& acc) {
  const __m256 decay = simd::Exp(_mm256_mul_ps(delta, a));
  h = _mm256_fmadd_ps(decay, h, _mm256_mul_ps(delta_x, b));
  acc = _mm256_fmadd_ps(h, c, acc);
}

// The scan of channel `ch` over rows [begin, end), its state `hs` ([d_state]) updated in place,
// for d_state = 8 * NV: the state stays in registers across the rows.
template <int NV>
void ScanChannel(const ScanArgs& g, int64_t ch, int64_t begin, int64_t end, const float* a,
                 float d_skip, float* hs) {
  __m256 h[NV], av[NV];
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) {
    h[v] = _mm256_loadu_ps(hs + v * 8);
    av[v] = _mm256_loadu_ps(a + v * 8);
  }
  for (int64_t t = begin; t < end; ++t) {
    const float delta = g.dt[t * g.di + ch];
    const float x = g.xs[t * g.di + ch];
    const __m256 delta_v = _mm256_set1_ps(delta);
    const __m256 delta_x = _mm256_set1_ps(delta * x);
    const float* bvec = g.dbc + t * g.ldd + g.dt_rank;
    const float* cvec = bvec + g.d_state;
    __m256 acc = _mm256_setzero_ps();
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      ScanStep(delta_v, delta_x, av[v], _mm256_loadu_ps(bvec + v * 8),
               _mm256_loadu_ps(cvec + v * 8), h[v], acc);
    }
    g.y[t * g.di + ch] = simd::HorizontalSum(acc) + d_skip * x;
  }
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) _mm256_storeu_ps(hs + v * 8, h[v]);
}

// The same for any d_state (the last vector partial): the same operations lane by lane, so a
// state size that is a multiple of 8 gives the same bits on either path.
void ScanChannelAnySize(const ScanArgs& g, int64_t ch, int64_t begin, int64_t end, const float* a,
                        float d_skip, float* hs) {
  const int64_t nv = g.s_pad / 8;
  const int64_t tail = g.d_state - (nv - 1) * 8;  // lanes used in the last vector
  __m256 h[kMaxStateVectors];
  for (int64_t v = 0; v < nv; ++v) {
    h[v] = v + 1 < nv ? _mm256_loadu_ps(hs + v * 8) : LoadLanes(hs + v * 8, tail);
  }
  for (int64_t t = begin; t < end; ++t) {
    const float delta = g.dt[t * g.di + ch];
    const float x = g.xs[t * g.di + ch];
    const __m256 delta_v = _mm256_set1_ps(delta);
    const __m256 delta_x = _mm256_set1_ps(delta * x);
    const float* bvec = g.dbc + t * g.ldd + g.dt_rank;
    const float* cvec = bvec + g.d_state;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t v = 0; v < nv; ++v) {
      const int64_t lanes = v + 1 < nv ? 8 : tail;
      ScanStep(delta_v, delta_x, _mm256_loadu_ps(a + v * 8), LoadLanes(bvec + v * 8, lanes),
               LoadLanes(cvec + v * 8, lanes), h[v], acc);
    }
    g.y[t * g.di + ch] = simd::HorizontalSum(acc) + d_skip * x;
  }
  for (int64_t v = 0; v < nv; ++v) StoreLanes(hs + v * 8, h[v], v + 1 < nv ? 8 : tail);
}

}  // namespace

SequenceState::SequenceState(const ModelConfig& config)
    : conv_per_layer_(config.ConvStateElementsPerLayer()),
      ssm_per_layer_(config.SsmStateElementsPerLayer()),
      ssm_offset_(config.n_layer * config.ConvStateElementsPerLayer()),
      data_(static_cast<size_t>(config.StateElements()), 0.0f) {}

void SequenceState::Reset() { std::fill(data_.begin(), data_.end(), 0.0f); }

struct CpuModel::LayerParams {
  WeightMatrix in_proj, x_proj, dt_proj, out_proj;
  std::vector<float> norm;       // [d_model]
  std::vector<float> in_bias;    // [2 d_inner], empty without use_bias
  std::vector<float> conv_taps;  // [d_conv][d_inner]: tap k of every channel, contiguous
  std::vector<float> conv_bias;  // [d_inner], zeros without use_conv_bias
  std::vector<float> dt_bias;    // [d_inner]
  std::vector<float> a;          // [d_inner][d_state rounded up to 8]: -exp(A_log), zero padded
  std::vector<float> d;          // [d_inner]
  std::vector<float> out_bias;   // [d_model], empty without use_bias
};

struct CpuModel::Piece {
  SequenceState* state;
  absl::Span<const int32_t> tokens;
  int64_t row;    // first row of the chunk
  float* logits;  // set when this piece ends its sequence and logits are wanted
};

struct CpuModel::Scratch {
  std::vector<int32_t> tokens;                  // [T]
  std::vector<float> residual, hidden, normed;  // [T][d_model]
  std::vector<float> xz;                        // [T][2 d_inner]: in_proj output, x then z
  std::vector<float> xs;                        // [T][d_inner]: silu(conv(x))
  std::vector<float> dbc;                       // [T][dt_rank + 2 d_state]
  std::vector<float> dt;                        // [T][d_inner]
  std::vector<float> y;                         // [T][d_inner]
  std::vector<float> final_x;                   // [P][d_model]
  std::vector<float*> logit_rows;
};

CpuModel::CpuModel(const ModelConfig& config, ModelWeights weights, int num_threads)
    : config_(config),
      weights_(std::move(weights)),
      pool_(num_threads),
      max_chunk_tokens_(kDefaultChunkTokens),
      scratch_(std::make_unique<Scratch>()) {}

CpuModel::~CpuModel() = default;

absl::StatusOr<std::unique_ptr<CpuModel>> CpuModel::Create(const ModelConfig& config,
                                                           ModelWeights weights, int num_threads) {
  absl::Status valid = config.Validate();
  if (!valid.ok()) return valid;
  if (config.d_conv > kMaxConvKernel) {
    return absl::InvalidArgumentError(absl::StrCat("conv_kernel ", config.d_conv,
                                                   " is not supported by the CPU backend; "
                                                   "allowed: 1..",
                                                   kMaxConvKernel));
  }
  if (config.d_state > kMaxStateVectors * 8) {
    return absl::InvalidArgumentError(absl::StrCat("state_size ", config.d_state,
                                                   " is not supported by the CPU backend; "
                                                   "allowed: 1..",
                                                   kMaxStateVectors * 8));
  }
  valid = weights.Validate(config, "cpu backend weights");
  if (!valid.ok()) return valid;
  if (num_threads < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cpu_threads ", num_threads, " is invalid; allowed: 0 (all cores) or > 0"));
  }
  if (num_threads == 0) num_threads = static_cast<int>(std::thread::hardware_concurrency());
  num_threads = std::max(num_threads, 1);
  std::unique_ptr<CpuModel> model(new CpuModel(config, std::move(weights), num_threads));
  model->PrepareLayerParams();
  return model;
}

void CpuModel::PrepareLayerParams() {
  const ModelConfig& c = config_;
  const int64_t di = c.d_inner, s = c.d_state, k = c.d_conv;
  const int64_t s_pad = RoundUp8(s);
  layer_params_.resize(c.n_layer);
  for (int l = 0; l < c.n_layer; ++l) {
    const LayerWeights& w = weights_.layers[l];
    LayerParams& p = layer_params_[l];
    p.in_proj = WeightMatrix::From(w.in_proj);
    p.x_proj = WeightMatrix::From(w.x_proj);
    p.dt_proj = WeightMatrix::From(w.dt_proj);
    p.out_proj = WeightMatrix::From(w.out_proj);
    p.norm = Widen(w.norm);
    if (!w.in_proj_bias.empty()) p.in_bias = Widen(w.in_proj_bias);
    if (!w.out_proj_bias.empty()) p.out_bias = Widen(w.out_proj_bias);
    const std::vector<float> conv = Widen(w.conv);
    p.conv_taps.resize(k * di);
    for (int64_t ch = 0; ch < di; ++ch) {
      for (int64_t j = 0; j < k; ++j) p.conv_taps[j * di + ch] = conv[ch * k + j];
    }
    p.conv_bias = w.conv_bias.empty() ? std::vector<float>(di, 0.0f) : Widen(w.conv_bias);
    p.dt_bias = Widen(w.dt_proj_bias);
    const std::vector<float> a_log = Widen(w.a_log);
    p.a.assign(di * s_pad, 0.0f);
    for (int64_t ch = 0; ch < di; ++ch) {
      for (int64_t n = 0; n < s; ++n) p.a[ch * s_pad + n] = -std::exp(a_log[ch * s + n]);
    }
    p.d = Widen(w.d);
  }
  norm_f_ = Widen(weights_.norm_f);
}

absl::Status CpuModel::Forward(absl::Span<const SequenceInput> batch) {
  const size_t state_elements = static_cast<size_t>(config_.StateElements());
  std::vector<const SequenceState*> states;
  states.reserve(batch.size());
  for (size_t i = 0; i < batch.size(); ++i) {
    const SequenceInput& in = batch[i];
    if (in.state == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("sequence ", i, " has no state"));
    }
    if (in.state->values().size() != state_elements) {
      return absl::InvalidArgumentError(
          absl::StrCat("sequence ", i, " has a state of ", in.state->values().size(),
                       " values; this model's states have ", state_elements));
    }
    if (in.tokens.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("sequence ", i, " has no tokens; allowed: at least one"));
    }
    for (size_t t = 0; t < in.tokens.size(); ++t) {
      const int32_t id = in.tokens[t];
      if (id < 0 || id >= config_.vocab_size) {
        return absl::InvalidArgumentError(absl::StrCat("sequence ", i, " token ", t, " has id ", id,
                                                       ", outside the vocabulary; allowed: 0..",
                                                       config_.vocab_size - 1));
      }
    }
    states.push_back(in.state);
  }
  std::sort(states.begin(), states.end());
  if (std::adjacent_find(states.begin(), states.end()) != states.end()) {
    return absl::InvalidArgumentError("two sequences of one batch share a state");
  }

  // Cut the token stream into chunks of at most max_chunk_tokens_ rows.
  std::vector<Piece> pieces;
  int64_t used = 0;
  for (const SequenceInput& in : batch) {
    const int64_t len = static_cast<int64_t>(in.tokens.size());
    for (int64_t offset = 0; offset < len;) {
      const int64_t take = std::min(len - offset, max_chunk_tokens_ - used);
      const bool last = offset + take == len;
      pieces.push_back(
          {in.state, in.tokens.subspan(offset, take), used, last ? in.logits : nullptr});
      used += take;
      offset += take;
      if (used == max_chunk_tokens_) {
        RunChunk(pieces, used);
        pieces.clear();
        used = 0;
      }
    }
  }
  if (used > 0) RunChunk(pieces, used);
  return absl::OkStatus();
}

void CpuModel::RunChunk(absl::Span<const Piece> pieces, int64_t num_tokens) {
  const ModelConfig& c = config_;
  const int64_t dm = c.d_model, di = c.d_inner, r = c.dt_rank, s = c.d_state;
  const int64_t kconv = c.d_conv, hist = kconv - 1;
  const int64_t s_pad = RoundUp8(s);
  const int64_t ldd = r + 2 * s;  // row length of dbc
  const int64_t t_rows = num_tokens;
  const float eps = c.layer_norm_epsilon;

  Scratch& sc = *scratch_;
  auto ensure = [](std::vector<float>& v, int64_t n) {
    if (static_cast<int64_t>(v.size()) < n) v.resize(n);
  };
  ensure(sc.residual, t_rows * dm);
  ensure(sc.hidden, t_rows * dm);
  ensure(sc.normed, t_rows * dm);
  ensure(sc.xz, t_rows * 2 * di);
  ensure(sc.xs, t_rows * di);
  ensure(sc.dbc, t_rows * ldd);
  ensure(sc.dt, t_rows * di);
  ensure(sc.y, t_rows * di);
  sc.tokens.resize(t_rows);
  for (const Piece& p : pieces) {
    std::copy(p.tokens.begin(), p.tokens.end(), sc.tokens.begin() + p.row);
  }
  float* residual = sc.residual.data();
  float* hidden = sc.hidden.data();
  float* normed = sc.normed.data();
  float* xz = sc.xz.data();
  float* xs = sc.xs.data();
  float* dbc = sc.dbc.data();
  float* dt = sc.dt.data();
  float* y = sc.y.data();

  pool_.ParallelFor(t_rows, 1, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) WidenRow(weights_.embedding, sc.tokens[t], dm, hidden + t * dm);
  });

  for (int l = 0; l < c.n_layer; ++l) {
    const LayerParams& lp = layer_params_[l];
    const float* in_bias = lp.in_bias.empty() ? nullptr : lp.in_bias.data();
    const float* out_bias = lp.out_bias.empty() ? nullptr : lp.out_bias.data();

    // A: residual and norm.
    pool_.ParallelFor(t_rows, 1, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        float* res = residual + t * dm;
        if (l == 0) {
          std::copy(hidden + t * dm, hidden + (t + 1) * dm, res);
        } else {
          AddInPlace(res, hidden + t * dm, dm);
        }
        RmsNorm(res, lp.norm.data(), dm, eps, normed + t * dm);
      }
    });

    // B: in_proj (x and z rows of this thread's channels), then conv + silu.
    pool_.ParallelFor(di, 8, [&](int64_t c0, int64_t c1) {
      const OutputRows out{xz, 2 * di, nullptr};
      MatMul(normed, dm, t_rows, lp.in_proj, in_bias, c0, c1, out);
      MatMul(normed, dm, t_rows, lp.in_proj, in_bias, di + c0, di + c1, out);
      __m256 taps[kMaxConvKernel];
      __m256 window[kMaxConvKernel];
      for (const Piece& p : pieces) {
        float* conv_state = p.state->conv(l);
        const int64_t rows = static_cast<int64_t>(p.tokens.size());
        for (int64_t ch = c0; ch < c1; ch += 8) {
          const int64_t lanes = std::min<int64_t>(8, c1 - ch);
          alignas(32) float buf[8];
          for (int64_t j = 0; j < hist; ++j) {
            std::fill(buf, buf + 8, 0.0f);
            for (int64_t i = 0; i < lanes; ++i) buf[i] = conv_state[(ch + i) * hist + j];
            window[j] = _mm256_load_ps(buf);
          }
          for (int64_t j = 0; j < kconv; ++j) {
            taps[j] = LoadLanes(lp.conv_taps.data() + j * di + ch, lanes);
          }
          const __m256 bias = LoadLanes(lp.conv_bias.data() + ch, lanes);
          for (int64_t t = p.row; t < p.row + rows; ++t) {
            const __m256 input = LoadLanes(xz + t * 2 * di + ch, lanes);
            __m256 acc = bias;
            for (int64_t j = 0; j < hist; ++j) acc = _mm256_fmadd_ps(taps[j], window[j], acc);
            acc = _mm256_fmadd_ps(taps[hist], input, acc);
            for (int64_t j = 0; j + 1 < hist; ++j) window[j] = window[j + 1];
            if (hist > 0) window[hist - 1] = input;
            StoreLanes(xs + t * di + ch, simd::Silu(acc), lanes);
          }
          for (int64_t j = 0; j < hist; ++j) {
            _mm256_store_ps(buf, window[j]);
            for (int64_t i = 0; i < lanes; ++i) conv_state[(ch + i) * hist + j] = buf[i];
          }
        }
      }
    });

    // C: x_proj -> dt_low, B, C.
    pool_.ParallelFor(ldd, 8, [&](int64_t n0, int64_t n1) {
      MatMul(xs, di, t_rows, lp.x_proj, nullptr, n0, n1, OutputRows{dbc, ldd, nullptr});
    });

    // D: dt, the selective scan, skip and gate, for this thread's channels.
    pool_.ParallelFor(di, 8, [&](int64_t c0, int64_t c1) {
      MatMul(dbc, ldd, t_rows, lp.dt_proj, lp.dt_bias.data(), c0, c1, OutputRows{dt, di, nullptr});
      for (int64_t t = 0; t < t_rows; ++t) {
        for (int64_t ch = c0; ch < c1; ch += 8) {
          const int64_t lanes = std::min<int64_t>(8, c1 - ch);
          float* p = dt + t * di + ch;
          StoreLanes(p, simd::Softplus(LoadLanes(p, lanes)), lanes);
        }
      }
      ScanArgs args;
      args.dt = dt;
      args.xs = xs;
      args.dbc = dbc;
      args.y = y;
      args.di = di;
      args.ldd = ldd;
      args.dt_rank = r;
      args.d_state = s;
      args.s_pad = s_pad;
      for (const Piece& p : pieces) {
        float* ssm = p.state->ssm(l);
        const int64_t rows = static_cast<int64_t>(p.tokens.size());
        for (int64_t ch = c0; ch < c1; ++ch) {
          float* hs = ssm + ch * s;
          const float* a = lp.a.data() + ch * s_pad;
          if (s == 16) {
            ScanChannel<2>(args, ch, p.row, p.row + rows, a, lp.d[ch], hs);
          } else if (s == 8) {
            ScanChannel<1>(args, ch, p.row, p.row + rows, a, lp.d[ch], hs);
          } else {
            ScanChannelAnySize(args, ch, p.row, p.row + rows, a, lp.d[ch], hs);
          }
        }
      }
      for (int64_t t = 0; t < t_rows; ++t) {
        for (int64_t ch = c0; ch < c1; ch += 8) {
          const int64_t lanes = std::min<int64_t>(8, c1 - ch);
          float* py = y + t * di + ch;
          const __m256 z = LoadLanes(xz + t * 2 * di + di + ch, lanes);
          StoreLanes(py, _mm256_mul_ps(LoadLanes(py, lanes), simd::Silu(z)), lanes);
        }
      }
    });

    // E: out_proj.
    pool_.ParallelFor(dm, 8, [&](int64_t n0, int64_t n1) {
      MatMul(y, di, t_rows, lp.out_proj, out_bias, n0, n1, OutputRows{hidden, dm, nullptr});
    });
  }

  // Output head on the last row of each sequence that wants logits.
  sc.logit_rows.clear();
  std::vector<int64_t> last_rows;
  for (const Piece& p : pieces) {
    if (p.logits == nullptr) continue;
    sc.logit_rows.push_back(p.logits);
    last_rows.push_back(p.row + static_cast<int64_t>(p.tokens.size()) - 1);
  }
  const int64_t outputs = static_cast<int64_t>(last_rows.size());
  if (outputs == 0) return;
  ensure(sc.final_x, outputs * dm);
  for (int64_t i = 0; i < outputs; ++i) {
    const int64_t t = last_rows[i];
    float* res = residual + t * dm;
    if (c.n_layer > 0) {
      AddInPlace(res, hidden + t * dm, dm);
    } else {
      std::copy(hidden + t * dm, hidden + (t + 1) * dm, res);
    }
    RmsNorm(res, norm_f_.data(), dm, eps, sc.final_x.data() + i * dm);
  }
  const WeightMatrix head = WeightMatrix::From(weights_.lm_head);
  pool_.ParallelFor(head.rows, 8, [&](int64_t n0, int64_t n1) {
    MatMul(sc.final_x.data(), dm, outputs, head, nullptr, n0, n1,
           OutputRows{nullptr, 0, sc.logit_rows.data()});
  });
}

}  // namespace mamba::cpu
