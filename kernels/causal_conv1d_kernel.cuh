// Causal conv1d kernel bodies (see causal_conv1d_params.h). Included by the per-dtype files.
#pragma once

#include "kernels/causal_conv1d_params.h"
#include "kernels/conv_decode.cuh"
#include "kernels/dependent_launch.cuh"
#include "kernels/device_math.cuh"
#include "kernels/static_switch.h"

namespace mamba::kernels {

inline constexpr int kConvThreads = 128;

// The conv's input value of channel e at token t: the in_proj output plus its bias, in fp32.
template <typename T>
__device__ __forceinline__ float ConvInput(const CausalConv1dParams& p, int64_t t, int64_t e) {
  const float v = ToFloat(static_cast<const T*>(p.x)[t * p.x_row_stride + e]);
  return p.x_bias != nullptr ? __fadd_rn(v, p.x_bias[e]) : v;
}

// A thread's kCh channels of one token (one 8- or 16-byte access), widened, plus the x bias.
template <typename T, int kCh>
__device__ __forceinline__ void UnpackConvVec(const VecN<T, kCh>& u, const float (&x_bias)[kCh],
                                              bool has_bias, float (&v)[kCh]) {
#pragma unroll
  for (int c = 0; c < kCh; ++c) {
    v[c] = ToFloat(u.v[c]);
    if (has_bias) v[c] = __fadd_rn(v[c], x_bias[c]);
  }
}

// kCh consecutive floats at p, as 16-byte loads when `vec` (p 16-byte aligned), else scalar.
template <int kCh>
__device__ __forceinline__ void LoadParams(const float* p, bool vec, float (&out)[kCh]) {
  if (vec) {
#pragma unroll
    for (int c = 0; c < kCh; c += 4) {
      const float4 q = *reinterpret_cast<const float4*>(p + c);
      out[c] = q.x;
      out[c + 1] = q.y;
      out[c + 2] = q.z;
      out[c + 3] = q.w;
    }
  } else {
#pragma unroll
    for (int c = 0; c < kCh; ++c) out[c] = p[c];
  }
}

// One thread: kCh channels (one vector access per token) over kTok consecutive tokens.
// `vec_params`: width == kConvTaps and weight, bias, x_bias 16-byte aligned (float4 loads).
template <typename T, typename S, bool kVec, int kCh, int kTok>
__global__ void __launch_bounds__(kConvThreads)
    CausalConv1dPrefillKernel(CausalConv1dParams p, bool vec_params) {
  static_assert(kCh % 4 == 0, "parameter loads are float4");
  const int64_t e0 = (static_cast<int64_t>(blockIdx.x) * kConvThreads + threadIdx.x) * kCh;
  const int64_t t0 = static_cast<int64_t>(blockIdx.y) * kTok;
  if (e0 >= p.dim || t0 >= p.total_tokens) return;
  const int64_t t_end = MinI64(t0 + kTok, p.total_tokens);
  const int w1 = p.width - 1;

  float w[kCh][kConvTaps];
  float bias[kCh];
  if (kVec && vec_params) {
#pragma unroll
    for (int c = 0; c < kCh; ++c) LoadParams<kConvTaps>(p.weight + (e0 + c) * kConvTaps, true, w[c]);
    if (p.bias != nullptr) {
      LoadParams<kCh>(p.bias + e0, true, bias);
    } else {
#pragma unroll
      for (int c = 0; c < kCh; ++c) bias[c] = 0.0f;
    }
  } else {
#pragma unroll
    for (int c = 0; c < kCh; ++c) {
      const int64_t e = MinI64(e0 + c, p.dim - 1);  // clamped lanes compute, never store
#pragma unroll
      for (int k = 0; k < kConvTaps; ++k) w[c][k] = ConvTap(p, e, k);
      bias[c] = p.bias != nullptr ? p.bias[e] : 0.0f;
    }
  }

  // The sequence holding t0: the last s with cu_seqlens[s] <= t0.
  int64_t lo = 0, hi = p.num_seqs - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (p.cu_seqlens[mid] <= t0)
      lo = mid;
    else
      hi = mid - 1;
  }
  int64_t seq = lo;
  int64_t start = p.cu_seqlens[seq];
  int64_t end = p.cu_seqlens[seq + 1];

