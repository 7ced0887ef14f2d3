#include "engine/cuda/cuda_backend.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/cuda/cuda_model.h"
#include "engine/cuda/mixer.h"
#include "engine/cuda/device_memory.h"
#include "engine/cuda/kernel_timer.h"
#include "engine/cuda/state_pool.h"
#include "engine/sampling/sampler.h"
#include "kernels/cuda_status.h"
#include "kernels/dependent_launch.h"
#include "kernels/gemm.h"
#include "kernels/sampling_params.h"

namespace mamba::cuda {

int CudaDeviceCount() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

namespace {

// Decode batches run as graphs captured for a few batch sizes (buckets), padded up to the next
// one: powers of two up to 32, then steps of 32 (a quarter of the bucket beyond 256). Under load
// the running batch sits between powers of two (a closed loop of 256 streams averaged 215 rows on
// the H100), and every padding row costs GEMM and kernel work in the step.
int32_t NextDecodeBucket(int32_t bucket) {
  constexpr int32_t kStep = 32;
  if (bucket < kStep) return 2 * bucket;
  return bucket + std::max(kStep, bucket / 4 / kStep * kStep);
}

using kernels::SamplingResult;
using kernels::SamplingRow;

constexpr int64_t kMaxPrefillTokens = 8192;  // packed tokens per prefill pass (workspace size)
constexpr int64_t kMinPrefillTokens = 512;
constexpr int32_t kMaxAutoSlots = 4096;
constexpr size_t kCublasWorkspace = size_t{32} << 20;

// A HostState in page-locked memory, so slot saves and loads run at full copy speed.
class PinnedHostState final : public backend::HostState {
 public:
  PinnedHostState(model::DType dtype, PinnedBuffer buffer, size_t size)
      : dtype_(dtype), buffer_(std::move(buffer)), size_(size) {}
  model::DType dtype() const override { return dtype_; }
  uint8_t* data() override { return buffer_.as<uint8_t>(); }
  const uint8_t* data() const override { return buffer_.as<uint8_t>(); }
  size_t size() const override { return size_; }

 private:
  model::DType dtype_;
  PinnedBuffer buffer_;
  size_t size_;
};

// One device buffer with a pinned host mirror of the same layout.
struct MirroredBuffer {
  DeviceBuffer device;
  PinnedBuffer host;
  static absl::StatusOr<MirroredBuffer> Allocate(size_t bytes, const std::string& what) {
    MirroredBuffer b;
    MAMBA_ASSIGN_OR_RETURN(b.device, DeviceBuffer::Allocate(bytes, what));
    MAMBA_ASSIGN_OR_RETURN(b.host, PinnedBuffer::Allocate(bytes, what));
    std::memset(b.host.data(), 0, bytes);
    return b;
  }
};

template <typename T>
T* At(void* base, size_t offset) {
  return reinterpret_cast<T*>(static_cast<uint8_t*>(base) + offset);
}

class CudaBackend final : public backend::Backend {
 public:
  static absl::StatusOr<std::unique_ptr<CudaBackend>> Create(const backend::BackendOptions& options,
                                                             model::LoadedModel& model);
  ~CudaBackend() override;

  const model::ModelConfig& config() const override { return config_; }
  std::string name() const override { return "cuda"; }
  std::string device() const override { return device_name_; }
  model::DType weight_dtype() const override { return model_->dtype(); }
  model::DType state_dtype() const override { return pool_.dtype(); }
  size_t weight_bytes() const override { return model_->weight_bytes(); }
  size_t state_bytes() const override { return pool_.state_bytes(); }
  int32_t num_slots() const override { return pool_.num_slots(); }

  absl::Status Step(absl::Span<const backend::SeqWork> work,
                    absl::Span<backend::SeqResult> results) override;
  absl::Status ResetSlot(int32_t slot) override;
  absl::Status CopySlot(int32_t from, int32_t to) override;
  std::unique_ptr<backend::HostState> AllocateHostState() override;
  absl::Status SaveSlot(int32_t slot, backend::HostState* out) override;
  absl::Status LoadSlot(int32_t slot, const backend::HostState& in) override;
  void DeviceMemory(int64_t* used, int64_t* total) const override;

  absl::StatusOr<std::vector<CudaKernelTime>> Profile(absl::Span<const backend::SeqWork> work,
                                                      absl::Span<backend::SeqResult> results);

 private:
  CudaBackend() = default;
  // Resets `results` and checks each sequence on its own (a refused one gets its status); an
  // error only for a malformed step as a whole.
  absl::Status CheckWork(absl::Span<const backend::SeqWork> work,
                         absl::Span<backend::SeqResult> results);
  // Runs the sequences CheckWork accepted (decode or prefill), leaving the refused ones out.
  absl::Status RunChecked(absl::Span<const backend::SeqWork> work,
                          absl::Span<backend::SeqResult> results, KernelTimer* timer);
  absl::Status CheckSlot(int32_t slot, const char* what) const;
  absl::Status DecodeStep(absl::Span<const backend::SeqWork> work,
                          absl::Span<backend::SeqResult> results, KernelTimer* timer);
  absl::Status PrefillStep(absl::Span<const backend::SeqWork> work,
                           absl::Span<backend::SeqResult> results, KernelTimer* timer);
  // Appends w's repetition penalty tokens and additive penalty pairs to the penalty list (when it
  // samples with those penalties) and returns its sampling row.
  SamplingRow MakeRow(const backend::SeqWork& w, std::vector<int32_t>& penalties);
  absl::Status UploadPenalties(const std::vector<int32_t>& penalties);
  absl::StatusOr<cudaGraphExec_t> DecodeGraph(int32_t bucket);
  void DropGraphs();
  int32_t Bucket(int32_t batch) const;
  ForwardBatch DecodeBatch(int32_t bucket) const;
  absl::Status ReadResults(absl::Span<const backend::SeqWork> work,
                           absl::Span<backend::SeqResult> results,
                           const std::vector<int32_t>& head_of, KernelTimer* timer);
  absl::Status Sync(const char* what);
  // Chooses the mixer's per-layer output shifts (mixer.h) from eager probe passes over a
  // calibration prompt in slot 0; before any graph is captured.
  absl::Status CalibrateOutputShifts();

