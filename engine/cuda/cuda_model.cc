#include "engine/cuda/cuda_model.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <atomic>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/causal_conv1d.h"
#include "kernels/cuda_status.h"
#include "kernels/decode_step.h"
#include "kernels/gemm.h"
#include "kernels/rms_norm.h"
#include "kernels/sampling.h"
#include "kernels/selective_scan.h"
#include "kernels/selective_state_update.h"

namespace mamba::cuda {
namespace {

// Sequences x segments the time-parallel scan can hold at once.
constexpr int64_t kScanSegmentEntries = 64;
// FusedDtMaxRows() (cuda_model.h).
std::atomic<int64_t> fused_dt_max_rows{kDefaultFusedDtMaxRows};

using kernels::KernelDType;

void* Offset(void* p, int64_t elements, size_t elem_size) {
  return static_cast<uint8_t*>(p) + elements * static_cast<int64_t>(elem_size);
}

// Copies a matrix to the device in `target` (f16 or bf16), converting in bounded chunks.
absl::Status UploadMatrix(const model::TensorView& v, model::DType target, void* dst,
                          const char* what) {
  const size_t n = static_cast<size_t>(v.numel());
  if (v.dtype == target) {
    MAMBA_CUDA_RETURN_IF_ERROR(
        cudaMemcpy(dst, v.data, n * model::DTypeSize(target), cudaMemcpyHostToDevice), what);
    return absl::OkStatus();
  }
  constexpr size_t kChunk = size_t{1} << 20;
  std::vector<float> f(std::min(n, kChunk));
  std::vector<uint16_t> h(std::min(n, kChunk));
  for (size_t off = 0; off < n; off += kChunk) {
    const size_t c = std::min(kChunk, n - off);
    model::ConvertToFloat(v.dtype,
                          static_cast<const uint8_t*>(v.data) + off * model::DTypeSize(v.dtype),
                          f.data(), c);
    model::ConvertFromFloat(target, f.data(), h.data(), c);
    MAMBA_CUDA_RETURN_IF_ERROR(
        cudaMemcpy(static_cast<uint8_t*>(dst) + off * 2, h.data(), c * 2, cudaMemcpyHostToDevice),
        what);
  }
  return absl::OkStatus();
}

// Copies a small tensor to the device in fp32, optionally transformed element by element.
template <typename Fn>
absl::Status UploadVector(const model::TensorView& v, float* dst, const char* what, Fn fn) {
  std::vector<float> f(static_cast<size_t>(v.numel()));
  model::ConvertToFloat(v.dtype, v.data, f.data(), f.size());
  for (float& x : f) x = fn(x);
  MAMBA_CUDA_RETURN_IF_ERROR(
      cudaMemcpy(dst, f.data(), f.size() * sizeof(float), cudaMemcpyHostToDevice), what);
  return absl::OkStatus();
}
absl::Status UploadVector(const model::TensorView& v, float* dst, const char* what) {
  return UploadVector(v, dst, what, [](float x) { return x; });
}

}  // namespace

void SetFusedDtMaxRows(int64_t rows) { fused_dt_max_rows.store(rows, std::memory_order_relaxed); }
int64_t FusedDtMaxRows() { return fused_dt_max_rows.load(std::memory_order_relaxed); }

KernelDType ToKernelDType(model::DType t) {
  switch (t) {
    case model::DType::kF32:
      return KernelDType::kF32;
    case model::DType::kF16:
      return KernelDType::kF16;
    case model::DType::kBF16:
      return KernelDType::kBF16;
  }
  return KernelDType::kF32;
}

absl::StatusOr<std::unique_ptr<CudaModel>> CudaModel::Create(
    const model::ModelConfig& config, const model::ModelWeights& weights, model::DType dtype,
    const Capacity& capacity, bool deterministic, kernels::CublasLtGemm* gemm) {
  if (dtype != model::DType::kF16 && dtype != model::DType::kBF16) {
    return absl::InvalidArgumentError(absl::StrCat("CUDA weights must be f16 or bf16, not ",
                                                   std::string(model::DTypeName(dtype))));
  }
  if (capacity.tokens < 1 || capacity.head_rows < 1 || capacity.head_rows > capacity.tokens) {
    return absl::InvalidArgumentError("CUDA model: invalid workspace capacity");
  }
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
  if (config.d_model > kernels::kRmsNormMaxDim) {
    return absl::InvalidArgumentError(absl::StrCat("the CUDA backend supports d_model up to ",
                                                   kernels::kRmsNormMaxDim, " (the model has ",
                                                   config.d_model, "); use --backend=cpu"));
  }
  if (config.vocab_size > kernels::kSamplingMaxVocab) {
    return absl::InvalidArgumentError(
        absl::StrCat("the CUDA backend samples vocabularies up to ", kernels::kSamplingMaxVocab,
                     " tokens (the model has ", config.vocab_size, "); use --backend=cpu"));
  }
  if (!deterministic && gemm == nullptr) {
    return absl::InvalidArgumentError("CUDA model: a cuBLASLt runner is required");
  }
  std::unique_ptr<CudaModel> m(new CudaModel());
  m->config_ = config;
  m->dtype_ = dtype;
  m->kdtype_ = ToKernelDType(dtype);
  m->capacity_ = capacity;
  m->deterministic_ = deterministic;
  m->gemm_ = gemm;
  MAMBA_RETURN_IF_ERROR(m->Upload(weights));
  MAMBA_RETURN_IF_ERROR(m->AllocateWorkspace());
  return m;
}

absl::Status CudaModel::Upload(const model::ModelWeights& w) {
  const model::ModelConfig& c = config_;
  if (static_cast<int32_t>(w.layers.size()) != c.n_layer) {
    return absl::InvalidArgumentError(
        absl::StrCat("weights have ", w.layers.size(), " layers, the config ", c.n_layer));
  }
  const size_t half = model::DTypeSize(dtype_);
  const int64_t D = c.d_model, E = c.d_inner, N = c.d_state, R = c.dt_rank, K = c.d_conv;
  const int64_t V = c.vocab_size;
  struct LayerOffsets {
    size_t in_proj, in_proj_bias, conv_weight, conv_bias, x_proj, dt_proj, dt_bias, a2, d, out_proj,
        out_proj_bias, norm;
  };
  BufferLayout layout;
  const size_t emb_off = layout.Reserve(V * D * half);
  const bool tied = w.lm_head_tied || w.lm_head.data == w.embedding.data;
  const size_t lm_off = tied ? emb_off : layout.Reserve(V * D * half);
  const size_t norm_f_off = layout.Reserve(D * sizeof(float));
  std::vector<LayerOffsets> offs(c.n_layer);
  for (int l = 0; l < c.n_layer; ++l) {
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
    o.norm = layout.Reserve(D * sizeof(float));
  }
  MAMBA_ASSIGN_OR_RETURN(weights_, DeviceBuffer::Allocate(layout.Bytes(), "the model weights"));
  weight_bytes_ = layout.Bytes();
  uint8_t* base = weights_.as<uint8_t>();
  auto at = [&](size_t off) -> void* { return off == SIZE_MAX ? nullptr : base + off; };
  auto atf = [&](size_t off) -> float* { return static_cast<float*>(at(off)); };

  MAMBA_RETURN_IF_ERROR(UploadMatrix(w.embedding, dtype_, at(emb_off), "uploading the embedding"));
  if (!tied) {
    MAMBA_RETURN_IF_ERROR(UploadMatrix(w.lm_head, dtype_, at(lm_off), "uploading lm_head"));
  }
  MAMBA_RETURN_IF_ERROR(UploadVector(w.norm_f, atf(norm_f_off), "uploading norm_f"));
  embedding_ = at(emb_off);
  lm_head_ = at(lm_off);
  norm_f_ = atf(norm_f_off);

  layers_.resize(c.n_layer);
  for (int l = 0; l < c.n_layer; ++l) {
    const model::LayerWeights& lw = w.layers[l];
    const LayerOffsets& o = offs[l];
    Layer& L = layers_[l];
    MAMBA_RETURN_IF_ERROR(UploadMatrix(lw.in_proj, dtype_, at(o.in_proj), "uploading in_proj"));
    MAMBA_RETURN_IF_ERROR(UploadMatrix(lw.x_proj, dtype_, at(o.x_proj), "uploading x_proj"));
    MAMBA_RETURN_IF_ERROR(UploadMatrix(lw.dt_proj, dtype_, at(o.dt_proj), "uploading dt_proj"));
    MAMBA_RETURN_IF_ERROR(UploadMatrix(lw.out_proj, dtype_, at(o.out_proj), "uploading out_proj"));
    if (!lw.in_proj_bias.empty()) {
      MAMBA_RETURN_IF_ERROR(UploadVector(lw.in_proj_bias, atf(o.in_proj_bias), "uploading a bias"));
    }
    if (!lw.conv_bias.empty()) {
      MAMBA_RETURN_IF_ERROR(UploadVector(lw.conv_bias, atf(o.conv_bias), "uploading a bias"));
    }
    if (!lw.out_proj_bias.empty()) {
      MAMBA_RETURN_IF_ERROR(
          UploadVector(lw.out_proj_bias, atf(o.out_proj_bias), "uploading a bias"));
    }
    MAMBA_RETURN_IF_ERROR(UploadVector(lw.conv, atf(o.conv_weight), "uploading conv1d"));
    MAMBA_RETURN_IF_ERROR(UploadVector(lw.dt_proj_bias, atf(o.dt_bias), "uploading dt bias"));
    MAMBA_RETURN_IF_ERROR(UploadVector(lw.d, atf(o.d), "uploading D"));
    MAMBA_RETURN_IF_ERROR(UploadVector(lw.norm, atf(o.norm), "uploading a norm"));
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
    L.norm = atf(o.norm);
  }
  // The persistent decode kernel reads the layers' pointers from a device table.
  std::vector<kernels::DecodeStepLayer> table(c.n_layer);
  for (int l = 0; l < c.n_layer; ++l) {
    const Layer& L = layers_[l];
    table[l] = {L.in_proj, L.in_proj_bias, L.conv_weight, L.conv_bias, L.x_proj,        L.dt_proj,
                L.dt_bias, L.a2,           L.d,           L.out_proj,  L.out_proj_bias, L.norm};
  }
  MAMBA_ASSIGN_OR_RETURN(
      layer_table_, DeviceBuffer::Allocate(table.size() * sizeof(table[0]), "the layer table"));
  MAMBA_CUDA_RETURN_IF_ERROR(cudaMemcpy(layer_table_.data(), table.data(),
                                        table.size() * sizeof(table[0]), cudaMemcpyHostToDevice),
                             "uploading the layer table");
  return absl::OkStatus();
}

absl::Status CudaModel::AllocateWorkspace() {
  const model::ModelConfig& c = config_;
  const size_t half = model::DTypeSize(dtype_);
  const int64_t T = capacity_.tokens, H = capacity_.head_rows;
  const int64_t D = c.d_model, E = c.d_inner, V = c.vocab_size;
  dbc_ld_ = (c.dt_rank + 2 * c.d_state + 7) / 8 * 8;
  BufferLayout layout;
  const size_t residual = layout.Reserve(T * D * sizeof(float));
  const size_t xn = layout.Reserve(T * D * half);
  const size_t xz = layout.Reserve(T * 2 * E * half);
  const size_t xc = layout.Reserve(T * E * half);
  const size_t dbc = layout.Reserve(T * dbc_ld_ * half);
  const size_t dt = layout.Reserve(T * E * half);
  const size_t y = layout.Reserve(T * E * half);
  const size_t h = layout.Reserve(T * D * half);
  const size_t logits = layout.Reserve(H * V * sizeof(float));
  const size_t scratch = layout.Reserve(H * V * sizeof(float));
  const size_t partials =
      layout.Reserve(H * kernels::kSamplingMaxSplits * sizeof(kernels::SamplingPartial));
  const size_t seg_state = layout.Reserve(kScanSegmentEntries * E * c.d_state * sizeof(float));
  const size_t seg_dt = layout.Reserve(kScanSegmentEntries * E * sizeof(float));
  const size_t residual_alt = layout.Reserve(kernels::kDecodeStepMaxRows * D * sizeof(float));
  const size_t barrier = layout.Reserve(2 * sizeof(unsigned int));
  MAMBA_ASSIGN_OR_RETURN(
      workspace_, DeviceBuffer::Allocate(layout.Bytes(),
                                         absl::StrCat("activations for ", T, " tokens per pass")));
  uint8_t* base = workspace_.as<uint8_t>();
  residual_ = reinterpret_cast<float*>(base + residual);
  xn_ = base + xn;
  xz_ = base + xz;
  xc_ = base + xc;
  dbc_ = base + dbc;
  dt_ = base + dt;
  y_ = base + y;
  h_ = base + h;
  logits_ = reinterpret_cast<float*>(base + logits);
  sample_scratch_ = reinterpret_cast<float*>(base + scratch);
  sample_partials_ = reinterpret_cast<kernels::SamplingPartial*>(base + partials);
  segment_state_ = reinterpret_cast<float*>(base + seg_state);
  segment_dt_sum_ = reinterpret_cast<float*>(base + seg_dt);
  residual_alt_ = reinterpret_cast<float*>(base + residual_alt);
  step_barrier_ = reinterpret_cast<unsigned int*>(base + barrier);
  MAMBA_CUDA_RETURN_IF_ERROR(cudaMemset(step_barrier_, 0, 2 * sizeof(unsigned int)),
                             "clearing the decode barrier");
  return absl::OkStatus();
}

kernels::GemmArgs CudaModel::InProj(const Layer& l, int64_t rows) const {
  const int64_t D = config_.d_model, E = config_.d_inner;
  return {rows, 2 * E, D, xn_, D, l.in_proj, D, xz_, 2 * E, kdtype_, kdtype_};
}

kernels::GemmArgs CudaModel::XProj(const Layer& l, int64_t rows) const {
  const int64_t E = config_.d_inner;
  return {
      rows,   config_.dt_rank + 2 * config_.d_state, E, xc_, E, l.x_proj, E, dbc_, dbc_ld_, kdtype_,
      kdtype_};
}

kernels::GemmArgs CudaModel::DtProj(const Layer& l, int64_t rows) const {
  const int64_t E = config_.d_inner, R = config_.dt_rank;
  return {rows, E, R, dbc_, dbc_ld_, l.dt_proj, R, dt_, E, kdtype_, kdtype_};
}

kernels::GemmArgs CudaModel::OutProj(const Layer& l, int64_t rows) const {
  const int64_t D = config_.d_model, E = config_.d_inner;
  return {rows, D, E, y_, E, l.out_proj, E, h_, D, kdtype_, kdtype_};
}

kernels::GemmArgs CudaModel::LmHead(int64_t rows) const {
  const int64_t D = config_.d_model, V = config_.vocab_size;
  return {rows, V, D, xn_, D, lm_head_, D, logits_, V, kdtype_, KernelDType::kF32};
}

kernels::DecodeStepParams CudaModel::DecodeStep(const ForwardBatch& b,
                                                const StatePool* pool) const {
  const model::ModelConfig& c = config_;
  kernels::DecodeStepParams p;
  p.rows = static_cast<int32_t>(b.tokens);
  p.n_layer = c.n_layer;
  p.d_model = c.d_model;
  p.d_inner = c.d_inner;
  p.d_state = c.d_state;
  p.dt_rank = c.dt_rank;
  p.d_conv = c.d_conv;
  p.eps = c.layer_norm_epsilon;
  p.dbc_ld = dbc_ld_;
  if (pool == nullptr) return p;
  p.layers = layer_table_.as<kernels::DecodeStepLayer>();
  p.embedding = embedding_;
  p.token_ids = b.token_ids;
  p.slots = b.slots;
  p.conv_state = pool->conv(0);
  p.ssm_state = pool->ssm(0);
  p.conv_layer_stride = model::StateLayoutOf(c).conv_elements_per_layer();
  p.ssm_layer_stride = model::StateLayoutOf(c).ssm_elements_per_layer();
  p.slot_stride = pool->slot_stride();
  p.residual[0] = residual_;
  p.residual[1] = residual_alt_;
  p.h = h_;
  p.xc = xc_;
  p.z = xz_;  // only z is stored (row stride E); the x half goes straight into the conv
  p.dbc = dbc_;
  p.y = y_;
  p.barrier = step_barrier_;
  return p;
}

bool CudaModel::UsesFusedDt(int64_t rows, bool decode) const {
  return decode && !deterministic_ && rows < FusedDtMaxRows() &&
         config_.dt_rank <= kernels::kStateUpdateMaxRank;
}

bool CudaModel::UsesDecodeStep(const ForwardBatch& b, KernelDType state) const {
  return b.decode && !deterministic_ && b.tokens <= kernels::kDecodeStepMaxRows &&
         kernels::DecodeStepSupported(DecodeStep(b, nullptr), kdtype_, state);
}

absl::Status CudaModel::Gemm(const kernels::GemmArgs& args, cudaStream_t stream) const {
  if (deterministic_) return kernels::LaunchBatchInvariantGemm(args, stream);
  // Decode-sized products stream W once with the skinny kernel; cuBLAS's tiles leave most of
  // the GPU idle there.
  if (kernels::SkinnyGemmSupported(args)) return kernels::LaunchSkinnyGemm(args, stream);
  return gemm_->Run(args, stream);
}

absl::Status CudaModel::PrepareGemms(int64_t tokens, int64_t head_rows, bool decode,
                                     cudaStream_t stream) const {
  if (deterministic_) return absl::OkStatus();
  const Layer& l = layers_[0];
  std::vector<kernels::GemmArgs> gemms = {InProj(l, tokens), XProj(l, tokens), OutProj(l, tokens)};
  if (!UsesFusedDt(tokens, decode)) gemms.push_back(DtProj(l, tokens));
  if (head_rows > 0) gemms.push_back(LmHead(head_rows));
  for (const kernels::GemmArgs& g : gemms) {
    if (!kernels::SkinnyGemmSupported(g)) MAMBA_RETURN_IF_ERROR(gemm_->Prepare(g, stream));
  }
  return absl::OkStatus();
}

absl::Status CudaModel::Forward(const ForwardBatch& b, const StatePool& pool, cudaStream_t stream,
                                KernelTimer* timer) const {
  if (b.tokens < 1 || b.tokens > capacity_.tokens || b.seqs < 1 || b.seqs > b.tokens ||
      b.head_rows < 0 || b.head_rows > capacity_.head_rows || (b.decode && b.seqs != b.tokens)) {
    return absl::InvalidArgumentError(
        absl::StrCat("forward: ", b.tokens, " tokens, ", b.seqs, " sequences, ", b.head_rows,
                     " head rows do not fit the workspace (", capacity_.tokens, " tokens, ",
                     capacity_.head_rows, " head rows)"));
  }
  auto mark = [&](const char* family) {
    return timer != nullptr ? timer->Mark(family, stream) : absl::OkStatus();
  };
  const model::ModelConfig& c = config_;
  const int64_t T = b.tokens, D = c.d_model, E = c.d_inner, N = c.d_state, R = c.dt_rank;
  const size_t half = model::DTypeSize(dtype_);
  const KernelDType act = kdtype_;
  const KernelDType st = ToKernelDType(pool.dtype());
  const bool fused_dt = UsesFusedDt(T, b.decode);

  // Few decode rows: every layer in one persistent kernel, leaving what the layered loop below
  // leaves for the head (h_ and the residual before it), the residual in one of two buffers.
  const bool persistent = UsesDecodeStep(b, st);
  float* head_residual = residual_;
  if (persistent) {
    MAMBA_RETURN_IF_ERROR(mark("decode step (all layers)"));
    MAMBA_RETURN_IF_ERROR(kernels::LaunchDecodeStep(DecodeStep(b, &pool), act, st, stream));
    if ((c.n_layer - 1) % 2 == 1) head_residual = residual_alt_;
  }
  const int layered = persistent ? 0 : c.n_layer;
  for (int li = 0; li < layered; ++li) {
    const Layer& l = layers_[li];
    kernels::RmsNormParams norm;
    norm.rows = T;
    norm.dim = D;
    norm.residual = residual_;
    norm.residual_row_stride = D;
    norm.write_residual = true;
    norm.weight = l.norm;
    norm.out = xn_;
    norm.out_row_stride = D;
    norm.eps = c.layer_norm_epsilon;
    if (li == 0) {
      norm.tokens = b.token_ids;
      norm.embedding = embedding_;
      MAMBA_RETURN_IF_ERROR(mark("embed+norm"));
    } else {
      norm.add = h_;
      norm.add_row_stride = D;
      norm.add_bias = layers_[li - 1].out_proj_bias;
      MAMBA_RETURN_IF_ERROR(mark("add+norm"));
    }
    MAMBA_RETURN_IF_ERROR(kernels::LaunchRmsNorm(norm, act, stream));

    const kernels::GemmArgs in_proj = InProj(l, T);
    kernels::CausalConv1dParams conv;
    conv.num_seqs = b.seqs;
    conv.total_tokens = T;
    conv.dim = E;
    conv.width = c.d_conv;
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
    if (b.decode && !deterministic_ && kernels::SkinnyGemmSupported(in_proj)) {
      // Few rows: the conv update rides in in_proj's epilogue (one launch fewer per layer).
      MAMBA_RETURN_IF_ERROR(mark("gemm in_proj+conv1d update"));
      MAMBA_RETURN_IF_ERROR(kernels::LaunchSkinnyGemmConv(in_proj, conv, st, stream));
    } else if (b.decode) {
      MAMBA_RETURN_IF_ERROR(mark("gemm in_proj"));
      MAMBA_RETURN_IF_ERROR(Gemm(in_proj, stream));
      MAMBA_RETURN_IF_ERROR(mark("conv1d update"));
      MAMBA_RETURN_IF_ERROR(kernels::LaunchCausalConv1dDecode(conv, act, st, stream));
    } else {
      MAMBA_RETURN_IF_ERROR(mark("gemm in_proj"));
      MAMBA_RETURN_IF_ERROR(Gemm(in_proj, stream));
      MAMBA_RETURN_IF_ERROR(mark("conv1d"));
      MAMBA_RETURN_IF_ERROR(kernels::LaunchCausalConv1dPrefill(conv, act, st, stream));
    }

    MAMBA_RETURN_IF_ERROR(mark("gemm x_proj"));
    MAMBA_RETURN_IF_ERROR(Gemm(XProj(l, T), stream));
    if (!fused_dt) {
      MAMBA_RETURN_IF_ERROR(mark("gemm dt_proj"));
      MAMBA_RETURN_IF_ERROR(Gemm(DtProj(l, T), stream));
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
      s.cu_seqlens = b.cu_seqlens;
      s.slots = b.slots;
      s.state = pool.ssm(li);
      s.state_slot_stride = pool.slot_stride();
      // Few long sequences: scan segments in parallel, unless results must be batch-invariant.
      s.allow_segments = !deterministic_ && b.max_seqlen > 0;
      s.max_seqlen = b.max_seqlen;
      s.segment_state = segment_state_;
      s.segment_dt_sum = segment_dt_sum_;
      s.segment_capacity = kScanSegmentEntries;
      MAMBA_RETURN_IF_ERROR(mark("selective scan"));
      MAMBA_RETURN_IF_ERROR(kernels::LaunchSelectiveScan(s, act, st, stream));
    }

    MAMBA_RETURN_IF_ERROR(mark("gemm out_proj"));
    MAMBA_RETURN_IF_ERROR(Gemm(OutProj(l, T), stream));
  }

  if (b.head_rows > 0) {
    kernels::RmsNormParams norm;
    norm.rows = b.head_rows;
    norm.dim = D;
    norm.residual = head_residual;
    norm.residual_row_stride = D;
    norm.add = h_;
    norm.add_row_stride = D;
    norm.add_bias = layers_.back().out_proj_bias;
    norm.row_index = b.head_index;
    norm.write_residual = false;
    norm.weight = norm_f_;
    norm.out = xn_;
    norm.out_row_stride = D;
    norm.eps = c.layer_norm_epsilon;
    MAMBA_RETURN_IF_ERROR(mark("final norm"));
    MAMBA_RETURN_IF_ERROR(kernels::LaunchRmsNorm(norm, act, stream));
    MAMBA_RETURN_IF_ERROR(mark("gemm lm_head"));
    MAMBA_RETURN_IF_ERROR(Gemm(LmHead(b.head_rows), stream));

    kernels::SamplingLaunch sl;
    sl.rows = b.head_rows;
    sl.vocab = c.vocab_size;
    sl.logits = logits_;
    sl.logits_row_stride = c.vocab_size;
    sl.row_params = b.sampling_rows;
    sl.penalty_tokens = b.penalty_tokens;
    sl.scratch = sample_scratch_;
    sl.partials = sample_partials_;
    sl.results = b.results;
    MAMBA_RETURN_IF_ERROR(mark("sampling"));
    MAMBA_RETURN_IF_ERROR(kernels::LaunchSampling(sl, stream));
  }
  return absl::OkStatus();
}

}  // namespace mamba::cuda
