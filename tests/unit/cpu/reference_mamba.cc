#include "tests/unit/cpu/reference_mamba.h"

#include <algorithm>
#include <cmath>

namespace mamba::testing {
namespace {

double Softplus(double x) { return x > 20.0 ? x : std::log1p(std::exp(x)); }
double Silu(double x) { return x / (1.0 + std::exp(-x)); }

}  // namespace

ReferenceMamba::ReferenceMamba(const model::ModelConfig& config, const model::ModelWeights& weights)
    : c_(config), w_(weights) {}

ReferenceMamba::State ReferenceMamba::NewState() const {
  const model::StateLayout layout = model::StateLayoutOf(c_);
  State s;
  s.conv.assign(static_cast<size_t>(layout.n_layer * layout.conv_elements_per_layer()), 0.0);
  s.ssm.assign(static_cast<size_t>(layout.n_layer * layout.ssm_elements_per_layer()), 0.0);
  return s;
}

namespace {

// The causal depthwise conv of channel d over [conv state..., x], then silu; the state keeps
// the newest d_conv - 1 inputs.
double ConvStep(const model::LayerWeights& lw, int64_t d, int64_t kc, double x, double* cs) {
  double acc = lw.conv_bias.empty() ? 0.0 : lw.conv_bias.At(d);
  for (int64_t k = 0; k < kc; ++k) {
    const double in = k < kc - 1 ? cs[k] : x;
    acc += lw.conv.At(d * kc + k) * in;
  }
  for (int64_t k = 0; k + 1 < kc - 1; ++k) cs[k] = cs[k + 1];
  if (kc > 1) cs[kc - 2] = x;
  return Silu(acc);
}

// x / sqrt(mean(x^2) + eps) over [begin, end), in place (FalconMamba's weightless norm).
void NormalizeRange(std::vector<double>& x, size_t begin, size_t end, double eps) {
  double ms = 0.0;
  for (size_t i = begin; i < end; ++i) ms += x[i] * x[i];
  ms /= static_cast<double>(end - begin);
  const double inv = 1.0 / std::sqrt(ms + eps);
  for (size_t i = begin; i < end; ++i) x[i] *= inv;
}

}  // namespace

std::vector<double> ReferenceMamba::Linear(const model::TensorView& w,
                                           const model::TensorView& bias,
                                           const std::vector<double>& x) const {
  const int64_t rows = w.shape[0];
  const int64_t cols = w.numel() / rows;
  std::vector<double> y(rows, 0.0);
  for (int64_t n = 0; n < rows; ++n) {
    double s = 0.0;
    for (int64_t k = 0; k < cols; ++k) s += static_cast<double>(w.At(n * cols + k)) * x[k];
    if (!bias.empty()) s += bias.At(n);
    y[n] = s;
  }
  return y;
}

std::vector<double> ReferenceMamba::RmsNorm(const std::vector<double>& x,
                                            const model::TensorView& w) const {
  double ms = 0.0;
  for (double v : x) ms += v * v;
  ms /= static_cast<double>(x.size());
  const double inv = 1.0 / std::sqrt(ms + static_cast<double>(c_.layer_norm_epsilon));
  std::vector<double> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * inv * w.At(static_cast<int64_t>(i));
  return y;
}

std::vector<double> ReferenceMamba::Forward(State& state,
                                            const std::vector<int32_t>& tokens) const {
  const int64_t dm = c_.d_model;
  std::vector<double> residual(dm), hidden(dm);
  for (int32_t token : tokens) {
    for (int64_t i = 0; i < dm; ++i) hidden[i] = w_.embedding.At(token * dm + i);
    for (int l = 0; l < c_.n_layer; ++l) {
      const model::LayerWeights& lw = w_.layers[l];
      for (int64_t i = 0; i < dm; ++i) residual[i] = (l == 0 ? 0.0 : residual[i]) + hidden[i];
      const std::vector<double> xn = RmsNorm(residual, lw.norm);
      hidden = c_.family == model::ModelFamily::kMamba2 ? Mamba2Mixer(l, state, xn)
                                                        : Mamba1Mixer(l, state, xn);
    }
  }
  for (int64_t i = 0; i < dm; ++i) residual[i] += hidden[i];
  const std::vector<double> xf = RmsNorm(residual, w_.norm_f);
  return Linear(w_.lm_head, model::TensorView(), xf);
}

std::vector<double> ReferenceMamba::Mamba1Mixer(int l, State& state,
                                                const std::vector<double>& xn) const {
  const int64_t di = c_.d_inner, ds = c_.d_state, dr = c_.dt_rank, kc = c_.d_conv;
  const model::LayerWeights& lw = w_.layers[l];
  const std::vector<double> xz = Linear(lw.in_proj, lw.in_proj_bias, xn);
  std::vector<double> xs(di);
  for (int64_t d = 0; d < di; ++d) {
    xs[d] = ConvStep(lw, d, kc, xz[d], state.conv.data() + (l * di + d) * (kc - 1));
  }
  std::vector<double> dbc = Linear(lw.x_proj, model::TensorView(), xs);
  if (c_.family == model::ModelFamily::kFalconMamba) {
    const double eps = c_.mixer_rms_eps;
    NormalizeRange(dbc, 0, dr, eps);
    NormalizeRange(dbc, dr, dr + ds, eps);
    NormalizeRange(dbc, dr + ds, dr + 2 * ds, eps);
  }
  const std::vector<double> dt_low(dbc.begin(), dbc.begin() + dr);
  const std::vector<double> dt_raw = Linear(lw.dt_proj, lw.dt_proj_bias, dt_low);
  std::vector<double> y(di);
  for (int64_t d = 0; d < di; ++d) {
    const double dt = Softplus(dt_raw[d]);
    double* h = state.ssm.data() + (l * di + d) * ds;
    double acc = 0.0;
    for (int64_t n = 0; n < ds; ++n) {
      const double a = -std::exp(static_cast<double>(lw.a_log.At(d * ds + n)));
      h[n] = std::exp(dt * a) * h[n] + dt * dbc[dr + n] * xs[d];
      acc += h[n] * dbc[dr + ds + n];
    }
    y[d] = (acc + lw.d.At(d) * xs[d]) * Silu(xz[di + d]);
  }
  return Linear(lw.out_proj, lw.out_proj_bias, y);
}

std::vector<double> ReferenceMamba::Mamba2Mixer(int l, State& state,
                                                const std::vector<double>& xn) const {
  const int64_t di = c_.d_inner, ds = c_.d_state, kc = c_.d_conv;
  const int64_t heads = c_.n_heads, hd = c_.head_dim, groups = c_.n_groups;
  const int64_t s_dim = c_.d_ssm(), mlp = c_.d_mlp(), conv_dim = c_.conv_dim();
  const model::LayerWeights& lw = w_.layers[l];
  // in_proj gives [z0, x0, z, xBC, dt].
  const std::vector<double> p = Linear(lw.in_proj, lw.in_proj_bias, xn);
  const double* z0 = p.data();
  const double* x0 = z0 + mlp;
  const double* z = x0 + mlp;
  const double* xbc_in = z + s_dim;
  const double* dt_in = xbc_in + conv_dim;
  std::vector<double> xbc(conv_dim);
  for (int64_t ch = 0; ch < conv_dim; ++ch) {
    xbc[ch] = ConvStep(lw, ch, kc, xbc_in[ch],
                       state.conv.data() + (l * conv_dim + ch) * (kc - 1));
  }
  const double* x = xbc.data();
  const double* b_all = x + s_dim;
  const double* c_all = b_all + groups * ds;
  std::vector<double> y(s_dim);
  for (int64_t h = 0; h < heads; ++h) {
    double dt = Softplus(dt_in[h] + lw.dt_bias.At(h));
    dt = std::min(std::max(dt, static_cast<double>(c_.time_step_limit_min)),
                  static_cast<double>(c_.time_step_limit_max));
    const double a = -std::exp(static_cast<double>(lw.a_log.At(h)));
    const double decay = std::exp(dt * a);
    const int64_t g = h / (heads / groups);
    for (int64_t q = 0; q < hd; ++q) {
      const int64_t ch = h * hd + q;
      double* st = state.ssm.data() + (l * s_dim + ch) * ds;
      double acc = 0.0;
      for (int64_t n = 0; n < ds; ++n) {
        st[n] = decay * st[n] + dt * b_all[g * ds + n] * x[ch];
        acc += st[n] * c_all[g * ds + n];
      }
      const double d_skip = c_.d_per_channel ? lw.d.At(ch) : lw.d.At(h);
      y[ch] = acc + d_skip * x[ch];
    }
  }
  // out_proj's input: silu(z0) * x0, then y * silu(z), normalized per group when the model has
  // the gated norm.
  std::vector<double> gated(di);
  for (int64_t j = 0; j < mlp; ++j) gated[j] = Silu(z0[j]) * x0[j];
  for (int64_t ch = 0; ch < s_dim; ++ch) gated[mlp + ch] = y[ch] * Silu(z[ch]);
  if (c_.gated_norm) {
    const int64_t gs = s_dim / groups;
    for (int64_t g = 0; g < groups; ++g) {
      const size_t begin = static_cast<size_t>(mlp + g * gs);
      NormalizeRange(gated, begin, begin + static_cast<size_t>(gs), c_.gated_norm_epsilon);
      for (int64_t j = 0; j < gs; ++j) gated[begin + j] *= lw.gated_norm.At(g * gs + j);
    }
  }
  return Linear(lw.out_proj, lw.out_proj_bias, gated);
}

}  // namespace mamba::testing
