// The Mamba-2 mixer of one chunk (all sequences of a step together, as rows [T, ...]) runs in
// five parallel regions:
//   A  in_proj rows (z0, x0, z, xBC and dt of every token)
//   B  xBC channels: the causal conv + silu, sequence by sequence, from each conv state; and,
//      split over rows, each head's dt (softplus, limits) and decay exp(dt * A)
//   C  SSM channels: the state update of each channel from its SSM state, y = C . h + D * x
//   D  rows: silu(z0) * x0, and the gated RMSNorm of y * silu(z) per group
//   E  out_proj rows
#include "engine/cpu/mamba2_mixer.h"

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

// softplus(x) = log(1 + e^x), and x itself above 20 (PyTorch's threshold).
inline float Softplus(float x) { return x > 20.0f ? x : std::log1p(std::exp(x)); }

inline float Silu(float x) { return x / (1.0f + std::exp(-x)); }

class Mamba2Mixer final : public Mixer {
 public:
  Mamba2Mixer(const model::ModelConfig& config, const model::ModelWeights& weights,
              ThreadPool* pool);
  void Forward(int layer, absl::Span<const ChunkPiece> pieces, int64_t rows, const float* in,
               float* out) override;

 private:
  struct LayerParams {
    WeightMatrix in_proj, out_proj;
    std::vector<float> in_bias;     // [in_proj rows], empty without use_bias
    std::vector<float> conv_taps;   // [d_conv][conv_dim]: tap k of every channel, contiguous
    std::vector<float> conv_bias;   // [conv_dim], zeros without use_conv_bias
    std::vector<float> dt_bias;     // [n_heads]
    std::vector<float> a;           // [n_heads]: -exp(A_log)
    std::vector<float> d;           // [d_ssm]: D of each channel (a head's D repeated)
    std::vector<float> norm;        // [d_ssm]: the gated norm's weight, empty without it
    std::vector<float> out_bias;    // [d_model], empty without use_bias
  };

  const model::ModelConfig config_;
  ThreadPool* const pool_;
  // Column offsets of in_proj's output.
  const int64_t mlp_, ssm_, conv_dim_, groups_state_;
  const int64_t z_off_, xbc_off_, dt_off_, width_;
  std::vector<LayerParams> layers_;
  // Scratch, grown to the largest chunk seen.
  std::vector<float> proj_;   // [T][width]: in_proj output
  std::vector<float> xbc_;    // [T][conv_dim]: silu(conv(xBC))
  std::vector<float> dt_;     // [T][n_heads]
  std::vector<float> decay_;  // [T][n_heads]: exp(dt * A)
  std::vector<float> y_;      // [T][d_ssm]
  std::vector<float> gated_;  // [T][d_inner]: out_proj's input
};

Mamba2Mixer::Mamba2Mixer(const model::ModelConfig& config, const model::ModelWeights& weights,
                         ThreadPool* pool)
    : config_(config),
      pool_(pool),
      mlp_(config.d_mlp()),
      ssm_(config.d_ssm()),
      conv_dim_(config.conv_dim()),
      groups_state_(int64_t{config.n_groups} * config.d_state),
      z_off_(2 * mlp_),
      xbc_off_(2 * mlp_ + ssm_),
      dt_off_(2 * mlp_ + ssm_ + conv_dim_),
      width_(config.in_proj_dim()) {
  const int64_t k = config.d_conv, heads = config.n_heads, hd = config.head_dim;
  layers_.resize(config.n_layer);
  for (int l = 0; l < config.n_layer; ++l) {
    const model::LayerWeights& w = weights.layers[l];
    LayerParams& p = layers_[l];
    p.in_proj = WeightMatrix::From(w.in_proj);
    p.out_proj = WeightMatrix::From(w.out_proj);
    if (!w.in_proj_bias.empty()) p.in_bias = w.in_proj_bias.ToFloat();
    if (!w.out_proj_bias.empty()) p.out_bias = w.out_proj_bias.ToFloat();
    const std::vector<float> conv = w.conv.ToFloat();
    p.conv_taps.resize(k * conv_dim_);
    for (int64_t ch = 0; ch < conv_dim_; ++ch) {
      for (int64_t j = 0; j < k; ++j) p.conv_taps[j * conv_dim_ + ch] = conv[ch * k + j];
    }
    p.conv_bias =
        w.conv_bias.empty() ? std::vector<float>(conv_dim_, 0.0f) : w.conv_bias.ToFloat();
    p.dt_bias = w.dt_bias.ToFloat();
    const std::vector<float> a_log = w.a_log.ToFloat();
    p.a.resize(heads);
    for (int64_t h = 0; h < heads; ++h) p.a[h] = -std::exp(a_log[h]);
    const std::vector<float> d = w.d.ToFloat();
    p.d.resize(ssm_);
    for (int64_t ch = 0; ch < ssm_; ++ch) p.d[ch] = config.d_per_channel ? d[ch] : d[ch / hd];
    if (!w.gated_norm.empty()) p.norm = w.gated_norm.ToFloat();
  }
}

