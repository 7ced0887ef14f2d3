#include "engine/cuda/mamba1_mixer.h"

#include <cuda_runtime_api.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/cuda/device_memory.h"
#include "engine/cuda/weight_upload.h"
#include "kernels/causal_conv1d.h"
#include "kernels/cuda_status.h"
#include "kernels/dbc_norm.h"
#include "kernels/decode_step.h"
#include "kernels/max_abs.h"
#include "kernels/selective_scan.h"
#include "kernels/selective_state_update.h"

namespace mamba::cuda {
namespace {

// Sequences x segments the time-parallel scan can hold at once.
constexpr int64_t kScanSegmentEntries = 64;
// FusedDtMaxRows() (mamba1_mixer.h).
std::atomic<int64_t> fused_dt_max_rows{kDefaultFusedDtMaxRows};

using kernels::KernelDType;

void* Offset(void* p, int64_t elements, size_t elem_size) {
  return static_cast<uint8_t*>(p) + elements * static_cast<int64_t>(elem_size);
}

class Mamba1Mixer final : public Mixer {
 public:
  static absl::StatusOr<std::unique_ptr<Mixer>> Create(const MixerContext& context,
                                                       const model::ModelWeights& weights);

  size_t weight_bytes() const override { return weights_.size(); }
  size_t workspace_bytes() const override { return workspace_.size(); }
  absl::Status Forward(int layer, const ForwardBatch& batch, const StatePool& pool,
                       cudaStream_t stream, KernelTimer* timer) const override;
  const float* OutputBias(int layer) const override { return layers_[layer].out_proj_bias; }
  // bf16 has fp32's range; only f16 outputs can overflow.
  bool ScalesOutput() const override { return dtype_ == model::DType::kF16; }
  void AppendGemms(int64_t rows, bool decode, std::vector<kernels::GemmArgs>* out) const override;
  absl::StatusOr<bool> ForwardAllLayers(const ForwardBatch& batch, const StatePool& pool,
                                        cudaStream_t stream, KernelTimer* timer,
                                        float** head_residual) const override;

 private:
  struct Layer {
    const void* in_proj = nullptr;         // [2E, D]
    const float* in_proj_bias = nullptr;   // [2E] or null
    const float* conv_weight = nullptr;    // [E, d_conv]
    const float* conv_bias = nullptr;      // [E] or null
    const void* x_proj = nullptr;          // [R + 2N, E]
    const void* dt_proj = nullptr;         // [E, R]
    const float* dt_bias = nullptr;        // [E]
    const float* a2 = nullptr;             // [E, N]
    const float* d = nullptr;              // [E]
    const void* out_proj = nullptr;        // [D, E]
    const float* out_proj_bias = nullptr;  // [D] or null
  };

  explicit Mamba1Mixer(const MixerContext& context)
      : c_(*context.config),
        ctx_(context),
        dtype_(context.dtype),
        kdtype_(ToKernelDType(context.dtype)) {}
  absl::Status Upload(const model::ModelWeights& weights);
  absl::Status AllocateWorkspace();
  // The arguments of each GEMM for `rows` rows (so Forward and AppendGemms agree).
  kernels::GemmArgs InProj(const Layer& l, int64_t rows) const;
  kernels::GemmArgs XProj(const Layer& l, int64_t rows) const;
  kernels::GemmArgs DtProj(const Layer& l, int64_t rows) const;
  kernels::GemmArgs OutProj(const Layer& l, int64_t rows) const;
  // The persistent decode kernel's arguments for a decode batch (shapes only when `pool` is null).
  kernels::DecodeStepParams DecodeStep(const ForwardBatch& b, const StatePool* pool) const;
  // Whether a pass of `rows` rows takes dt from the low-rank projection inside the fused state
  // update (decode only, never in the batch-invariant mode, which takes it from the same GEMM as
  // prefill so that a sequence's tokens do not depend on its batch).
  bool UsesFusedDt(int64_t rows, bool decode) const;
  // FalconMamba: dt_low, B and C are RMS-normalized (no weight) right after x_proj; the
  // persistent decode kernel does not do that, so it is not used.
  bool falcon() const { return c_.family == model::ModelFamily::kFalconMamba; }

