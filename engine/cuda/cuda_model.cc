#include "engine/cuda/cuda_model.h"

#include <cuda_runtime_api.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/cuda/weight_upload.h"
#include "kernels/cuda_status.h"
#include "kernels/decode_step.h"
#include "kernels/rms_norm.h"
#include "kernels/sampling.h"

namespace mamba::cuda {

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
  if (static_cast<int32_t>(weights.layers.size()) != config.n_layer) {
    return absl::InvalidArgumentError(absl::StrCat("weights have ", weights.layers.size(),
                                                   " layers, the config ", config.n_layer));
  }
  std::unique_ptr<CudaModel> m(new CudaModel());
  m->config_ = config;
  m->dtype_ = dtype;
  m->kdtype_ = ToKernelDType(dtype);
  m->capacity_ = capacity;
  m->gemm_ = std::make_unique<GemmRunner>(deterministic, gemm);
  MAMBA_RETURN_IF_ERROR(m->Upload(weights));
  MAMBA_RETURN_IF_ERROR(m->AllocateWorkspace());
  MixerContext context;
  context.config = &m->config_;
  context.dtype = dtype;
  context.capacity_tokens = capacity.tokens;
  context.gemm = m->gemm_.get();
  context.xn = m->xn_;
  context.h = m->h_;
  context.embedding = m->embedding_;
  context.norms = m->norm_;
  context.residual = m->residual_;
  context.residual_alt = m->residual_alt_;
  context.barrier = m->step_barrier_;
  MAMBA_ASSIGN_OR_RETURN(m->mixer_, MakeMixer(context, weights));
  return m;
}

absl::Status CudaModel::Upload(const model::ModelWeights& w) {
  const model::ModelConfig& c = config_;
  const size_t half = model::DTypeSize(dtype_);
  const int64_t D = c.d_model, V = c.vocab_size;
  BufferLayout layout;
  const size_t emb_off = layout.Reserve(V * D * half);
  const bool tied = w.lm_head_tied || w.lm_head.data == w.embedding.data;
  const size_t lm_off = tied ? emb_off : layout.Reserve(V * D * half);
  const size_t norm_f_off = layout.Reserve(D * sizeof(float));
  std::vector<size_t> norm_off(c.n_layer);
  for (int l = 0; l < c.n_layer; ++l) norm_off[l] = layout.Reserve(D * sizeof(float));
  MAMBA_ASSIGN_OR_RETURN(weights_, DeviceBuffer::Allocate(layout.Bytes(), "the model weights"));
  uint8_t* base = weights_.as<uint8_t>();
  auto atf = [&](size_t off) { return reinterpret_cast<float*>(base + off); };

  MAMBA_RETURN_IF_ERROR(
      UploadMatrix(w.embedding, dtype_, base + emb_off, "uploading the embedding"));
  if (!tied) {
    MAMBA_RETURN_IF_ERROR(UploadMatrix(w.lm_head, dtype_, base + lm_off, "uploading lm_head"));
  }
  MAMBA_RETURN_IF_ERROR(UploadVector(w.norm_f, atf(norm_f_off), "uploading norm_f"));
  embedding_ = base + emb_off;
  lm_head_ = base + lm_off;
  norm_f_ = atf(norm_f_off);
  norm_.resize(c.n_layer);
  for (int l = 0; l < c.n_layer; ++l) {
    MAMBA_RETURN_IF_ERROR(UploadVector(w.layers[l].norm, atf(norm_off[l]), "uploading a norm"));
    norm_[l] = atf(norm_off[l]);
  }
  return absl::OkStatus();
}