void Mamba2Mixer::Forward(int l, absl::Span<const ChunkPiece> pieces, int64_t t_rows,
                          const float* normed, float* hidden) {
  const model::ModelConfig& c = config_;
  const int64_t dm = c.d_model, di = c.d_inner, n_state = c.d_state;
  const int64_t heads = c.n_heads, head_dim = c.head_dim;
  const int64_t heads_per_group = heads / c.n_groups;
  const int64_t kconv = c.d_conv, hist = kconv - 1;
  auto ensure = [](std::vector<float>& v, int64_t n) {
    if (static_cast<int64_t>(v.size()) < n) v.resize(n);
  };
  ensure(proj_, t_rows * width_);
  ensure(xbc_, t_rows * conv_dim_);
  ensure(dt_, t_rows * heads);
  ensure(decay_, t_rows * heads);
  ensure(y_, t_rows * ssm_);
  ensure(gated_, t_rows * di);
  float* proj = proj_.data();
  float* xbc = xbc_.data();
  float* dt = dt_.data();
  float* decay = decay_.data();
  float* y = y_.data();
  float* gated = gated_.data();
  const LayerParams& lp = layers_[l];
  const float* in_bias = lp.in_bias.empty() ? nullptr : lp.in_bias.data();
  const float* out_bias = lp.out_bias.empty() ? nullptr : lp.out_bias.data();

  // A: in_proj.
  pool_->ParallelFor(width_, 8, [&](int64_t n0, int64_t n1) {
    MatMul(normed, dm, t_rows, lp.in_proj, in_bias, n0, n1, OutputRows{proj, width_, nullptr});
  });

  // B: conv + silu over xBC, channels in parallel ...
  pool_->ParallelFor(conv_dim_, 8, [&](int64_t c0, int64_t c1) {
    __m256 taps[kMaxConvKernel];
    __m256 window[kMaxConvKernel];
    for (const ChunkPiece& p : pieces) {
      float* conv_state = p.state->conv(l);
      for (int64_t ch = c0; ch < c1; ch += 8) {
        const int64_t lanes = std::min<int64_t>(8, c1 - ch);
        alignas(32) float buf[8];
        for (int64_t j = 0; j < hist; ++j) {
          std::fill(buf, buf + 8, 0.0f);
          for (int64_t i = 0; i < lanes; ++i) buf[i] = conv_state[(ch + i) * hist + j];
          window[j] = _mm256_load_ps(buf);
        }
        for (int64_t j = 0; j < kconv; ++j) {
          taps[j] = LoadLanes(lp.conv_taps.data() + j * conv_dim_ + ch, lanes);
        }
        const __m256 bias = LoadLanes(lp.conv_bias.data() + ch, lanes);
        for (int64_t t = p.row; t < p.row + p.rows; ++t) {
          const __m256 input = LoadLanes(proj + t * width_ + xbc_off_ + ch, lanes);
          __m256 acc = bias;
          for (int64_t j = 0; j < hist; ++j) acc = _mm256_fmadd_ps(taps[j], window[j], acc);
          acc = _mm256_fmadd_ps(taps[hist], input, acc);
          for (int64_t j = 0; j + 1 < hist; ++j) window[j] = window[j + 1];
          if (hist > 0) window[hist - 1] = input;
          StoreLanes(xbc + t * conv_dim_ + ch, simd::Silu(acc), lanes);
        }
        for (int64_t j = 0; j < hist; ++j) {
          _mm256_store_ps(buf, window[j]);
          for (int64_t i = 0; i < lanes; ++i) conv_state[(ch + i) * hist + j] = buf[i];
        }
      }
    }
  });
  // ... and each head's step size and decay, rows in parallel.
  const float dt_min = c.time_step_limit_min, dt_max = c.time_step_limit_max;
  pool_->ParallelFor(t_rows, 1, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      for (int64_t h = 0; h < heads; ++h) {
        float step = Softplus(proj[t * width_ + dt_off_ + h] + lp.dt_bias[h]);
        step = std::min(std::max(step, dt_min), dt_max);
        dt[t * heads + h] = step;
        decay[t * heads + h] = std::exp(step * lp.a[h]);
      }
    }
  });

  // C: the state update, SSM channels in parallel. Channel ch belongs to head ch / head_dim,
  // which reads the B and C of its group.
  const int64_t nv = (n_state + 7) / 8;
  const int64_t tail = n_state - (nv - 1) * 8;
  pool_->ParallelFor(ssm_, 8, [&](int64_t c0, int64_t c1) {
    __m256 h[kMaxStateVectors];
    for (const ChunkPiece& p : pieces) {
      float* ssm = p.state->ssm(l);
      for (int64_t ch = c0; ch < c1; ++ch) {
        const int64_t head = ch / head_dim;
        const int64_t group = head / heads_per_group;
        float* hs = ssm + ch * n_state;
        for (int64_t v = 0; v < nv; ++v) {
          h[v] = v + 1 < nv ? _mm256_loadu_ps(hs + v * 8) : LoadLanes(hs + v * 8, tail);
        }
        const float d_skip = lp.d[ch];
        for (int64_t t = p.row; t < p.row + p.rows; ++t) {
          const float* row = xbc + t * conv_dim_;
          const float x = row[ch];
          const float* bvec = row + ssm_ + group * n_state;
          const float* cvec = row + ssm_ + groups_state_ + group * n_state;
          const __m256 dec = _mm256_set1_ps(decay[t * heads + head]);
          const __m256 dx = _mm256_set1_ps(dt[t * heads + head] * x);
          __m256 acc = _mm256_setzero_ps();
          for (int64_t v = 0; v < nv; ++v) {
            const int64_t lanes = v + 1 < nv ? 8 : tail;
            h[v] = _mm256_fmadd_ps(dec, h[v], _mm256_mul_ps(dx, LoadLanes(bvec + v * 8, lanes)));
            acc = _mm256_fmadd_ps(h[v], LoadLanes(cvec + v * 8, lanes), acc);
          }
          y[t * ssm_ + ch] = simd::HorizontalSum(acc) + d_skip * x;
        }
        for (int64_t v = 0; v < nv; ++v) StoreLanes(hs + v * 8, h[v], v + 1 < nv ? 8 : tail);
      }
    }
  });

  // D: out_proj's input: silu(z0) * x0, then the (normalized) gated SSM output.
  const int64_t group_size = ssm_ / c.n_groups;
  pool_->ParallelFor(t_rows, 1, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const float* prow = proj + t * width_;
      float* out = gated + t * di;
      for (int64_t j = 0; j < mlp_; ++j) out[j] = Silu(prow[j]) * prow[mlp_ + j];
      float* gy = out + mlp_;
      const float* z = prow + z_off_;
      const float* yt = y + t * ssm_;
      for (int64_t ch = 0; ch < ssm_; ch += 8) {
        const int64_t lanes = std::min<int64_t>(8, ssm_ - ch);
        StoreLanes(gy + ch,
                   _mm256_mul_ps(LoadLanes(yt + ch, lanes), simd::Silu(LoadLanes(z + ch, lanes))),
                   lanes);
      }
      if (!lp.norm.empty()) {
        for (int64_t g = 0; g < c.n_groups; ++g) {
          simd::RmsNorm(gy + g * group_size, lp.norm.data() + g * group_size, group_size,
                        c.gated_norm_epsilon, gy + g * group_size);
        }
      }
    }
  });

  // E: out_proj.
  pool_->ParallelFor(dm, 8, [&](int64_t n0, int64_t n1) {
    MatMul(gated, di, t_rows, lp.out_proj, out_bias, n0, n1, OutputRows{hidden, dm, nullptr});
  });
}

}  // namespace

absl::StatusOr<std::unique_ptr<Mixer>> MakeMamba2Mixer(const model::ModelConfig& config,
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
  return std::unique_ptr<Mixer>(new Mamba2Mixer(config, weights, pool));
}

}  // namespace mamba::cpu
