// One channel's causal-conv decode update (one token), shared by the conv decode kernel and the
// skinny GEMM's fused in_proj epilogue, so both compute the same bits.
#pragma once

#include "kernels/causal_conv1d_params.h"
#include "kernels/device_math.cuh"

namespace mamba::kernels {

// Tap k of channel e, right-aligned so that a narrower conv has leading zero taps.
__device__ __forceinline__ float ConvTap(const CausalConv1dParams& p, int64_t e, int k) {
  const int pad = kConvTaps - p.width;
  return k >= pad ? p.weight[e * p.width + (k - pad)] : 0.0f;
}

// Load() reads what does not depend on the current token (the slot's conv state, the taps and
// the bias: callers issue it before waiting for the kernel producing the token); Finish() takes
// the conv's input for the token (in_proj output plus its bias, fp32), writes silu(conv) to
// p.out and shifts the state.
template <typename S>
struct ConvDecodeChannel {
  // Set by Load(). No default initializers: with them the struct form was slower on the H100
  // (130m batch 1: 444 vs 420 us/step).
  S* state;
  float hist[kConvMaxWidth - 1];
  float w[kConvTaps];
  float bias;

  __device__ __forceinline__ void Load(const CausalConv1dParams& p, int64_t row, int64_t e) {
    const int w1 = p.width - 1;
    state = static_cast<S*>(p.state) + p.slots[row] * p.state_slot_stride + e * w1;
#pragma unroll
    for (int j = 0; j < kConvMaxWidth - 1; ++j) hist[j] = j < w1 ? ToFloat(state[j]) : 0.0f;
#pragma unroll
    for (int k = 0; k < kConvTaps; ++k) w[k] = ConvTap(p, e, k);
    bias = p.bias != nullptr ? p.bias[e] : 0.0f;
  }

  template <typename T>
  __device__ __forceinline__ void Finish(const CausalConv1dParams& p, int64_t row, int64_t e,
                                         float cur) {
    const int w1 = p.width - 1;
    float in[kConvTaps];
#pragma unroll
    for (int k = 0; k < kConvTaps - 1; ++k) {
      const int d = kConvTaps - 1 - k;  // steps before the current token
      float v = 0.0f;
#pragma unroll
      for (int j = 0; j < kConvMaxWidth - 1; ++j) {
        if (d <= w1 && j == w1 - d) v = hist[j];
      }
      in[k] = v;
    }
    in[kConvTaps - 1] = cur;
    const float acc = ConvAccumulate(bias, w, in);
    static_cast<T*>(p.out)[row * p.out_row_stride + e] = FromFloat<T>(Silu(acc));
#pragma unroll
    for (int j = 0; j < kConvMaxWidth - 1; ++j) {
      if (j < w1) state[j] = FromFloat<S>(j + 1 < w1 ? hist[j + 1] : cur);
    }
  }
};

}  // namespace mamba::kernels