  model::ModelConfig config_;
  int32_t device_index_ = 0;
  std::string device_name_;
  int32_t max_batch_ = 1;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<kernels::CublasLtGemm> gemm_;
  std::unique_ptr<CudaModel> model_;
  StatePool pool_;

  // Decode inputs, one block copied by the graph: tokens, slots, sampling rows (max_batch each).
  MirroredBuffer decode_in_;
  size_t dec_tokens_ = 0, dec_slots_ = 0, dec_rows_ = 0;
  // Prefill inputs: tokens (capacity), cu_seqlens, slots, head rows, sampling rows.
  MirroredBuffer prefill_in_;
  size_t pre_tokens_ = 0, pre_cu_ = 0, pre_slots_ = 0, pre_head_ = 0, pre_rows_ = 0;
  MirroredBuffer results_;  // SamplingResult[max_batch]
  MirroredBuffer penalties_;            // see kernels::SamplingLaunch::penalty_tokens
  size_t penalty_capacity_ = 0;         // int32 words
  std::vector<int32_t> output_counts_;  // MakeRow's scratch, by token id (zero between calls)

  std::map<int32_t, cudaGraphExec_t> graphs_;
  bool graphs_enabled_ = true;
  std::vector<uint8_t> slot_seen_;
  std::unique_ptr<KernelTimer> timer_;
};

absl::StatusOr<std::unique_ptr<CudaBackend>> CudaBackend::Create(
    const backend::BackendOptions& options, model::LoadedModel& model) {
  const int count = CudaDeviceCount();
  if (options.device < 0 || options.device >= count) {
    return absl::InvalidArgumentError(absl::StrCat("--device=", options.device,
                                                   " is not a CUDA device; allowed: 0..", count - 1,
                                                   " (", count, " visible)"));
  }
  absl::StatusOr<model::DType> state_dtype = model::ParseDType(options.state_dtype);
  if (!state_dtype.ok() ||
      (*state_dtype != model::DType::kF32 && *state_dtype != model::DType::kBF16)) {
    return absl::InvalidArgumentError(absl::StrCat("--state_dtype=", options.state_dtype,
                                                   " unsupported on CUDA; allowed: f32, bf16"));
  }
  if (!(options.gpu_memory_fraction > 0.0 && options.gpu_memory_fraction <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--gpu_memory_fraction=", options.gpu_memory_fraction, " invalid; allowed: (0, 1]"));
  }
  if (options.max_batch < 1 || options.max_batch > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_batch ", options.max_batch, " invalid; allowed: 1..65535"));
  }
  if (options.num_slots < 0) {
    return absl::InvalidArgumentError(absl::StrCat("--num_slots=", options.num_slots,
                                                   " invalid; allowed: 0 (from memory) or > 0"));
  }
  MAMBA_RETURN_IF_ERROR(model.config.Validate());
  MAMBA_RETURN_IF_ERROR(model.weights.Validate(model.config, model.source));

  std::unique_ptr<CudaBackend> b(new CudaBackend());
  b->config_ = model.config;
  b->device_index_ = options.device;
  b->max_batch_ = options.max_batch;
  MAMBA_CUDA_RETURN_IF_ERROR(cudaSetDevice(options.device), "selecting the CUDA device");
  cudaDeviceProp prop{};
  MAMBA_CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&prop, options.device),
                             "reading the device properties");
  b->device_name_ = prop.name;
  MAMBA_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&b->stream_, cudaStreamNonBlocking),
                             "creating a CUDA stream");
  MAMBA_ASSIGN_OR_RETURN(b->gemm_, kernels::CublasLtGemm::Create(kCublasWorkspace));

  // Weights: half-precision checkpoints keep their dtype, f32 ones become bf16.
  const model::DType matrix_dtype = model.weights.MatrixDType();
  const model::DType weight_dtype =
      matrix_dtype == model::DType::kF32 ? model::DType::kBF16 : matrix_dtype;

  // The prefill pass size: 8192 tokens unless that workspace would take more than a quarter of
  // the memory left after the weights.
  size_t free_bytes = 0, total_bytes = 0;
  MAMBA_CUDA_RETURN_IF_ERROR(cudaMemGetInfo(&free_bytes, &total_bytes), "reading free memory");
  const model::ModelConfig& c = model.config;
  const size_t weight_estimate = static_cast<size_t>(c.NumParameters()) * 2;
  // Per token: the residual and norm rows, then the mixer's activations.
  const size_t per_token =
      static_cast<size_t>(c.d_model) * (4 + 2 * 2) + MixerWorkspaceBytesPerToken(c);
  int64_t tokens = kMaxPrefillTokens;
  const size_t budget = free_bytes > weight_estimate ? (free_bytes - weight_estimate) / 4 : 0;
  while (tokens > kMinPrefillTokens && static_cast<size_t>(tokens) * per_token > budget)
    tokens /= 2;
  tokens = std::max<int64_t>(tokens, options.max_batch);
  CudaModel::Capacity capacity{tokens, options.max_batch};
  MAMBA_ASSIGN_OR_RETURN(b->model_, CudaModel::Create(c, model.weights, weight_dtype, capacity,
                                                      options.deterministic, b->gemm_.get()));

  // Input and output buffers.
  {
    BufferLayout l;
    b->dec_tokens_ = l.Reserve(sizeof(int32_t) * options.max_batch);
    b->dec_slots_ = l.Reserve(sizeof(int32_t) * options.max_batch);
    b->dec_rows_ = l.Reserve(sizeof(SamplingRow) * options.max_batch);
    MAMBA_ASSIGN_OR_RETURN(b->decode_in_, MirroredBuffer::Allocate(l.Bytes(), "decode inputs"));
  }
  {
    BufferLayout l;
    b->pre_tokens_ = l.Reserve(sizeof(int32_t) * tokens);
    b->pre_cu_ = l.Reserve(sizeof(int32_t) * (options.max_batch + 1));
    b->pre_slots_ = l.Reserve(sizeof(int32_t) * options.max_batch);
    b->pre_head_ = l.Reserve(sizeof(int32_t) * options.max_batch);
    b->pre_rows_ = l.Reserve(sizeof(SamplingRow) * options.max_batch);
    MAMBA_ASSIGN_OR_RETURN(b->prefill_in_, MirroredBuffer::Allocate(l.Bytes(), "prefill inputs"));
  }
  MAMBA_ASSIGN_OR_RETURN(
      b->results_,
      MirroredBuffer::Allocate(sizeof(SamplingResult) * options.max_batch, "sampling results"));
  b->penalty_capacity_ = 4096;
  MAMBA_ASSIGN_OR_RETURN(
      b->penalties_,
      MirroredBuffer::Allocate(sizeof(int32_t) * b->penalty_capacity_, "sampling penalty lists"));

  // The state pool, last: from what is left.
  int32_t slots = options.num_slots;
  const size_t footprint = StatePool::SlotFootprint(c, *state_dtype);
  if (slots == 0) {
    MAMBA_CUDA_RETURN_IF_ERROR(cudaMemGetInfo(&free_bytes, &total_bytes), "reading free memory");
    const double usable = static_cast<double>(free_bytes) * options.gpu_memory_fraction;
    const double fit = usable / static_cast<double>(footprint) - 1.0;  // minus the scratch slot
    if (fit < 1.0) {
      return absl::ResourceExhaustedError(
          absl::StrCat("not enough device memory for a state slot: one takes ",
                       FormatBytes(footprint), ", ", FormatBytes(static_cast<size_t>(usable)),
                       " is usable (--gpu_memory_fraction=", options.gpu_memory_fraction, " of ",
                       FormatBytes(free_bytes), " free after the weights and workspaces)"));
    }
    slots = static_cast<int32_t>(std::min<double>(fit, kMaxAutoSlots));
  }
  MAMBA_ASSIGN_OR_RETURN(b->pool_, StatePool::Create(c, *state_dtype, slots));
  b->slot_seen_.assign(slots, 0);

  std::fprintf(stderr,
               "cuda backend: %s (device %d), weights %s in %s, %d state slots of %s (%s state), "
               "workspace %s for %lld tokens per prefill pass, max batch %d%s%s\n",
               b->device_name_.c_str(), options.device,
               FormatBytes(b->model_->weight_bytes()).c_str(),
               std::string(model::DTypeName(weight_dtype)).c_str(), slots,
               FormatBytes(b->pool_.state_bytes()).c_str(),
               std::string(model::DTypeName(*state_dtype)).c_str(),
               FormatBytes(b->model_->workspace_bytes()).c_str(), static_cast<long long>(tokens),
               options.max_batch, options.deterministic ? ", batch-invariant kernels" : "",
               kernels::DependentLaunchEnabled() ? ", dependent launch" : "");
  MAMBA_RETURN_IF_ERROR(b->CalibrateOutputShifts());
  // Capture every decode bucket now, not when load first reaches it: a bucket met under load
  // times its GEMMs and captures its graph inside a step, stalling every stream (a cold server
  // showed a 200 ms TTFT p90 at 256 streams on the H100).
  for (int32_t bucket = 1;; bucket = NextDecodeBucket(bucket)) {
    const int32_t size = std::min(bucket, b->max_batch_);
    MAMBA_RETURN_IF_ERROR(b->DecodeGraph(size).status());
    if (size >= b->max_batch_) break;
  }
  // The backend owns the model now; the host copy of the weights is no longer needed.
  model.weights = model::ModelWeights();
  return b;
}