  // Fast path (almost every run of a long prompt): the run lies inside one sequence, past its
  // first kConvTaps - 1 tokens, so every input comes from x. All of them are requested at once
  // (stores to `out` could alias `x` as far as the compiler knows, so it would not hoist loads
  // itself), then a window of the last kConvTaps inputs slides over them.
  if constexpr (kVec) {
    if (t0 - (kConvTaps - 1) >= start && t_end <= end) {
      constexpr int kInputs = kTok + kConvTaps - 1;
      const T* xb = static_cast<const T*>(p.x) + e0;
      VecN<T, kCh> raw[kInputs];
#pragma unroll
      for (int j = 0; j < kInputs; ++j) {
        const int64_t t = t0 - (kConvTaps - 1) + j;
        if (t < t_end) {
          raw[j] = *reinterpret_cast<const VecN<T, kCh>*>(xb + t * p.x_row_stride);
        } else {
#pragma unroll
          for (int c = 0; c < kCh; ++c) raw[j].v[c] = FromFloat<T>(0.0f);
        }
      }
      const bool has_x_bias = p.x_bias != nullptr;
      float x_bias[kCh];
      if (has_x_bias) {
        LoadParams<kCh>(p.x_bias + e0, vec_params, x_bias);
      } else {
#pragma unroll
        for (int c = 0; c < kCh; ++c) x_bias[c] = 0.0f;
      }
      float win[kConvTaps][kCh];
#pragma unroll
      for (int k = 0; k < kConvTaps - 1; ++k) UnpackConvVec(raw[k], x_bias, has_x_bias, win[k + 1]);
#pragma unroll
      for (int j = 0; j < kTok; ++j) {
        if (t0 + j >= t_end) break;
#pragma unroll
        for (int k = 0; k < kConvTaps - 1; ++k) {
#pragma unroll
          for (int c = 0; c < kCh; ++c) win[k][c] = win[k + 1][c];
        }
        UnpackConvVec(raw[j + kConvTaps - 1], x_bias, has_x_bias, win[kConvTaps - 1]);
        float out[kCh];
#pragma unroll
        for (int c = 0; c < kCh; ++c) {
          const float in[kConvTaps] = {win[0][c], win[1][c], win[2][c], win[3][c]};
          out[c] = Silu(ConvAccumulate(bias[c], w[c], in));
        }
        StoreVec(static_cast<T*>(p.out) + (t0 + j) * p.out_row_stride + e0, out);
      }
      return;
    }
  }

  auto load_inputs = [&](int64_t t, float(&v)[kCh]) {
    if constexpr (kVec) {
      LoadVec(static_cast<const T*>(p.x) + t * p.x_row_stride + e0, v);
      if (p.x_bias != nullptr) {
#pragma unroll
        for (int c = 0; c < kCh; ++c) v[c] = __fadd_rn(v[c], p.x_bias[e0 + c]);
      }
    } else {
#pragma unroll
      for (int c = 0; c < kCh; ++c) v[c] = e0 + c < p.dim ? ConvInput<T>(p, t, e0 + c) : 0.0f;
    }
  };
  // prev[k] = input at position t - (kConvTaps - 1) + k, from x or, before the sequence, the state.
  float prev[kConvTaps - 1][kCh];
  auto init_window = [&](int64_t t) {
    const S* st = static_cast<const S*>(p.state) + p.slots[seq] * p.state_slot_stride;
#pragma unroll
    for (int k = 0; k < kConvTaps - 1; ++k) {
      const int64_t pos = t - (kConvTaps - 1) + k;
      if (pos >= start) {
        load_inputs(pos, prev[k]);
      } else {
        const int64_t d = start - pos;  // 1.. steps before the sequence
#pragma unroll
        for (int c = 0; c < kCh; ++c) {
          prev[k][c] = (d <= w1 && e0 + c < p.dim) ? ToFloat(st[(e0 + c) * w1 + (w1 - d)]) : 0.0f;
        }
      }
    }
  };
  init_window(t0);

