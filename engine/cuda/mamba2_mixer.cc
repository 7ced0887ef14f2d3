#include "engine/cuda/mamba2_mixer.h"

#include <cuda_runtime_api.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/cuda/device_memory.h"
#include "engine/cuda/weight_upload.h"
#include "kernels/causal_conv1d.h"
#include "kernels/mamba2.h"

namespace mamba::cuda {
namespace {

using kernels::KernelDType;

// SsdChunkedMinTokens() (mamba2_mixer.h).
std::atomic<int64_t> ssd_chunked_min_tokens{kDefaultSsdChunkedMinTokens};

// Row strides of the mixer's activations are whole 16-byte vectors (the conv reads 4 or 8
// channels per access).
constexpr int64_t kRowAlign = 8;

int64_t RoundUp(int64_t v, int64_t to) { return (v + to - 1) / to * to; }

void* Offset(void* p, int64_t elements, size_t elem_size) {
  return static_cast<uint8_t*>(p) + elements * static_cast<int64_t>(elem_size);
}

class Mamba2Mixer final : public Mixer {
 public:
  static absl::StatusOr<std::unique_ptr<Mixer>> Create(const MixerContext& context,
                                                       const model::ModelWeights& weights);

  size_t weight_bytes() const override { return weights_.size(); }
  size_t workspace_bytes() const override { return workspace_.size(); }
  absl::Status Forward(int layer, const ForwardBatch& batch, const StatePool& pool,
                       cudaStream_t stream, KernelTimer* timer) const override;
  const float* OutputBias(int layer) const override { return layers_[layer].out_proj_bias; }
  void AppendGemms(int64_t rows, bool decode, std::vector<kernels::GemmArgs>* out) const override;

 private:
  struct Layer {
    const void* in_proj = nullptr;         // [width, D]
    const float* in_proj_bias = nullptr;   // [width] or null
    const float* conv_weight = nullptr;    // [conv_dim, d_conv]
    const float* conv_bias = nullptr;      // [conv_dim] or null
    const float* dt_bias = nullptr;        // [H]
    const float* a = nullptr;              // [H]: -exp(A_log)
    const float* d = nullptr;              // [H] or [d_ssm]
    const float* norm = nullptr;           // [d_ssm] or null
    const void* out_proj = nullptr;        // [D, d_inner]
    const float* out_proj_bias = nullptr;  // [D] or null
  };

  explicit Mamba2Mixer(const MixerContext& context)
      : c_(*context.config),
        ctx_(context),
        dtype_(context.dtype),
        kdtype_(ToKernelDType(context.dtype)),
        mlp_(c_.d_mlp()),
        ssm_(c_.d_ssm()),
        conv_dim_(c_.conv_dim()),
        width_(c_.in_proj_dim()),
        z_off_(2 * mlp_),
        xbc_off_(2 * mlp_ + ssm_),
        dt_off_(2 * mlp_ + ssm_ + conv_dim_),
        proj_ld_(RoundUp(width_, kRowAlign)),
        xbc_ld_(RoundUp(conv_dim_, kRowAlign)) {}
  absl::Status Upload(const model::ModelWeights& weights);
  absl::Status AllocateWorkspace();
  kernels::GemmArgs InProj(const Layer& l, int64_t rows) const;
  kernels::GemmArgs OutProj(const Layer& l, int64_t rows) const;

  const model::ModelConfig c_;
  const MixerContext ctx_;
  const model::DType dtype_;
  const KernelDType kdtype_;
  const int64_t mlp_, ssm_, conv_dim_, width_;
  const int64_t z_off_, xbc_off_, dt_off_;  // columns of in_proj's output
  const int64_t proj_ld_, xbc_ld_;

  DeviceBuffer weights_;
  std::vector<Layer> layers_;