// The output-shift calibration (docs/cuda.md, "Output scales"). The first pass stores every
// layer's y scaled by 2^-kProbeShift, so that even a y of 2^31 stays finite, and measures each
// layer's largest |y|; the shift that leaves it in [2^(kTargetLog2 - 1), 2^kTargetLog2) when
// stored (64x headroom below f16's 65504 for prompts that grow it further) is taken, never below
// 0: a model whose outputs fit keeps every bit it had. Later passes check the shifts with the
// shifted outputs (which the first pass only approximated), moving one only when its stored
// maximum leaves [2^kMinStoredLog2, 2^kMaxStoredLog2]; a layer still not finite gets 8 more.
absl::Status CudaBackend::CalibrateOutputShifts() {
  constexpr int kProbeShift = 16;
  constexpr int kTargetLog2 = 10;
  constexpr int kMaxStoredLog2 = 12;
  constexpr int kMinStoredLog2 = 4;
  constexpr int kMaxShift = 96;
  constexpr int kMaxPasses = 6;
  constexpr int64_t kPromptTokens = 256;
  Mixer* mixer = model_->mixer();
  if (!mixer->ScalesOutput() || pool_.num_slots() < 1) return absl::OkStatus();
  const int n = config_.n_layer;
  MAMBA_ASSIGN_OR_RETURN(DeviceBuffer probe,
                         DeviceBuffer::Allocate(n * sizeof(float), "the output range probe"));
  std::vector<int32_t> prompt(std::min(kPromptTokens, model_->capacity().tokens));
  for (size_t i = 0; i < prompt.size(); ++i) {
    prompt[i] = static_cast<int32_t>((i * 7919 + 13) % static_cast<size_t>(config_.vocab_size));
  }
  std::vector<int> shifts(n, kProbeShift);
  std::vector<float> maxima(n);
  bool settled = false;
  for (int pass = 0; pass < kMaxPasses && !settled; ++pass) {
    mixer->set_output_shifts(shifts);
    MAMBA_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(probe.data(), 0, n * sizeof(float), stream_),
                               "clearing the output range probe");
    backend::SeqWork w;
    w.slot = 0;
    w.tokens = prompt;
    backend::SeqResult r;
    mixer->set_probe(probe.as<float>());
    absl::Status step = Step(absl::MakeConstSpan(&w, 1), absl::MakeSpan(&r, 1));
    mixer->set_probe(nullptr);
    MAMBA_RETURN_IF_ERROR(step);
    MAMBA_RETURN_IF_ERROR(r.status);
    MAMBA_CUDA_RETURN_IF_ERROR(
        cudaMemcpy(maxima.data(), probe.data(), n * sizeof(float), cudaMemcpyDeviceToHost),
        "reading the output range probe");
    MAMBA_RETURN_IF_ERROR(ResetSlot(0));
    settled = true;
    for (int l = 0; l < n; ++l) {
      const float m = maxima[l];
      if (!std::isfinite(m)) {  // the layers after it saw non-finite inputs: measure again
        if (shifts[l] + 8 <= kMaxShift) {
          shifts[l] += 8;
          settled = false;
        }
        break;
      }
      const int stored_log2 = m > 0.0f ? std::ilogb(m) : -1000;
      if (pass > 0 && stored_log2 < kMaxStoredLog2 &&
          (stored_log2 >= kMinStoredLog2 || shifts[l] == 0)) {
        continue;
      }
      const int want = m > 0.0f ? std::max(0, stored_log2 + shifts[l] + 1 - kTargetLog2) : 0;
      if (want != shifts[l]) {
        shifts[l] = want;
        settled = false;
      }
    }
  }
  mixer->set_output_shifts(shifts);
  if (mixer->any_output_shift()) {
    std::string list;
    for (int l = 0; l < n; ++l) {
      if (shifts[l] != 0) absl::StrAppend(&list, list.empty() ? "" : ", ", l, ":", shifts[l]);
    }
    std::fprintf(stderr,
                 "cuda backend: SSM outputs exceed f16's range; stored scaled by 2^-shift "
                 "(layer:shift %s)%s\n",
                 list.c_str(), settled ? "" : "; the calibration did not settle");
  }
  return absl::OkStatus();
}