  // All of this thread's inputs are requested before any is used (the stores below could alias
  // them as far as the compiler knows, so it would not hoist the loads itself).
  VecN<T, kCh> raw[kTok];
  if constexpr (kVec) {
#pragma unroll
    for (int j = 0; j < kTok; ++j) {
      if (t0 + j < t_end) {
        raw[j] = *reinterpret_cast<const VecN<T, kCh>*>(static_cast<const T*>(p.x) +
                                                        (t0 + j) * p.x_row_stride + e0);
      }
    }
  }
#pragma unroll
  for (int j = 0; j < kTok; ++j) {
    const int64_t t = t0 + j;
    if (t >= t_end) break;
    if (t == end) {  // next sequence: its window starts from its own state
      ++seq;
      start = end;
      end = p.cu_seqlens[seq + 1];
      init_window(t);
    }
    float cur[kCh];
    if constexpr (kVec) {
#pragma unroll
      for (int c = 0; c < kCh; ++c) {
        cur[c] = ToFloat(raw[j].v[c]);
        if (p.x_bias != nullptr) cur[c] = __fadd_rn(cur[c], p.x_bias[e0 + c]);
      }
    } else {
      load_inputs(t, cur);
    }
    float out[kCh];
#pragma unroll
    for (int c = 0; c < kCh; ++c) {
      const float in[kConvTaps] = {prev[0][c], prev[1][c], prev[2][c], cur[c]};
      out[c] = Silu(ConvAccumulate(bias[c], w[c], in));
#pragma unroll
      for (int k = 0; k < kConvTaps - 2; ++k) prev[k][c] = prev[k + 1][c];
      prev[kConvTaps - 2][c] = cur[c];
    }
    T* o = static_cast<T*>(p.out) + t * p.out_row_stride + e0;
    if constexpr (kVec) {
      StoreVec(o, out);
    } else {
#pragma unroll
      for (int c = 0; c < kCh; ++c) {
        if (e0 + c < p.dim) o[c] = FromFloat<T>(out[c]);
      }
    }
  }
}

// After the prefill outputs: each sequence's state becomes its last width - 1 inputs.
template <typename T, typename S>
__global__ void __launch_bounds__(kConvThreads) CausalConv1dStateKernel(CausalConv1dParams p) {
  const int64_t e = static_cast<int64_t>(blockIdx.x) * kConvThreads + threadIdx.x;
  const int64_t seq = blockIdx.y;
  if (e >= p.dim) return;
  const int w1 = p.width - 1;
  const int64_t start = p.cu_seqlens[seq];
  const int64_t len = p.cu_seqlens[seq + 1] - start;
  S* st = static_cast<S*>(p.state) + p.slots[seq] * p.state_slot_stride + e * w1;
  float old[kConvMaxWidth - 1];
#pragma unroll
  for (int j = 0; j < kConvMaxWidth - 1; ++j) old[j] = j < w1 ? ToFloat(st[j]) : 0.0f;
#pragma unroll
  for (int j = 0; j < kConvMaxWidth - 1; ++j) {
    if (j < w1) {
      // Position end - w1 + j; before the sequence it is old entry len + j.
      float v;
      if (len + j >= w1) {
        v = ConvInput<T>(p, start + len - w1 + j, e);
      } else {
        v = 0.0f;
#pragma unroll
        for (int i = 0; i < kConvMaxWidth - 1; ++i) {
          if (i == len + j) v = old[i];
        }
      }
      st[j] = FromFloat<S>(v);
    }
  }
}

// One token per row: out = silu(conv over state + this input); the state shifts by one.
// Decode grids of about one wave (few rows) run as programmatic dependents: the taps (and, when
// p.state_read_early, the slot's conv state) are read before waiting for in_proj. Larger grids
// wait for in_proj to finish and read everything together (measured faster there; see
// PreloadBeforeWait).
template <typename T, typename S>
__global__ void __launch_bounds__(kConvThreads)
    CausalConv1dDecodeDependentKernel(CausalConv1dParams p) {
  const int64_t e = static_cast<int64_t>(blockIdx.x) * kConvThreads + threadIdx.x;
  const int64_t row = blockIdx.y;
  const bool active = e < p.dim;
  ConvDecodeChannel<S> ch;
  if (active && p.state_read_early) ch.Load(p, row, e);
  WaitForPriorKernels();
  AllowDependentKernels();
  if (!active) return;
  if (!p.state_read_early) ch.Load(p, row, e);
  ch.template Finish<T>(p, row, e, ConvInput<T>(p, row, e));
}

