// The Mamba-1 mixer of one chunk (all sequences of a step together, as rows [T, ...]) runs in four
// parallel regions:
//   B  channels:  in_proj rows of the thread's channels (x part and z part), then the causal
//                 conv + silu of those channels, sequence by sequence, from each conv state
//   C  x_proj rows (dt_low, B, C for every token); FalconMamba then normalizes each of the three
//      per token (RMSNorm without a weight, epsilon mixer_rms_eps), rows in parallel
//   D  channels:  dt_proj rows of the thread's channels, softplus, the selective scan from each
//                 SSM state, D skip and the silu(z) gate
//   E  out_proj rows
// A channel region hands each task a range of channels and the task runs that range's whole
// pipeline, so B and D need no barrier between their steps.
#include "engine/cpu/mamba1_mixer.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/cpu/gemm.h"
#include "engine/simd/simd_math.h"

namespace mamba::cpu {
namespace {

constexpr int kMaxConvKernel = 16;
constexpr int kMaxStateVectors = 32;  // d_state up to 256

int64_t RoundUp8(int64_t n) { return (n + 7) / 8 * 8; }

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

class Mamba1Mixer final : public Mixer {
 public:
  Mamba1Mixer(const model::ModelConfig& config, const model::ModelWeights& weights,
              ThreadPool* pool);
  void Forward(int layer, absl::Span<const ChunkPiece> pieces, int64_t rows, const float* in,
               float* out) override;

 private:
  struct LayerParams {
    WeightMatrix in_proj, x_proj, dt_proj, out_proj;
    std::vector<float> in_bias;    // [2 d_inner], empty without use_bias
    std::vector<float> conv_taps;  // [d_conv][d_inner]: tap k of every channel, contiguous
    std::vector<float> conv_bias;  // [d_inner], zeros without use_conv_bias
    std::vector<float> dt_bias;    // [d_inner]
    std::vector<float> a;          // [d_inner][d_state rounded up to 8]: -exp(A_log), zero padded
    std::vector<float> d;          // [d_inner]
    std::vector<float> out_bias;   // [d_model], empty without use_bias
  };