  DeviceBuffer workspace_;
  void* proj_ = nullptr;   // [tokens, proj_ld_] in_proj output
  void* xbc_ = nullptr;    // [tokens, xbc_ld_] silu(conv(xBC))
  float* y_ = nullptr;     // [tokens, d_ssm] fp32 SSM output
  void* gated_ = nullptr;  // [tokens, d_inner] out_proj's input
};

absl::StatusOr<std::unique_ptr<Mixer>> Mamba2Mixer::Create(const MixerContext& context,
                                                           const model::ModelWeights& weights) {
  const model::ModelConfig& c = *context.config;
  if (c.d_conv > kernels::kConvMaxWidth || c.d_conv < 1) {
    return absl::InvalidArgumentError(absl::StrCat("the CUDA backend supports conv_kernel 1..",
                                                   kernels::kConvMaxWidth, " (the model has ",
                                                   c.d_conv, "); use --backend=cpu"));
  }
  if (c.d_state > kernels::kSsdMaxState || c.head_dim > kernels::kSsdMaxHeadDim) {
    return absl::InvalidArgumentError(
        absl::StrCat("the CUDA backend supports state_size up to ", kernels::kSsdMaxState,
                     " and head_dim up to ", kernels::kSsdMaxHeadDim, " (the model has ", c.d_state,
                     " and ", c.head_dim, "); use --backend=cpu"));
  }
  // The conv reads xBC in whole vectors of channels.
  if (c.conv_dim() % kRowAlign != 0 || (2 * c.d_mlp() + c.d_ssm()) % kRowAlign != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("the CUDA backend needs the conv width d_ssm + 2 * n_groups * state_size (",
                     c.conv_dim(), ") and 2 * d_mlp + d_ssm (", 2 * c.d_mlp() + c.d_ssm(),
                     ") to be multiples of ", kRowAlign, "; use --backend=cpu"));
  }
  std::unique_ptr<Mamba2Mixer> m(new Mamba2Mixer(context));
  MAMBA_RETURN_IF_ERROR(m->Upload(weights));
  MAMBA_RETURN_IF_ERROR(m->AllocateWorkspace());
  return std::unique_ptr<Mixer>(std::move(m));
}

absl::Status Mamba2Mixer::Upload(const model::ModelWeights& w) {
  if (static_cast<int32_t>(w.layers.size()) != c_.n_layer) {
    return absl::InvalidArgumentError(
        absl::StrCat("weights have ", w.layers.size(), " layers, the config ", c_.n_layer));
  }
  const size_t half = model::DTypeSize(dtype_);
  const int64_t D = c_.d_model, E = c_.d_inner, H = c_.n_heads, K = c_.d_conv;
  struct LayerOffsets {
    size_t in_proj, in_proj_bias, conv_weight, conv_bias, dt_bias, a, d, norm, out_proj,
        out_proj_bias;
  };
  BufferLayout layout;
  std::vector<LayerOffsets> offs(c_.n_layer);
  for (int l = 0; l < c_.n_layer; ++l) {
    const model::LayerWeights& lw = w.layers[l];
    LayerOffsets& o = offs[l];
    o.in_proj = layout.Reserve(width_ * D * half);
    o.in_proj_bias = lw.in_proj_bias.empty() ? SIZE_MAX : layout.Reserve(width_ * sizeof(float));
    o.conv_weight = layout.Reserve(conv_dim_ * K * sizeof(float));
    o.conv_bias = lw.conv_bias.empty() ? SIZE_MAX : layout.Reserve(conv_dim_ * sizeof(float));
    o.dt_bias = layout.Reserve(H * sizeof(float));
    o.a = layout.Reserve(H * sizeof(float));
    o.d = layout.Reserve((c_.d_per_channel ? ssm_ : H) * sizeof(float));
    o.norm = lw.gated_norm.empty() ? SIZE_MAX : layout.Reserve(ssm_ * sizeof(float));
    o.out_proj = layout.Reserve(D * E * half);
    o.out_proj_bias = lw.out_proj_bias.empty() ? SIZE_MAX : layout.Reserve(D * sizeof(float));
  }
  MAMBA_ASSIGN_OR_RETURN(weights_,
                         DeviceBuffer::Allocate(layout.Bytes(), "the model's layer weights"));
  uint8_t* base = weights_.as<uint8_t>();
  auto at = [&](size_t off) -> void* { return off == SIZE_MAX ? nullptr : base + off; };
  auto atf = [&](size_t off) -> float* { return static_cast<float*>(at(off)); };

  layers_.resize(c_.n_layer);
  for (int l = 0; l < c_.n_layer; ++l) {
    const model::LayerWeights& lw = w.layers[l];
    const LayerOffsets& o = offs[l];
    Layer& L = layers_[l];
    MAMBA_RETURN_IF_ERROR(UploadMatrix(lw.in_proj, dtype_, at(o.in_proj), "uploading in_proj"));
    MAMBA_RETURN_IF_ERROR(UploadMatrix(lw.out_proj, dtype_, at(o.out_proj), "uploading out_proj"));
    MAMBA_RETURN_IF_ERROR(
        UploadOptionalVector(lw.in_proj_bias, atf(o.in_proj_bias), "uploading a bias"));
    MAMBA_RETURN_IF_ERROR(UploadOptionalVector(lw.conv_bias, atf(o.conv_bias), "uploading a bias"));
    MAMBA_RETURN_IF_ERROR(
        UploadOptionalVector(lw.out_proj_bias, atf(o.out_proj_bias), "uploading a bias"));
    MAMBA_RETURN_IF_ERROR(
        UploadOptionalVector(lw.gated_norm, atf(o.norm), "uploading the gated norm"));
    MAMBA_RETURN_IF_ERROR(UploadVector(lw.conv, atf(o.conv_weight), "uploading conv1d"));
    MAMBA_RETURN_IF_ERROR(UploadVector(lw.dt_bias, atf(o.dt_bias), "uploading dt bias"));
    MAMBA_RETURN_IF_ERROR(UploadVector(lw.d, atf(o.d), "uploading D"));
    MAMBA_RETURN_IF_ERROR(UploadVector(lw.a_log, atf(o.a), "uploading A", [](float a_log) {
      return static_cast<float>(-std::exp(static_cast<double>(a_log)));
    }));
    L.in_proj = at(o.in_proj);
    L.in_proj_bias = atf(o.in_proj_bias);
    L.conv_weight = atf(o.conv_weight);
    L.conv_bias = atf(o.conv_bias);
    L.dt_bias = atf(o.dt_bias);
    L.a = atf(o.a);
    L.d = atf(o.d);
    L.norm = atf(o.norm);
    L.out_proj = at(o.out_proj);
    L.out_proj_bias = atf(o.out_proj_bias);
  }
  return absl::OkStatus();
}

absl::Status Mamba2Mixer::AllocateWorkspace() {
  const size_t half = model::DTypeSize(dtype_);
  const int64_t T = ctx_.capacity_tokens;
  BufferLayout layout;
  const size_t proj = layout.Reserve(T * proj_ld_ * half);
  const size_t xbc = layout.Reserve(T * xbc_ld_ * half);
  const size_t y = layout.Reserve(T * ssm_ * sizeof(float));
  const size_t gated = layout.Reserve(T * c_.d_inner * half);
  MAMBA_ASSIGN_OR_RETURN(
      workspace_,
      DeviceBuffer::Allocate(layout.Bytes(), absl::StrCat("mixer activations for ", T, " tokens")));
  uint8_t* base = workspace_.as<uint8_t>();
  proj_ = base + proj;
  xbc_ = base + xbc;
  y_ = reinterpret_cast<float*>(base + y);
  gated_ = base + gated;
  return absl::OkStatus();
}

kernels::GemmArgs Mamba2Mixer::InProj(const Layer& l, int64_t rows) const {
  const int64_t D = c_.d_model;
  return {rows, width_, D, ctx_.xn, D, l.in_proj, D, proj_, proj_ld_, kdtype_, kdtype_};
}

kernels::GemmArgs Mamba2Mixer::OutProj(const Layer& l, int64_t rows) const {
  const int64_t D = c_.d_model, E = c_.d_inner;
  return {rows, D, E, gated_, E, l.out_proj, E, ctx_.h, D, kdtype_, kdtype_};
}

void Mamba2Mixer::AppendGemms(int64_t rows, bool decode,
                              std::vector<kernels::GemmArgs>* out) const {
  (void)decode;
  out->push_back(InProj(layers_[0], rows));
  out->push_back(OutProj(layers_[0], rows));
}

absl::Status Mamba2Mixer::Forward(int li, const ForwardBatch& b, const StatePool& pool,
                                  cudaStream_t stream, KernelTimer* timer) const {
  auto mark = [&](const char* family) {
    return timer != nullptr ? timer->Mark(family, stream) : absl::OkStatus();
  };
  const int64_t T = b.tokens;
  const size_t half = model::DTypeSize(dtype_);
  const KernelDType act = kdtype_;
  const KernelDType st = ToKernelDType(pool.dtype());
  const Layer& l = layers_[li];
  const float* in_bias = l.in_proj_bias;
  auto bias_at = [&](int64_t col) { return in_bias != nullptr ? in_bias + col : nullptr; };

  MAMBA_RETURN_IF_ERROR(mark("gemm in_proj"));
  MAMBA_RETURN_IF_ERROR(ctx_.gemm->Run(InProj(l, T), stream));

  kernels::CausalConv1dParams conv;
  conv.num_seqs = b.seqs;
  conv.total_tokens = T;
  conv.dim = conv_dim_;
  conv.width = c_.d_conv;
  conv.x = Offset(proj_, xbc_off_, half);
  conv.x_row_stride = proj_ld_;
  conv.x_bias = bias_at(xbc_off_);
  conv.weight = l.conv_weight;
  conv.bias = l.conv_bias;
  conv.out = xbc_;
  conv.out_row_stride = xbc_ld_;
  conv.cu_seqlens = b.cu_seqlens;
  conv.slots = b.slots;
  conv.state = pool.conv(li);
  conv.state_slot_stride = pool.slot_stride();
  conv.state_read_early = b.decode;  // in_proj precedes it and never writes conv states
  if (b.decode) {
    MAMBA_RETURN_IF_ERROR(mark("conv1d update"));
    MAMBA_RETURN_IF_ERROR(kernels::LaunchCausalConv1dDecode(conv, act, st, stream));
  } else {
    MAMBA_RETURN_IF_ERROR(mark("conv1d"));
    MAMBA_RETURN_IF_ERROR(kernels::LaunchCausalConv1dPrefill(conv, act, st, stream));
  }

  kernels::SsdScanParams s;
  s.num_seqs = b.seqs;
  s.total_tokens = T;
  s.n_heads = c_.n_heads;
  s.head_dim = c_.head_dim;
  s.n_groups = c_.n_groups;
  s.dstate = c_.d_state;
  s.x = xbc_;
  s.b = Offset(xbc_, ssm_, half);
  s.c = Offset(xbc_, ssm_ + int64_t{c_.n_groups} * c_.d_state, half);
  s.xbc_row_stride = xbc_ld_;
  s.dt = Offset(proj_, dt_off_, half);
  s.dt_row_stride = proj_ld_;
  s.dt_in_bias = bias_at(dt_off_);
  s.dt_bias = l.dt_bias;
  s.dt_min = c_.time_step_limit_min;
  s.dt_max = c_.time_step_limit_max;
  s.a = l.a;
  s.d = l.d;
  s.d_per_channel = c_.d_per_channel;
  s.cu_seqlens = b.decode ? nullptr : b.cu_seqlens;
  s.slots = b.slots;
  s.state = pool.ssm(li);
  s.state_slot_stride = pool.slot_stride();
  s.out = y_;
  s.out_row_stride = ssm_;
  const bool chunked = !b.decode && !ctx_.gemm->deterministic() && SsdChunkedMinTokens() > 0 &&
                       b.max_seqlen >= SsdChunkedMinTokens();
  if (chunked) {
    s.chunked_min_tokens = SsdChunkedMinTokens();
    s.max_seqlen = b.max_seqlen;
  }
  MAMBA_RETURN_IF_ERROR(mark(b.decode ? "ssm state update" : chunked ? "ssd chunked" : "ssd scan"));
  MAMBA_RETURN_IF_ERROR(kernels::LaunchSsdScan(s, act, st, stream));

  kernels::GatedNormParams g;
  g.rows = T;
  g.dim = ssm_;
  g.group_size = ssm_ / c_.n_groups;
  g.mlp = mlp_;
  g.y = y_;
  g.y_row_stride = ssm_;
  g.z = Offset(proj_, z_off_, half);
  g.z0 = proj_;
  g.x0 = Offset(proj_, mlp_, half);
  g.proj_row_stride = proj_ld_;
  g.z_bias = bias_at(z_off_);
  g.z0_bias = bias_at(0);
  g.x0_bias = bias_at(mlp_);
  g.weight = c_.gated_norm ? l.norm : nullptr;
  g.eps = c_.gated_norm_epsilon;
  g.out = gated_;
  g.out_row_stride = c_.d_inner;
  MAMBA_RETURN_IF_ERROR(mark("gated norm"));
  MAMBA_RETURN_IF_ERROR(kernels::LaunchGatedNorm(g, act, stream));

  MAMBA_RETURN_IF_ERROR(mark("gemm out_proj"));
  return ctx_.gemm->Run(OutProj(l, T), stream);
}

}  // namespace

void SetSsdChunkedMinTokens(int64_t tokens) {
  ssd_chunked_min_tokens.store(tokens, std::memory_order_relaxed);
}
int64_t SsdChunkedMinTokens() { return ssd_chunked_min_tokens.load(std::memory_order_relaxed); }

absl::StatusOr<std::unique_ptr<Mixer>> MakeMamba2Mixer(const MixerContext& context,
                                                       const model::ModelWeights& weights) {
  return Mamba2Mixer::Create(context, weights);
}

}  // namespace mamba::cuda