// The same for larger grids, launched after in_proj has finished. Written flat rather than
// through ConvDecodeChannel: the struct form measured 40-65% slower for this kernel at batch 256
// on the H100 (226 vs 319-369 us over 24 layers).
template <typename T, typename S>
__global__ void __launch_bounds__(kConvThreads) CausalConv1dDecodeKernel(CausalConv1dParams p) {
  const int64_t e = static_cast<int64_t>(blockIdx.x) * kConvThreads + threadIdx.x;
  const int64_t row = blockIdx.y;
  if (e >= p.dim) return;
  const int w1 = p.width - 1;
  S* st = static_cast<S*>(p.state) + p.slots[row] * p.state_slot_stride + e * w1;
  float hist[kConvMaxWidth - 1];
#pragma unroll
  for (int j = 0; j < kConvMaxWidth - 1; ++j) hist[j] = j < w1 ? ToFloat(st[j]) : 0.0f;
  const float cur = ConvInput<T>(p, row, e);
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
  float w[kConvTaps];
#pragma unroll
  for (int k = 0; k < kConvTaps; ++k) w[k] = ConvTap(p, e, k);
  const float acc = ConvAccumulate(p.bias != nullptr ? p.bias[e] : 0.0f, w, in);
  static_cast<T*>(p.out)[row * p.out_row_stride + e] = FromFloat<T>(Silu(acc));
#pragma unroll
  for (int j = 0; j < kConvMaxWidth - 1; ++j) {
    if (j < w1) st[j] = FromFloat<S>(j + 1 < w1 ? hist[j + 1] : cur);
  }
}

template <typename T, typename S, int kCh, int kTok>
cudaError_t LaunchConvPrefillLayout(const CausalConv1dParams& p, cudaStream_t stream) {
  auto aligned = [](const void* q, size_t n) { return reinterpret_cast<uintptr_t>(q) % n == 0; };
  constexpr size_t kVecBytes = sizeof(T) * kCh;
  const bool vec = p.dim % kCh == 0 && p.x_row_stride % kCh == 0 && p.out_row_stride % kCh == 0 &&
                   aligned(p.x, kVecBytes) && aligned(p.out, kVecBytes);
  const bool vec_params = p.width == kConvTaps && aligned(p.weight, 16) &&
                          (p.bias == nullptr || aligned(p.bias, 16)) &&
                          (p.x_bias == nullptr || aligned(p.x_bias, 16));
  const int64_t threads_x = (p.dim + kCh - 1) / kCh;
  const dim3 grid(static_cast<unsigned>((threads_x + kConvThreads - 1) / kConvThreads),
                  static_cast<unsigned>((p.total_tokens + kTok - 1) / kTok));
  BOOL_SWITCH(vec, kVec, [&] {
    CausalConv1dPrefillKernel<T, S, kVec, kCh, kTok>
        <<<grid, kConvThreads, 0, stream>>>(p, vec && vec_params);
  });
  return cudaGetLastError();
}

template <typename T, typename S>
cudaError_t RunCausalConv1dPrefill(const CausalConv1dParams& p, cudaStream_t stream) {
  if (p.total_tokens == 0) return cudaSuccess;
  cudaError_t err;
  switch (p.prefill_layout) {
    case ConvPrefillLayout::k8x8:
      err = LaunchConvPrefillLayout<T, S, 8, 8>(p, stream);
      break;
    default:
      err = LaunchConvPrefillLayout<T, S, 4, 8>(p, stream);
      break;
  }
  if (err != cudaSuccess || p.width == 1) return err;
  const dim3 state_grid(static_cast<unsigned>((p.dim + kConvThreads - 1) / kConvThreads),
                        static_cast<unsigned>(p.num_seqs));
  CausalConv1dStateKernel<T, S><<<state_grid, kConvThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

template <typename T, typename S>
cudaError_t RunCausalConv1dDecode(const CausalConv1dParams& p, cudaStream_t stream) {
  if (p.num_seqs == 0) return cudaSuccess;
  const dim3 grid(static_cast<unsigned>((p.dim + kConvThreads - 1) / kConvThreads),
                  static_cast<unsigned>(p.num_seqs));
  if (PreloadBeforeWait(static_cast<int64_t>(grid.x) * grid.y)) {
    return LaunchKernel(CausalConv1dDecodeDependentKernel<T, S>, grid, dim3(kConvThreads), 0,
                        stream, /*dependent=*/true, p);
  }
  CausalConv1dDecodeKernel<T, S><<<grid, kConvThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

template <typename T>
cudaError_t RunCausalConv1dPrefillAnyState(const CausalConv1dParams& p, KernelDType state,
                                           cudaStream_t stream) {
  return state == KernelDType::kBF16 ? RunCausalConv1dPrefill<T, __nv_bfloat16>(p, stream)
                                     : RunCausalConv1dPrefill<T, float>(p, stream);
}

template <typename T>
cudaError_t RunCausalConv1dDecodeAnyState(const CausalConv1dParams& p, KernelDType state,
                                          cudaStream_t stream) {
  return state == KernelDType::kBF16 ? RunCausalConv1dDecode<T, __nv_bfloat16>(p, stream)
                                     : RunCausalConv1dDecode<T, float>(p, stream);
}

}  // namespace mamba::kernels