CudaBackend::~CudaBackend() {
  cudaSetDevice(device_index_);
  if (stream_ != nullptr) cudaStreamSynchronize(stream_);
  DropGraphs();
  model_.reset();
  gemm_.reset();
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

void CudaBackend::DropGraphs() {
  for (auto& [bucket, exec] : graphs_) cudaGraphExecDestroy(exec);
  graphs_.clear();
}

absl::Status CudaBackend::Sync(const char* what) {
  MAMBA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_), what);
  return absl::OkStatus();
}

absl::Status CudaBackend::CheckSlot(int32_t slot, const char* what) const {
  if (slot < 0 || slot >= pool_.num_slots()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " slot ", slot, " out of range; allowed: 0..", pool_.num_slots() - 1));
  }
  return absl::OkStatus();
}

absl::Status CudaBackend::CheckWork(absl::Span<const backend::SeqWork> work,
                                    absl::Span<backend::SeqResult> results) {
  if (work.size() != results.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("step: ", work.size(), " sequences but ", results.size(), " result slots"));
  }
  if (work.empty()) return absl::InvalidArgumentError("step: empty batch");
  if (static_cast<int64_t>(work.size()) > max_batch_) {
    return absl::InvalidArgumentError(
        absl::StrCat("step: batch of ", work.size(), " sequences exceeds max_batch ", max_batch_));
  }
  // Each sequence on its own: a refused one gets its status and is left out of the step.
  for (size_t i = 0; i < work.size(); ++i) {
    const backend::SeqWork& w = work[i];
    backend::SeqResult& r = results[i];
    r = backend::SeqResult();
    r.status = CheckSlot(w.slot, "step:");
    if (!r.status.ok()) continue;
    if (slot_seen_[w.slot]) {
      r.status = absl::InvalidArgumentError(
          absl::StrCat("step: slot ", w.slot, " appears twice in one batch"));
      continue;
    }
    if (w.tokens.empty()) {
      r.status = absl::InvalidArgumentError("step: the sequence has no tokens");
      continue;
    }
    for (int32_t t : w.tokens) {
      if (t < 0 || t >= config_.vocab_size) {
        r.status = absl::InvalidArgumentError(absl::StrCat(
            "step: token id ", t, " out of range; allowed: 0..", config_.vocab_size - 1));
        break;
      }
    }
    if (r.status.ok() && w.sample) {
      for (int32_t t : w.penalty_tokens) {
        if (t < 0 || t >= config_.vocab_size) {
          r.status = absl::InvalidArgumentError(absl::StrCat("step: repetition penalty token id ",
                                                             t, " out of range; allowed: 0..",
                                                             config_.vocab_size - 1));
          break;
        }
      }
    }
    if (r.status.ok() && w.sample) {
      for (int32_t t : w.output_tokens) {
        if (t < 0 || t >= config_.vocab_size) {
          r.status = absl::InvalidArgumentError(absl::StrCat(
              "step: output token id ", t, " out of range; allowed: 0..", config_.vocab_size - 1));
          break;
        }
      }
    }
    if (r.status.ok()) slot_seen_[w.slot] = 1;
  }
  for (size_t i = 0; i < work.size(); ++i) {
    if (results[i].status.ok()) slot_seen_[work[i].slot] = 0;
  }
  return absl::OkStatus();
}

