// An independent, deliberately plain forward pass in double precision for every family (Mamba-1
// and FalconMamba from the formulas in DESIGN.md and HF transformers' slow path; Mamba-2 from
// mamba_ssm's Mamba2.step, with the gated RMSNorm per group of d_ssm / n_groups channels as
// mamba_ssm's RMSNormGated computes it), with scalar loops over the weights' slow element accessor. Tests compare the CPU backend against it, so that the backend is not only
// compared with itself. Slow: for tiny models and a few layers of bigger ones.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/model/model_config.h"
#include "engine/model/model_weights.h"

namespace mamba::testing {

class ReferenceMamba {
 public:
  struct State {
    // Same layout as the backend's HostState (model::StateLayoutOf): conv [layer][channel]
    // [d_conv - 1] (oldest first), ssm [layer][row][d_state] (Mamba-2 rows: head-major).
    std::vector<double> conv;
    std::vector<double> ssm;
  };

  // `weights` must outlive this object.
  ReferenceMamba(const model::ModelConfig& config, const model::ModelWeights& weights);

  State NewState() const;
  // Feeds `tokens` from `state` (updated) and returns the logits after the last one.
  std::vector<double> Forward(State& state, const std::vector<int32_t>& tokens) const;

 private:
  // y[n] = sum_k w[n][k] x[k] (+ bias[n]).
  std::vector<double> Linear(const model::TensorView& w, const model::TensorView& bias,
                             const std::vector<double>& x) const;
  std::vector<double> RmsNorm(const std::vector<double>& x, const model::TensorView& w) const;
  // One layer's mixer for one token, advancing its states.
  std::vector<double> Mamba1Mixer(int layer, State& state, const std::vector<double>& xn) const;
  std::vector<double> Mamba2Mixer(int layer, State& state, const std::vector<double>& xn) const;

  model::ModelConfig c_;
  const model::ModelWeights& w_;
};

}  // namespace mamba::testing