  const model::ModelConfig config_;
  ThreadPool* const pool_;
  std::vector<LayerParams> layers_;
  // Scratch, grown to the largest chunk seen.
  std::vector<float> xz_;   // [T][2 d_inner]: in_proj output, x then z
  std::vector<float> xs_;   // [T][d_inner]: silu(conv(x))
  std::vector<float> dbc_;  // [T][dt_rank + 2 d_state]
  std::vector<float> dt_;   // [T][d_inner]
  std::vector<float> y_;    // [T][d_inner]
};

Mamba1Mixer::Mamba1Mixer(const model::ModelConfig& config, const model::ModelWeights& weights,
                         ThreadPool* pool)
    : config_(config), pool_(pool) {
  const int64_t di = config.d_inner, s = config.d_state, k = config.d_conv;
  const int64_t s_pad = RoundUp8(s);
  layers_.resize(config.n_layer);
  for (int l = 0; l < config.n_layer; ++l) {
    const model::LayerWeights& w = weights.layers[l];
    LayerParams& p = layers_[l];
    p.in_proj = WeightMatrix::From(w.in_proj);
    p.x_proj = WeightMatrix::From(w.x_proj);
    p.dt_proj = WeightMatrix::From(w.dt_proj);
    p.out_proj = WeightMatrix::From(w.out_proj);
    if (!w.in_proj_bias.empty()) p.in_bias = w.in_proj_bias.ToFloat();
    if (!w.out_proj_bias.empty()) p.out_bias = w.out_proj_bias.ToFloat();
    const std::vector<float> conv = w.conv.ToFloat();
    p.conv_taps.resize(k * di);
    for (int64_t ch = 0; ch < di; ++ch) {
      for (int64_t j = 0; j < k; ++j) p.conv_taps[j * di + ch] = conv[ch * k + j];
    }
    p.conv_bias = w.conv_bias.empty() ? std::vector<float>(di, 0.0f) : w.conv_bias.ToFloat();
    p.dt_bias = w.dt_proj_bias.ToFloat();
    const std::vector<float> a_log = w.a_log.ToFloat();
    p.a.assign(di * s_pad, 0.0f);
    for (int64_t ch = 0; ch < di; ++ch) {
      for (int64_t n = 0; n < s; ++n) p.a[ch * s_pad + n] = -std::exp(a_log[ch * s + n]);
    }
    p.d = w.d.ToFloat();
  }
}

void Mamba1Mixer::Forward(int l, absl::Span<const ChunkPiece> pieces, int64_t t_rows,
                          const float* normed, float* hidden) {
  const model::ModelConfig& c = config_;
  const int64_t dm = c.d_model, di = c.d_inner, r = c.dt_rank, s = c.d_state;
  const int64_t kconv = c.d_conv, hist = kconv - 1;
  const int64_t s_pad = RoundUp8(s);
  const int64_t ldd = r + 2 * s;  // row length of dbc
  auto ensure = [](std::vector<float>& v, int64_t n) {
    if (static_cast<int64_t>(v.size()) < n) v.resize(n);
  };
  ensure(xz_, t_rows * 2 * di);
  ensure(xs_, t_rows * di);
  ensure(dbc_, t_rows * ldd);
  ensure(dt_, t_rows * di);
  ensure(y_, t_rows * di);
  float* xz = xz_.data();
  float* xs = xs_.data();
  float* dbc = dbc_.data();
  float* dt = dt_.data();
  float* y = y_.data();
  const LayerParams& lp = layers_[l];
  const float* in_bias = lp.in_bias.empty() ? nullptr : lp.in_bias.data();
  const float* out_bias = lp.out_bias.empty() ? nullptr : lp.out_bias.data();

  // B: in_proj (x and z rows of this thread's channels), then conv + silu.
  pool_->ParallelFor(di, 8, [&](int64_t c0, int64_t c1) {
    const OutputRows out{xz, 2 * di, nullptr};
    MatMul(normed, dm, t_rows, lp.in_proj, in_bias, c0, c1, out);
    MatMul(normed, dm, t_rows, lp.in_proj, in_bias, di + c0, di + c1, out);
    __m256 taps[kMaxConvKernel];
    __m256 window[kMaxConvKernel];
    for (const ChunkPiece& p : pieces) {
      float* conv_state = p.state->conv(l);
      const int64_t rows = p.rows;
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
  pool_->ParallelFor(ldd, 8, [&](int64_t n0, int64_t n1) {
    MatMul(xs, di, t_rows, lp.x_proj, nullptr, n0, n1, OutputRows{dbc, ldd, nullptr});
  });
  if (c.family == model::ModelFamily::kFalconMamba) {
    pool_->ParallelFor(t_rows, 1, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        float* row = dbc + t * ldd;
        simd::RmsNormInPlace(row, r, c.mixer_rms_eps);
        simd::RmsNormInPlace(row + r, s, c.mixer_rms_eps);
        simd::RmsNormInPlace(row + r + s, s, c.mixer_rms_eps);
      }
    });
  }

  // D: dt, the selective scan, skip and gate, for this thread's channels.
  pool_->ParallelFor(di, 8, [&](int64_t c0, int64_t c1) {
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
    for (const ChunkPiece& p : pieces) {
      float* ssm = p.state->ssm(l);
      const int64_t rows = p.rows;
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
  pool_->ParallelFor(dm, 8, [&](int64_t n0, int64_t n1) {
    MatMul(y, di, t_rows, lp.out_proj, out_bias, n0, n1, OutputRows{hidden, dm, nullptr});
  });
}

}  // namespace

absl::StatusOr<std::unique_ptr<Mixer>> MakeMamba1Mixer(const model::ModelConfig& config,
                                                       const model::ModelWeights& weights,
                                                       ThreadPool* pool) {
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
  return std::unique_ptr<Mixer>(new Mamba1Mixer(config, weights, pool));
}

}  // namespace mamba::cpu