absl::Status CudaBackend::RunChecked(absl::Span<const backend::SeqWork> work,
                                     absl::Span<backend::SeqResult> results, KernelTimer* timer) {
  std::vector<size_t> valid;
  for (size_t i = 0; i < work.size(); ++i) {
    if (results[i].status.ok()) valid.push_back(i);
  }
  if (valid.empty()) return absl::OkStatus();
  auto run = [&](absl::Span<const backend::SeqWork> w, absl::Span<backend::SeqResult> r) {
    const bool decode = std::all_of(w.begin(), w.end(),
                                    [](const backend::SeqWork& s) { return s.tokens.size() == 1; });
    return decode ? DecodeStep(w, r, timer) : PrefillStep(w, r, timer);
  };
  if (valid.size() == work.size()) return run(work, results);
  // Some sequences were refused: step the others as a batch of their own.
  std::vector<backend::SeqWork> w;
  std::vector<backend::SeqResult> r(valid.size());
  for (size_t i : valid) w.push_back(work[i]);
  MAMBA_RETURN_IF_ERROR(run(w, absl::MakeSpan(r)));
  for (size_t k = 0; k < valid.size(); ++k) results[valid[k]] = std::move(r[k]);
  return absl::OkStatus();
}

SamplingRow CudaBackend::MakeRow(const backend::SeqWork& w, std::vector<int32_t>& penalties) {
  SamplingRow r;
  if (!w.sample) return r;
  r.sample = 1;
  // The device sampler decodes greedily at temperature 0: the same rule as the CPU sampler's.
  r.temperature = w.sampling.greedy() ? 0.0f : w.sampling.temperature;
  r.top_p = w.sampling.top_p;
  r.min_p = w.sampling.min_p;
  r.repetition_penalty = w.sampling.repetition_penalty;
  r.top_k = w.sampling.top_k;
  r.top_logprobs = w.top_logprobs;
  r.seed = w.sampling.seed;
  r.position = w.sample_position;
  if (w.sampling.repetition_penalty != 1.0f && !w.penalty_tokens.empty()) {
    r.penalty_offset = static_cast<int32_t>(penalties.size());
    r.penalty_count = static_cast<int32_t>(w.penalty_tokens.size());
    penalties.insert(penalties.end(), w.penalty_tokens.begin(), w.penalty_tokens.end());
  }
  if (w.sampling.additive_penalties() && !w.output_tokens.empty()) {
    // One (id, amount) pair per distinct generated token: the kernel only subtracts.
    output_counts_.resize(config_.vocab_size, 0);
    for (int32_t t : w.output_tokens) ++output_counts_[t];
    r.output_offset = static_cast<int32_t>(penalties.size());
    for (int32_t t : w.output_tokens) {
      if (output_counts_[t] == 0) continue;  // listed at its first occurrence
      penalties.push_back(t);
      penalties.push_back(
          std::bit_cast<int32_t>(sampling::AdditivePenalty(w.sampling, output_counts_[t])));
      output_counts_[t] = 0;
      ++r.output_count;
    }
  }
  return r;
}

absl::Status CudaBackend::UploadPenalties(const std::vector<int32_t>& penalties) {
  if (penalties.empty()) return absl::OkStatus();
  if (penalties.size() > penalty_capacity_) {
    // The graphs captured the old buffer's address: drop them with it.
    MAMBA_RETURN_IF_ERROR(Sync("waiting before growing the penalty buffer"));
    DropGraphs();
    size_t capacity = penalty_capacity_;
    while (capacity < penalties.size()) capacity *= 2;
    penalties_ = MirroredBuffer();
    MAMBA_ASSIGN_OR_RETURN(
        penalties_, MirroredBuffer::Allocate(sizeof(int32_t) * capacity, "sampling penalty lists"));
    penalty_capacity_ = capacity;
  }
  std::memcpy(penalties_.host.data(), penalties.data(), penalties.size() * sizeof(int32_t));
  MAMBA_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(penalties_.device.data(), penalties_.host.data(),
                      penalties.size() * sizeof(int32_t), cudaMemcpyHostToDevice, stream_),
      "copying penalty tokens");
  return absl::OkStatus();
}

int32_t CudaBackend::Bucket(int32_t batch) const {
  int32_t b = 1;
  while (b < batch) b = NextDecodeBucket(b);
  return std::min(b, max_batch_);
}

ForwardBatch CudaBackend::DecodeBatch(int32_t bucket) const {
  ForwardBatch f;
  f.tokens = bucket;
  f.seqs = bucket;
  f.decode = true;
  f.token_ids = At<const int32_t>(decode_in_.device.data(), dec_tokens_);
  f.slots = At<const int32_t>(decode_in_.device.data(), dec_slots_);
  f.head_rows = bucket;
  f.sampling_rows = At<const SamplingRow>(decode_in_.device.data(), dec_rows_);
  f.penalty_tokens = penalties_.device.as<const int32_t>();
  f.results = results_.device.as<SamplingResult>();
  return f;
}

