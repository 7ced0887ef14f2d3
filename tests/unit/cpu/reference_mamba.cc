#include "tests/unit/cpu/reference_mamba.h"

#include <cmath>

namespace mamba::testing {
namespace {

double Softplus(double x) { return x > 20.0 ? x : std::log1p(std::exp(x)); }
double Silu(double x) { return x / (1.0 + std::exp(-x)); }

}  // namespace

ReferenceMamba::ReferenceMamba(const model::ModelConfig& config, const model::ModelWeights& weights)
    : c_(config), w_(weights) {}

ReferenceMamba::State ReferenceMamba::NewState() const {
  State s;
  s.conv.assign(static_cast<size_t>(c_.n_layer) * c_.d_inner * (c_.d_conv - 1), 0.0);
  s.ssm.assign(static_cast<size_t>(c_.n_layer) * c_.d_inner * c_.d_state, 0.0);
  return s;
}

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
  const int64_t dm = c_.d_model, di = c_.d_inner, ds = c_.d_state, dr = c_.dt_rank;
  const int64_t kc = c_.d_conv;
  std::vector<double> residual(dm), hidden(dm);
  for (int32_t token : tokens) {
    for (int64_t i = 0; i < dm; ++i) hidden[i] = w_.embedding.At(token * dm + i);
    for (int l = 0; l < c_.n_layer; ++l) {
      const model::LayerWeights& lw = w_.layers[l];
      for (int64_t i = 0; i < dm; ++i) residual[i] = (l == 0 ? 0.0 : residual[i]) + hidden[i];
      const std::vector<double> xn = RmsNorm(residual, lw.norm);
      const std::vector<double> xz = Linear(lw.in_proj, lw.in_proj_bias, xn);
      // Causal depthwise conv over [conv state..., x], then silu; the state keeps the newest
      // d_conv - 1 inputs.
      std::vector<double> xs(di);
      for (int64_t d = 0; d < di; ++d) {
        double* cs = state.conv.data() + (l * di + d) * (kc - 1);
        double acc = lw.conv_bias.empty() ? 0.0 : lw.conv_bias.At(d);
        for (int64_t k = 0; k < kc; ++k) {
          const double in = k < kc - 1 ? cs[k] : xz[d];
          acc += lw.conv.At(d * kc + k) * in;
        }
        for (int64_t k = 0; k + 1 < kc - 1; ++k) cs[k] = cs[k + 1];
        if (kc > 1) cs[kc - 2] = xz[d];
        xs[d] = Silu(acc);
      }
      const std::vector<double> dbc = Linear(lw.x_proj, model::TensorView(), xs);
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
      hidden = Linear(lw.out_proj, lw.out_proj_bias, y);
    }
  }
  for (int64_t i = 0; i < dm; ++i) residual[i] += hidden[i];
  const std::vector<double> xf = RmsNorm(residual, w_.norm_f);
  return Linear(w_.lm_head, model::TensorView(), xf);
}

}  // namespace mamba::testing