  const model::ModelConfig c_;
  const MixerContext ctx_;
  const model::DType dtype_;
  const KernelDType kdtype_;

  DeviceBuffer weights_;
  std::vector<Layer> layers_;
  DeviceBuffer layer_table_;  // [n_layer] kernels::DecodeStepLayer

  DeviceBuffer workspace_;
  int64_t dbc_ld_ = 0;   // row stride of [dt_low | B | C], padded to whole 16-byte vectors
  void* xz_ = nullptr;   // [tokens, 2E]
  void* xc_ = nullptr;   // [tokens, E] conv output
  void* dbc_ = nullptr;  // [tokens, dbc_ld_]
  void* dt_ = nullptr;   // [tokens, E] dt_proj output (before bias and softplus)
  void* y_ = nullptr;    // [tokens, E] gated SSM output
  // The time-parallel scan's scratch (prefill of few sequences; not in the deterministic mode).
  float* segment_state_ = nullptr;   // [kScanSegmentEntries, E, N]
  float* segment_dt_sum_ = nullptr;  // [kScanSegmentEntries, E]
};

absl::StatusOr<std::unique_ptr<Mixer>> Mamba1Mixer::Create(const MixerContext& context,
                                                           const model::ModelWeights& weights) {
  const model::ModelConfig& config = *context.config;
  if (config.d_conv > kernels::kConvMaxWidth || config.d_conv < 1) {
    return absl::InvalidArgumentError(absl::StrCat("the CUDA backend supports d_conv 1..",
                                                   kernels::kConvMaxWidth, " (the model has ",
                                                   config.d_conv, "); use --backend=cpu"));
  }
  if (config.d_state > kernels::kScanMaxState) {
    return absl::InvalidArgumentError(absl::StrCat("the CUDA backend supports d_state up to ",
                                                   kernels::kScanMaxState, " (the model has ",
                                                   config.d_state, "); use --backend=cpu"));
  }
  std::unique_ptr<Mamba1Mixer> m(new Mamba1Mixer(context));
  MAMBA_RETURN_IF_ERROR(m->Upload(weights));
  MAMBA_RETURN_IF_ERROR(m->AllocateWorkspace());
  return std::unique_ptr<Mixer>(std::move(m));
}

absl::Status Mamba1Mixer::Upload(const model::ModelWeights& w) {
  if (static_cast<int32_t>(w.layers.size()) != c_.n_layer) {
    return absl::InvalidArgumentError(
        absl::StrCat("weights have ", w.layers.size(), " layers, the config ", c_.n_layer));
  }
  const size_t half = model::DTypeSize(dtype_);
  const int64_t D = c_.d_model, E = c_.d_inner, N = c_.d_state, R = c_.dt_rank, K = c_.d_conv;
  struct LayerOffsets {
    size_t in_proj, in_proj_bias, conv_weight, conv_bias, x_proj, dt_proj, dt_bias, a2, d, out_proj,
        out_proj_bias;
  };
  BufferLayout layout;
  std::vector<LayerOffsets> offs(c_.n_layer);
  for (int l = 0; l < c_.n_layer; ++l) {
    const model::LayerWeights& lw = w.layers[l];
    LayerOffsets& o = offs[l];
    o.in_proj = layout.Reserve(2 * E * D * half);
    o.in_proj_bias = lw.in_proj_bias.empty() ? SIZE_MAX : layout.Reserve(2 * E * sizeof(float));
    o.conv_weight = layout.Reserve(E * K * sizeof(float));
    o.conv_bias = lw.conv_bias.empty() ? SIZE_MAX : layout.Reserve(E * sizeof(float));
    o.x_proj = layout.Reserve((R + 2 * N) * E * half);
    o.dt_proj = layout.Reserve(E * R * half);
    o.dt_bias = layout.Reserve(E * sizeof(float));
    o.a2 = layout.Reserve(E * N * sizeof(float));
    o.d = layout.Reserve(E * sizeof(float));
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
    MAMBA_RETURN_IF_ERROR(UploadMatrix(lw.x_proj, dtype_, at(o.x_proj), "uploading x_proj"));
    MAMBA_RETURN_IF_ERROR(UploadMatrix(lw.dt_proj, dtype_, at(o.dt_proj), "uploading dt_proj"));
    MAMBA_RETURN_IF_ERROR(UploadMatrix(lw.out_proj, dtype_, at(o.out_proj), "uploading out_proj"));
    MAMBA_RETURN_IF_ERROR(
        UploadOptionalVector(lw.in_proj_bias, atf(o.in_proj_bias), "uploading a bias"));
    MAMBA_RETURN_IF_ERROR(UploadOptionalVector(lw.conv_bias, atf(o.conv_bias), "uploading a bias"));
    MAMBA_RETURN_IF_ERROR(
        UploadOptionalVector(lw.out_proj_bias, atf(o.out_proj_bias), "uploading a bias"));
    MAMBA_RETURN_IF_ERROR(UploadVector(lw.conv, atf(o.conv_weight), "uploading conv1d"));
    MAMBA_RETURN_IF_ERROR(UploadVector(lw.dt_proj_bias, atf(o.dt_bias), "uploading dt bias"));
    MAMBA_RETURN_IF_ERROR(UploadVector(lw.d, atf(o.d), "uploading D"));
    // A = -exp(A_log), pre-scaled by log2(e) for the kernels' exp2.
    MAMBA_RETURN_IF_ERROR(UploadVector(lw.a_log, atf(o.a2), "uploading A", [](float a_log) {
      return static_cast<float>(-std::exp(static_cast<double>(a_log)) * 1.4426950408889634);
    }));
    L.in_proj = at(o.in_proj);
    L.in_proj_bias = atf(o.in_proj_bias);
    L.conv_weight = atf(o.conv_weight);
    L.conv_bias = atf(o.conv_bias);
    L.x_proj = at(o.x_proj);
    L.dt_proj = at(o.dt_proj);
    L.dt_bias = atf(o.dt_bias);
    L.a2 = atf(o.a2);
    L.d = atf(o.d);
    L.out_proj = at(o.out_proj);
    L.out_proj_bias = atf(o.out_proj_bias);
  }
  // The persistent decode kernel reads the layers' pointers (and their norms) from a device table.
  std::vector<kernels::DecodeStepLayer> table(c_.n_layer);
  for (int l = 0; l < c_.n_layer; ++l) {
    const Layer& L = layers_[l];
    table[l] = {L.in_proj, L.in_proj_bias, L.conv_weight,   L.conv_bias,
                L.x_proj,  L.dt_proj,      L.dt_bias,       L.a2,
                L.d,       L.out_proj,     L.out_proj_bias, ctx_.norms[l]};
  }
  MAMBA_ASSIGN_OR_RETURN(
      layer_table_, DeviceBuffer::Allocate(table.size() * sizeof(table[0]), "the layer table"));
  MAMBA_CUDA_RETURN_IF_ERROR(cudaMemcpy(layer_table_.data(), table.data(),
                                        table.size() * sizeof(table[0]), cudaMemcpyHostToDevice),
                             "uploading the layer table");
  return absl::OkStatus();
}

absl::Status Mamba1Mixer::AllocateWorkspace() {
  const size_t half = model::DTypeSize(dtype_);
  const int64_t T = ctx_.capacity_tokens;
  const int64_t E = c_.d_inner;
  dbc_ld_ = (c_.dt_rank + 2 * c_.d_state + 7) / 8 * 8;
  BufferLayout layout;
  const size_t xz = layout.Reserve(T * 2 * E * half);
  const size_t xc = layout.Reserve(T * E * half);
  const size_t dbc = layout.Reserve(T * dbc_ld_ * half);
  const size_t dt = layout.Reserve(T * E * half);
  const size_t y = layout.Reserve(T * E * half);
  const size_t seg_state = layout.Reserve(kScanSegmentEntries * E * c_.d_state * sizeof(float));
  const size_t seg_dt = layout.Reserve(kScanSegmentEntries * E * sizeof(float));
  MAMBA_ASSIGN_OR_RETURN(
      workspace_,
      DeviceBuffer::Allocate(layout.Bytes(), absl::StrCat("mixer activations for ", T, " tokens")));
  uint8_t* base = workspace_.as<uint8_t>();
  xz_ = base + xz;
  xc_ = base + xc;
  dbc_ = base + dbc;
  dt_ = base + dt;
  y_ = base + y;
  segment_state_ = reinterpret_cast<float*>(base + seg_state);
  segment_dt_sum_ = reinterpret_cast<float*>(base + seg_dt);
  return absl::OkStatus();
}

kernels::GemmArgs Mamba1Mixer::InProj(const Layer& l, int64_t rows) const {
  const int64_t D = c_.d_model, E = c_.d_inner;
  return {rows, 2 * E, D, ctx_.xn, D, l.in_proj, D, xz_, 2 * E, kdtype_, kdtype_};
}

kernels::GemmArgs Mamba1Mixer::XProj(const Layer& l, int64_t rows) const {
  const int64_t E = c_.d_inner;
  return {rows,   c_.dt_rank + 2 * c_.d_state, E, xc_, E, l.x_proj, E, dbc_, dbc_ld_, kdtype_,
          kdtype_};
}

kernels::GemmArgs Mamba1Mixer::DtProj(const Layer& l, int64_t rows) const {
  const int64_t E = c_.d_inner, R = c_.dt_rank;
  return {rows, E, R, dbc_, dbc_ld_, l.dt_proj, R, dt_, E, kdtype_, kdtype_};
}

kernels::GemmArgs Mamba1Mixer::OutProj(const Layer& l, int64_t rows) const {
  const int64_t D = c_.d_model, E = c_.d_inner;
  return {rows, D, E, y_, E, l.out_proj, E, ctx_.h, D, kdtype_, kdtype_};
}

kernels::DecodeStepParams Mamba1Mixer::DecodeStep(const ForwardBatch& b,
                                                  const StatePool* pool) const {
  kernels::DecodeStepParams p;
  p.rows = static_cast<int32_t>(b.tokens);
  p.n_layer = c_.n_layer;
  p.d_model = c_.d_model;
  p.d_inner = c_.d_inner;
  p.d_state = c_.d_state;
  p.dt_rank = c_.dt_rank;
  p.d_conv = c_.d_conv;
  p.eps = c_.layer_norm_epsilon;
  p.dbc_ld = dbc_ld_;
  if (pool == nullptr) return p;
  const model::StateLayout layout = model::StateLayoutOf(c_);
  p.layers = layer_table_.as<kernels::DecodeStepLayer>();
  p.embedding = ctx_.embedding;
  p.token_ids = b.token_ids;
  p.slots = b.slots;
  p.conv_state = pool->conv(0);
  p.ssm_state = pool->ssm(0);
  p.conv_layer_stride = layout.conv_elements_per_layer();
  p.ssm_layer_stride = layout.ssm_elements_per_layer();
  p.slot_stride = pool->slot_stride();
  p.residual[0] = ctx_.residual;
  p.residual[1] = ctx_.residual_alt;
  p.h = ctx_.h;
  p.xc = xc_;
  p.z = xz_;  // only z is stored (row stride E); the x half goes straight into the conv
  p.dbc = dbc_;
  p.y = y_;
  p.barrier = ctx_.barrier;
  return p;
}

bool Mamba1Mixer::UsesFusedDt(int64_t rows, bool decode) const {
  return decode && !ctx_.gemm->deterministic() && rows < FusedDtMaxRows() &&
         c_.dt_rank <= kernels::kStateUpdateMaxRank;
}

void Mamba1Mixer::AppendGemms(int64_t rows, bool decode,
                              std::vector<kernels::GemmArgs>* out) const {
  const Layer& l = layers_[0];
  out->push_back(InProj(l, rows));
  out->push_back(XProj(l, rows));
  out->push_back(OutProj(l, rows));
  if (!UsesFusedDt(rows, decode)) out->push_back(DtProj(l, rows));
}

absl::StatusOr<bool> Mamba1Mixer::ForwardAllLayers(const ForwardBatch& b, const StatePool& pool,
                                                   cudaStream_t stream, KernelTimer* timer,
                                                   float** head_residual) const {
  const KernelDType st = ToKernelDType(pool.dtype());
  // The persistent kernel adds each layer's output to the residual itself, unscaled.
  if (!b.decode || ctx_.gemm->deterministic() || falcon() || any_output_shift() ||
      b.tokens > kernels::kDecodeStepMaxRows ||
      !kernels::DecodeStepSupported(DecodeStep(b, nullptr), kdtype_, st)) {
    return false;
  }
  if (timer != nullptr) MAMBA_RETURN_IF_ERROR(timer->Mark("decode step (all layers)", stream));
  MAMBA_RETURN_IF_ERROR(kernels::LaunchDecodeStep(DecodeStep(b, &pool), kdtype_, st, stream));
  // The residual alternates between the two buffers, one per layer after the first.
  *head_residual = (c_.n_layer - 1) % 2 == 1 ? ctx_.residual_alt : ctx_.residual;
  return true;
}

absl::Status Mamba1Mixer::Forward(int li, const ForwardBatch& b, const StatePool& pool,
                                  cudaStream_t stream, KernelTimer* timer) const {
  auto mark = [&](const char* family) {
    return timer != nullptr ? timer->Mark(family, stream) : absl::OkStatus();
  };
  const int64_t T = b.tokens, E = c_.d_inner, N = c_.d_state, R = c_.dt_rank;
  const size_t half = model::DTypeSize(dtype_);
  const KernelDType act = kdtype_;
  const KernelDType st = ToKernelDType(pool.dtype());
  const bool fused_dt = UsesFusedDt(T, b.decode);
  const bool deterministic = ctx_.gemm->deterministic();
  const Layer& l = layers_[li];

  const kernels::GemmArgs in_proj = InProj(l, T);
  kernels::CausalConv1dParams conv;
  conv.num_seqs = b.seqs;
  conv.total_tokens = T;
  conv.dim = E;
  conv.width = c_.d_conv;
  conv.x = xz_;
  conv.x_row_stride = 2 * E;
  conv.x_bias = l.in_proj_bias;
  conv.weight = l.conv_weight;
  conv.bias = l.conv_bias;
  conv.out = xc_;
  conv.out_row_stride = E;
  conv.cu_seqlens = b.cu_seqlens;
  conv.slots = b.slots;
  conv.state = pool.conv(li);
  conv.state_slot_stride = pool.slot_stride();
  // In a decode step only this layer's conv touches its conv state, and norm or in_proj
  // precede it: the state may be read before they finish.
  conv.state_read_early = b.decode;
  if (b.decode && !deterministic && kernels::SkinnyGemmSupported(in_proj)) {
    // Few rows: the conv update rides in in_proj's epilogue (one launch fewer per layer).
    MAMBA_RETURN_IF_ERROR(mark("gemm in_proj+conv1d update"));
    MAMBA_RETURN_IF_ERROR(kernels::LaunchSkinnyGemmConv(in_proj, conv, st, stream));
  } else if (b.decode) {
    MAMBA_RETURN_IF_ERROR(mark("gemm in_proj"));
    MAMBA_RETURN_IF_ERROR(ctx_.gemm->Run(in_proj, stream));
    MAMBA_RETURN_IF_ERROR(mark("conv1d update"));
    MAMBA_RETURN_IF_ERROR(kernels::LaunchCausalConv1dDecode(conv, act, st, stream));
  } else {
    MAMBA_RETURN_IF_ERROR(mark("gemm in_proj"));
    MAMBA_RETURN_IF_ERROR(ctx_.gemm->Run(in_proj, stream));
    MAMBA_RETURN_IF_ERROR(mark("conv1d"));
    MAMBA_RETURN_IF_ERROR(kernels::LaunchCausalConv1dPrefill(conv, act, st, stream));
  }

  MAMBA_RETURN_IF_ERROR(mark("gemm x_proj"));
  MAMBA_RETURN_IF_ERROR(ctx_.gemm->Run(XProj(l, T), stream));
  if (falcon()) {
    kernels::DbcNormParams norm;
    norm.rows = T;
    norm.dt_rank = R;
    norm.dstate = N;
    norm.dbc = dbc_;
    norm.row_stride = dbc_ld_;
    norm.eps = c_.mixer_rms_eps;
    MAMBA_RETURN_IF_ERROR(mark("dt/B/C norm"));
    MAMBA_RETURN_IF_ERROR(kernels::LaunchDbcNorm(norm, act, stream));
  }
  if (!fused_dt) {
    MAMBA_RETURN_IF_ERROR(mark("gemm dt_proj"));
    MAMBA_RETURN_IF_ERROR(ctx_.gemm->Run(DtProj(l, T), stream));
  }

  const void* z = Offset(xz_, E, half);
  const float* z_bias = l.in_proj_bias != nullptr ? l.in_proj_bias + E : nullptr;
  if (b.decode) {
    kernels::SelectiveStateUpdateParams u;
    u.batch = T;
    u.dim = E;
    u.dstate = N;
    u.x = xc_;
    u.x_row_stride = E;
    u.z = z;
    u.z_row_stride = 2 * E;
    u.z_bias = z_bias;
    if (fused_dt) {
      u.dt_rank = R;
      u.dt_low = dbc_;
      u.dt_low_row_stride = dbc_ld_;
      u.dt_proj_weight = l.dt_proj;
    } else {
      u.dt = dt_;
      u.dt_row_stride = E;
    }
    u.b = Offset(dbc_, R, half);
    u.b_row_stride = dbc_ld_;
    u.c = Offset(dbc_, R + N, half);
    u.c_row_stride = dbc_ld_;
    u.dt_bias = l.dt_bias;
    u.a2 = l.a2;
    u.d = l.d;
    u.slots = b.slots;
    u.state = pool.ssm(li);
    u.state_slot_stride = pool.slot_stride();
    u.state_read_early = true;  // x_proj or dt_proj precede it; only it writes these states
    u.out = y_;
    u.out_row_stride = E;
    u.out_scale = std::ldexp(1.0f, -output_shift(li));
    MAMBA_RETURN_IF_ERROR(mark("ssm state update"));
    MAMBA_RETURN_IF_ERROR(kernels::LaunchSelectiveStateUpdate(u, act, st, stream));
  } else {
    kernels::SelectiveScanParams s;
    s.num_seqs = b.seqs;
    s.total_tokens = T;
    s.dim = E;
    s.dstate = N;
    s.x = xc_;
    s.x_row_stride = E;
    s.dt = dt_;
    s.dt_row_stride = E;
    s.z = z;
    s.z_row_stride = 2 * E;
    s.z_bias = z_bias;
    s.b = Offset(dbc_, R, half);
    s.b_row_stride = dbc_ld_;
    s.c = Offset(dbc_, R + N, half);
    s.c_row_stride = dbc_ld_;
    s.dt_bias = l.dt_bias;
    s.a2 = l.a2;
    s.d = l.d;
    s.out = y_;
    s.out_row_stride = E;
    s.out_scale = std::ldexp(1.0f, -output_shift(li));
    s.cu_seqlens = b.cu_seqlens;
    s.slots = b.slots;
    s.state = pool.ssm(li);
    s.state_slot_stride = pool.slot_stride();
    // Few long sequences: scan segments in parallel, unless results must be batch-invariant.
    s.allow_segments = !deterministic && b.max_seqlen > 0;
    s.max_seqlen = b.max_seqlen;
    s.segment_state = segment_state_;
    s.segment_dt_sum = segment_dt_sum_;
    s.segment_capacity = kScanSegmentEntries;
    MAMBA_RETURN_IF_ERROR(mark("selective scan"));
    MAMBA_RETURN_IF_ERROR(kernels::LaunchSelectiveScan(s, act, st, stream));
  }

  if (probe_ != nullptr) {
    kernels::MaxAbsParams m;
    m.rows = T;
    m.cols = E;
    m.x = y_;
    m.row_stride = E;
    m.out = probe_ + li;
    MAMBA_RETURN_IF_ERROR(kernels::LaunchMaxAbs(m, act, stream));
  }
  MAMBA_RETURN_IF_ERROR(mark("gemm out_proj"));
  return ctx_.gemm->Run(OutProj(l, T), stream);
}

}  // namespace

void SetFusedDtMaxRows(int64_t rows) { fused_dt_max_rows.store(rows, std::memory_order_relaxed); }
int64_t FusedDtMaxRows() { return fused_dt_max_rows.load(std::memory_order_relaxed); }

absl::StatusOr<std::unique_ptr<Mixer>> MakeMamba1Mixer(const MixerContext& context,
                                                       const model::ModelWeights& weights) {
  return Mamba1Mixer::Create(context, weights);
}

}  // namespace mamba::cuda