absl::StatusOr<cudaGraphExec_t> CudaBackend::DecodeGraph(int32_t bucket) {
  auto it = graphs_.find(bucket);
  if (it != graphs_.end()) return it->second;
  MAMBA_RETURN_IF_ERROR(model_->PrepareGemms(bucket, bucket, /*decode=*/true, stream_));
  MAMBA_CUDA_RETURN_IF_ERROR(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal),
                             "starting a decode graph capture");
  // The graph copies its inputs in and its results out itself, so a step is one launch.
  absl::Status status = kernels::CudaStatus(
      cudaMemcpyAsync(decode_in_.device.data(), decode_in_.host.data(), decode_in_.device.size(),
                      cudaMemcpyHostToDevice, stream_),
      "capturing the decode input copy");
  if (status.ok()) status = model_->Forward(DecodeBatch(bucket), pool_, stream_, nullptr);
  if (status.ok()) {
    status = kernels::CudaStatus(
        cudaMemcpyAsync(results_.host.data(), results_.device.data(),
                        sizeof(SamplingResult) * bucket, cudaMemcpyDeviceToHost, stream_),
        "capturing the result copy");
  }
  cudaGraph_t graph = nullptr;
  const cudaError_t end = cudaStreamEndCapture(stream_, &graph);
  if (status.ok()) status = kernels::CudaStatus(end, "ending a decode graph capture");
  cudaGraphExec_t exec = nullptr;
  if (status.ok()) {
    status =
        kernels::CudaStatus(cudaGraphInstantiate(&exec, graph, 0), "instantiating a decode graph");
  }
  if (graph != nullptr) cudaGraphDestroy(graph);
  if (!status.ok()) {
    cudaGetLastError();
    return absl::Status(status.code(), absl::StrCat("decode graph for batch ", bucket, ": ",
                                                    std::string(status.message())));
  }
  graphs_[bucket] = exec;
  return exec;
}

absl::Status CudaBackend::DecodeStep(absl::Span<const backend::SeqWork> work,
                                     absl::Span<backend::SeqResult> results, KernelTimer* timer) {
  const int32_t batch = static_cast<int32_t>(work.size());
  const int32_t bucket = Bucket(batch);
  int32_t* tokens = At<int32_t>(decode_in_.host.data(), dec_tokens_);
  int32_t* slots = At<int32_t>(decode_in_.host.data(), dec_slots_);
  SamplingRow* rows = At<SamplingRow>(decode_in_.host.data(), dec_rows_);
  std::vector<int32_t> penalties;
  std::vector<int32_t> head_of(batch);
  for (int32_t i = 0; i < bucket; ++i) {
    if (i < batch) {
      tokens[i] = work[i].tokens[0];
      slots[i] = work[i].slot;
      rows[i] = MakeRow(work[i], penalties);
      head_of[i] = i;
    } else {  // padding: the scratch slot, nothing sampled
      tokens[i] = 0;
      slots[i] = pool_.scratch_slot();
      rows[i] = SamplingRow();
    }
  }
  if (timer != nullptr) MAMBA_RETURN_IF_ERROR(timer->Mark("copy in", stream_));
  MAMBA_RETURN_IF_ERROR(UploadPenalties(penalties));
  if (timer == nullptr && graphs_enabled_) {
    absl::StatusOr<cudaGraphExec_t> graph = DecodeGraph(bucket);
    if (!graph.ok()) {
      std::fprintf(stderr, "cuda backend: running decode without graphs: %s\n",
                   std::string(graph.status().message()).c_str());
      graphs_enabled_ = false;
    } else {
      MAMBA_CUDA_RETURN_IF_ERROR(cudaGraphLaunch(*graph, stream_), "launching a decode graph");
      return ReadResults(work, results, head_of, nullptr);
    }
  }
  MAMBA_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(decode_in_.device.data(), decode_in_.host.data(), decode_in_.device.size(),
                      cudaMemcpyHostToDevice, stream_),
      "copying decode inputs");
  MAMBA_RETURN_IF_ERROR(model_->Forward(DecodeBatch(bucket), pool_, stream_, timer));
  if (timer != nullptr) MAMBA_RETURN_IF_ERROR(timer->Mark("copy out", stream_));
  MAMBA_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(results_.host.data(), results_.device.data(), sizeof(SamplingResult) * bucket,
                      cudaMemcpyDeviceToHost, stream_),
      "copying sampling results");
  return ReadResults(work, results, head_of, timer);
}

absl::Status CudaBackend::ReadResults(absl::Span<const backend::SeqWork> work,
                                      absl::Span<backend::SeqResult> results,
                                      const std::vector<int32_t>& head_of, KernelTimer* timer) {
  const int64_t vocab = config_.vocab_size;
  for (size_t i = 0; i < work.size(); ++i) {
    if (head_of[i] >= 0 && work[i].want_logits) {
      results[i].logits.resize(vocab);
      MAMBA_CUDA_RETURN_IF_ERROR(
          cudaMemcpyAsync(results[i].logits.data(), model_->logits() + head_of[i] * vocab,
                          vocab * sizeof(float), cudaMemcpyDeviceToHost, stream_),
          "copying logits");
    }
  }
  if (timer != nullptr) MAMBA_RETURN_IF_ERROR(timer->Finish(stream_));
  MAMBA_RETURN_IF_ERROR(Sync("running a step"));
  const SamplingResult* out = results_.host.as<const SamplingResult>();
  for (size_t i = 0; i < work.size(); ++i) {
    if (head_of[i] < 0 || !work[i].sample) continue;
    const SamplingResult& r = out[head_of[i]];
    if (r.status != kernels::kSamplingOk) {
      // This sequence alone: its logits (so its state) went bad; the others sampled normally.
      results[i].status = absl::InternalError(
          r.status == kernels::kSamplingNonFiniteLogits
              ? "the logits are not finite (NaN or +inf): the model diverged on this sequence"
              : "the logits are all -inf: nothing can be sampled");
      continue;
    }
    results[i].token = r.token;
    results[i].logprob = r.logprob;
    const int n = std::min(r.num_top, work[i].top_logprobs);
    results[i].top.resize(n);
    for (int k = 0; k < n; ++k) results[i].top[k] = {r.top_ids[k], r.top_logprobs[k]};
  }
  return absl::OkStatus();
}