absl::Status CudaModel::AllocateWorkspace() {
  const model::ModelConfig& c = config_;
  const size_t half = model::DTypeSize(dtype_);
  const int64_t T = capacity_.tokens, H = capacity_.head_rows;
  const int64_t D = c.d_model, V = c.vocab_size;
  BufferLayout layout;
  const size_t residual = layout.Reserve(T * D * sizeof(float));
  const size_t xn = layout.Reserve(T * D * half);
  const size_t h = layout.Reserve(T * D * half);
  const size_t logits = layout.Reserve(H * V * sizeof(float));
  const size_t scratch = layout.Reserve(H * V * sizeof(float));
  const size_t partials =
      layout.Reserve(H * kernels::kSamplingMaxSplits * sizeof(kernels::SamplingPartial));
  const size_t residual_alt = layout.Reserve(kernels::kDecodeStepMaxRows * D * sizeof(float));
  const size_t barrier = layout.Reserve(2 * sizeof(unsigned int));
  MAMBA_ASSIGN_OR_RETURN(
      workspace_, DeviceBuffer::Allocate(layout.Bytes(),
                                         absl::StrCat("activations for ", T, " tokens per pass")));
  uint8_t* base = workspace_.as<uint8_t>();
  residual_ = reinterpret_cast<float*>(base + residual);
  xn_ = base + xn;
  h_ = base + h;
  logits_ = reinterpret_cast<float*>(base + logits);
  sample_scratch_ = reinterpret_cast<float*>(base + scratch);
  sample_partials_ = reinterpret_cast<kernels::SamplingPartial*>(base + partials);
  residual_alt_ = reinterpret_cast<float*>(base + residual_alt);
  step_barrier_ = reinterpret_cast<unsigned int*>(base + barrier);
  MAMBA_CUDA_RETURN_IF_ERROR(cudaMemset(step_barrier_, 0, 2 * sizeof(unsigned int)),
                             "clearing the decode barrier");
  return absl::OkStatus();
}

kernels::GemmArgs CudaModel::LmHead(int64_t rows) const {
  const int64_t D = config_.d_model, V = config_.vocab_size;
  return {rows, V, D, xn_, D, lm_head_, D, logits_, V, kdtype_, kernels::KernelDType::kF32};
}

absl::Status CudaModel::PrepareGemms(int64_t tokens, int64_t head_rows, bool decode,
                                     cudaStream_t stream) const {
  std::vector<kernels::GemmArgs> gemms;
  mixer_->AppendGemms(tokens, decode, &gemms);
  if (head_rows > 0) gemms.push_back(LmHead(head_rows));
  return gemm_->Prepare(gemms, stream);
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
  const int64_t T = b.tokens, D = c.d_model;

  // Few decode rows may run every layer in one launch, leaving what the layered loop below leaves
  // for the head (h_ and the residual before it).
  float* head_residual = residual_;
  MAMBA_ASSIGN_OR_RETURN(const bool whole_step,
                         mixer_->ForwardAllLayers(b, pool, stream, timer, &head_residual));
  const int layered = whole_step ? 0 : c.n_layer;
  for (int li = 0; li < layered; ++li) {
    kernels::RmsNormParams norm;
    norm.rows = T;
    norm.dim = D;
    norm.residual = residual_;
    norm.residual_row_stride = D;
    norm.write_residual = true;
    norm.weight = norm_[li];
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
      norm.add_bias = mixer_->OutputBias(li - 1);
      norm.add_scale = mixer_->OutputScale(li - 1);
      MAMBA_RETURN_IF_ERROR(mark("add+norm"));
    }
    MAMBA_RETURN_IF_ERROR(kernels::LaunchRmsNorm(norm, kdtype_, stream));
    MAMBA_RETURN_IF_ERROR(mixer_->Forward(li, b, pool, stream, timer));
  }

  if (b.head_rows > 0) {
    kernels::RmsNormParams norm;
    norm.rows = b.head_rows;
    norm.dim = D;
    norm.residual = head_residual;
    norm.residual_row_stride = D;
    norm.add = h_;
    norm.add_row_stride = D;
    norm.add_bias = mixer_->OutputBias(c.n_layer - 1);
    norm.add_scale = mixer_->OutputScale(c.n_layer - 1);
    norm.row_index = b.head_index;
    norm.write_residual = false;
    norm.weight = norm_f_;
    norm.out = xn_;
    norm.out_row_stride = D;
    norm.eps = c.layer_norm_epsilon;
    MAMBA_RETURN_IF_ERROR(mark("final norm"));
    MAMBA_RETURN_IF_ERROR(kernels::LaunchRmsNorm(norm, kdtype_, stream));
    MAMBA_RETURN_IF_ERROR(mark("gemm lm_head"));
    MAMBA_RETURN_IF_ERROR(gemm_->Run(LmHead(b.head_rows), stream));

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