absl::Status CudaBackend::PrefillStep(absl::Span<const backend::SeqWork> work,
                                      absl::Span<backend::SeqResult> results, KernelTimer* timer) {
  const int64_t capacity = model_->capacity().tokens;
  size_t seq = 0;        // the first sequence with tokens left
  int64_t consumed = 0;  // tokens of work[seq] already processed
  while (seq < work.size()) {
    // One pass: pieces of consecutive sequences, up to `capacity` tokens.
    int32_t* tokens = At<int32_t>(prefill_in_.host.data(), pre_tokens_);
    int32_t* cu = At<int32_t>(prefill_in_.host.data(), pre_cu_);
    int32_t* slots = At<int32_t>(prefill_in_.host.data(), pre_slots_);
    int32_t* head = At<int32_t>(prefill_in_.host.data(), pre_head_);
    SamplingRow* rows = At<SamplingRow>(prefill_in_.host.data(), pre_rows_);
    std::vector<int32_t> penalties;
    std::vector<int32_t> head_of(work.size(), -1);
    int64_t n_tokens = 0, max_len = 0;
    int32_t n_seqs = 0, n_head = 0;
    cu[0] = 0;
    while (seq < work.size() && n_tokens < capacity) {
      const backend::SeqWork& w = work[seq];
      const int64_t take = std::min<int64_t>(w.tokens.size() - consumed, capacity - n_tokens);
      std::memcpy(tokens + n_tokens, w.tokens.data() + consumed, take * sizeof(int32_t));
      n_tokens += take;
      consumed += take;
      max_len = std::max(max_len, take);
      slots[n_seqs] = w.slot;
      cu[n_seqs + 1] = static_cast<int32_t>(n_tokens);
      ++n_seqs;
      if (consumed == static_cast<int64_t>(w.tokens.size())) {
        if (w.sample || w.want_logits) {
          head[n_head] = static_cast<int32_t>(n_tokens - 1);
          rows[n_head] = MakeRow(w, penalties);
          head_of[seq] = n_head;
          ++n_head;
        }
        ++seq;
        consumed = 0;
      }
    }
    if (timer != nullptr) MAMBA_RETURN_IF_ERROR(timer->Mark("copy in", stream_));
    MAMBA_RETURN_IF_ERROR(UploadPenalties(penalties));
    uint8_t* dev = prefill_in_.device.as<uint8_t>();
    uint8_t* host = prefill_in_.host.as<uint8_t>();
    auto copy_in = [&](size_t offset, size_t bytes) {
      return kernels::CudaStatus(
          cudaMemcpyAsync(dev + offset, host + offset, bytes, cudaMemcpyHostToDevice, stream_),
          "copying prefill inputs");
    };
    MAMBA_RETURN_IF_ERROR(copy_in(pre_tokens_, n_tokens * sizeof(int32_t)));
    MAMBA_RETURN_IF_ERROR(copy_in(pre_cu_, (n_seqs + 1) * sizeof(int32_t)));
    MAMBA_RETURN_IF_ERROR(copy_in(pre_slots_, n_seqs * sizeof(int32_t)));
    if (n_head > 0) {
      MAMBA_RETURN_IF_ERROR(copy_in(pre_head_, n_head * sizeof(int32_t)));
      MAMBA_RETURN_IF_ERROR(copy_in(pre_rows_, n_head * sizeof(SamplingRow)));
    }
    ForwardBatch f;
    f.tokens = n_tokens;
    f.seqs = n_seqs;
    f.decode = false;
    f.token_ids = At<const int32_t>(dev, pre_tokens_);
    f.cu_seqlens = At<const int32_t>(dev, pre_cu_);
    f.slots = At<const int32_t>(dev, pre_slots_);
    f.max_seqlen = max_len;
    f.head_rows = n_head;
    f.head_index = At<const int32_t>(dev, pre_head_);
    f.sampling_rows = At<const SamplingRow>(dev, pre_rows_);
    f.penalty_tokens = penalties_.device.as<const int32_t>();
    f.results = results_.device.as<SamplingResult>();
    MAMBA_RETURN_IF_ERROR(model_->Forward(f, pool_, stream_, timer));
    if (timer != nullptr) MAMBA_RETURN_IF_ERROR(timer->Mark("copy out", stream_));
    if (n_head > 0) {
      MAMBA_CUDA_RETURN_IF_ERROR(
          cudaMemcpyAsync(results_.host.data(), results_.device.data(),
                          sizeof(SamplingResult) * n_head, cudaMemcpyDeviceToHost, stream_),
          "copying sampling results");
    }
    // Only the last pass closes the timer; earlier passes just synchronize.
    MAMBA_RETURN_IF_ERROR(
        ReadResults(work, results, head_of, seq == work.size() ? timer : nullptr));
  }
  return absl::OkStatus();
}

absl::Status CudaBackend::Step(absl::Span<const backend::SeqWork> work,
                               absl::Span<backend::SeqResult> results) {
  MAMBA_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_index_), "selecting the CUDA device");
  MAMBA_RETURN_IF_ERROR(CheckWork(work, results));
  return RunChecked(work, results, nullptr);
}

absl::StatusOr<std::vector<CudaKernelTime>> CudaBackend::Profile(
    absl::Span<const backend::SeqWork> work, absl::Span<backend::SeqResult> results) {
  MAMBA_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_index_), "selecting the CUDA device");
  MAMBA_RETURN_IF_ERROR(CheckWork(work, results));
  if (timer_ == nullptr) {
    MAMBA_ASSIGN_OR_RETURN(timer_, KernelTimer::Create());
  }
  timer_->Reset();
  MAMBA_RETURN_IF_ERROR(RunChecked(work, results, timer_.get()));
  MAMBA_ASSIGN_OR_RETURN(std::vector<KernelFamilyTime> times, timer_->Collect());
  std::vector<CudaKernelTime> out;
  for (const KernelFamilyTime& t : times) out.push_back({t.family, t.ms, t.launches});
  return out;
}

absl::Status CudaBackend::ResetSlot(int32_t slot) {
  MAMBA_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_index_), "selecting the CUDA device");
  MAMBA_RETURN_IF_ERROR(CheckSlot(slot, "ResetSlot:"));
  MAMBA_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(pool_.slot(slot), 0, pool_.state_bytes(), stream_),
                             "zeroing a slot");
  return Sync("zeroing a slot");
}

absl::Status CudaBackend::CopySlot(int32_t from, int32_t to) {
  MAMBA_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_index_), "selecting the CUDA device");
  MAMBA_RETURN_IF_ERROR(CheckSlot(from, "CopySlot: source"));
  MAMBA_RETURN_IF_ERROR(CheckSlot(to, "CopySlot: destination"));
  if (from == to) return absl::OkStatus();
  MAMBA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(pool_.slot(to), pool_.slot(from), pool_.state_bytes(),
                                             cudaMemcpyDeviceToDevice, stream_),
                             "copying a slot");
  return Sync("copying a slot");
}

void CudaBackend::DeviceMemory(int64_t* used, int64_t* total) const {
  size_t free_bytes = 0, total_bytes = 0;
  *used = *total = 0;
  // cudaMemGetInfo reports on the calling thread's current device.
  if (cudaSetDevice(device_index_) != cudaSuccess) return;
  if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) return;
  *used = static_cast<int64_t>(total_bytes - free_bytes);
  *total = static_cast<int64_t>(total_bytes);
}

std::unique_ptr<backend::HostState> CudaBackend::AllocateHostState() {
  cudaSetDevice(device_index_);
  absl::StatusOr<PinnedBuffer> buffer = PinnedBuffer::Allocate(pool_.state_bytes(), "a host state");
  if (buffer.ok()) {
    return std::make_unique<PinnedHostState>(pool_.dtype(), std::move(*buffer),
                                             pool_.state_bytes());
  }
  // Pinned memory is a limited resource; ordinary memory works, only slower.
  return std::make_unique<backend::HeapHostState>(pool_.dtype(), pool_.state_bytes());
}

absl::Status CudaBackend::SaveSlot(int32_t slot, backend::HostState* out) {
  MAMBA_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_index_), "selecting the CUDA device");
  MAMBA_RETURN_IF_ERROR(CheckSlot(slot, "SaveSlot:"));
  if (out == nullptr || out->dtype() != pool_.dtype() || out->size() != pool_.state_bytes()) {
    return absl::InvalidArgumentError(
        absl::StrCat("SaveSlot: the host state must hold ", pool_.state_bytes(), " bytes of ",
                     std::string(model::DTypeName(pool_.dtype())), " (use AllocateHostState)"));
  }
  MAMBA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(out->data(), pool_.slot(slot), pool_.state_bytes(),
                                             cudaMemcpyDeviceToHost, stream_),
                             "saving a slot");
  return Sync("saving a slot");
}

absl::Status CudaBackend::LoadSlot(int32_t slot, const backend::HostState& in) {
  MAMBA_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_index_), "selecting the CUDA device");
  MAMBA_RETURN_IF_ERROR(CheckSlot(slot, "LoadSlot:"));
  if (in.dtype() != pool_.dtype() || in.size() != pool_.state_bytes()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "LoadSlot: the host state holds ", in.size(), " bytes of ",
        std::string(model::DTypeName(in.dtype())), "; this backend's states are ",
        pool_.state_bytes(), " bytes of ", std::string(model::DTypeName(pool_.dtype()))));
  }
  MAMBA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(pool_.slot(slot), in.data(), pool_.state_bytes(),
                                             cudaMemcpyHostToDevice, stream_),
                             "loading a slot");
  return Sync("loading a slot");
}

}  // namespace

bool CudaSupportsFamily(const model::ModelConfig& config) {
  switch (config.family) {
    case model::ModelFamily::kMamba1:
    case model::ModelFamily::kMamba2:
    case model::ModelFamily::kFalconMamba:
      return true;
  }
  return false;
}

absl::StatusOr<std::unique_ptr<backend::Backend>> CreateCudaBackend(
    const backend::BackendOptions& options, model::LoadedModel& model) {
  if (!CudaSupportsFamily(model.config)) {
    return absl::FailedPreconditionError(
        absl::StrCat("the CUDA backend does not run ", model::FamilyName(model.config.family),
                     " models yet; use --backend=cpu (or auto, which picks it for them)"));
  }
  MAMBA_ASSIGN_OR_RETURN(std::unique_ptr<CudaBackend> backend, CudaBackend::Create(options, model));
  return std::unique_ptr<backend::Backend>(std::move(backend));
}

absl::StatusOr<std::vector<CudaKernelTime>> ProfileCudaStep(
    backend::Backend& backend, absl::Span<const backend::SeqWork> work,
    absl::Span<backend::SeqResult> results) {
  auto* cuda = dynamic_cast<CudaBackend*>(&backend);
  if (cuda == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("ProfileCudaStep needs a CUDA backend, not ", backend.name()));
  }
  return cuda->Profile(work, results);
}

}  // namespace mamba::cuda
