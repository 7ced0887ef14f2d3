#include "engine/cpu/cpu_backend.h"

#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/cpu/cpu_model.h"
#include "engine/sampler.h"

namespace mamba {
namespace {

constexpr int32_t kDefaultSlots = 64;

class CpuBackend final : public Backend {
 public:
  CpuBackend(std::unique_ptr<cpu::CpuModel> model, int32_t num_slots, size_t weight_bytes)
      : model_(std::move(model)),
        weight_bytes_(weight_bytes),
        slots_(num_slots, cpu::SequenceState(model_->config())),
        samplers_(model_->num_threads()) {}

  const ModelConfig& config() const override { return model_->config(); }
  std::string name() const override { return "cpu"; }
  std::string device() const override {
    return absl::StrCat("cpu (", model_->num_threads(), " threads, AVX2)");
  }
  DType weight_dtype() const override { return model_->weights().MatrixDType(); }
  DType state_dtype() const override { return DType::kF32; }
  size_t weight_bytes() const override { return weight_bytes_; }
  size_t state_bytes() const override { return slots_.empty() ? 0 : slots_[0].bytes(); }
  int32_t num_slots() const override { return static_cast<int32_t>(slots_.size()); }

  absl::Status Step(absl::Span<const SeqWork> work, absl::Span<SeqResult> results) override;

  absl::Status ResetSlot(int32_t slot) override {
    absl::Status valid = CheckSlot(slot, "slot");
    if (!valid.ok()) return valid;
    slots_[slot].Reset();
    return absl::OkStatus();
  }

  absl::Status CopySlot(int32_t from, int32_t to) override {
    absl::Status valid = CheckSlot(from, "source slot");
    if (!valid.ok()) return valid;
    valid = CheckSlot(to, "destination slot");
    if (!valid.ok()) return valid;
    if (from != to) slots_[to] = slots_[from];
    return absl::OkStatus();
  }

  std::unique_ptr<HostState> AllocateHostState() override {
    return std::make_unique<HeapHostState>(DType::kF32, state_bytes());
  }

  absl::Status SaveSlot(int32_t slot, HostState* out) override {
    absl::Status valid = CheckSlot(slot, "slot");
    if (!valid.ok()) return valid;
    valid = CheckHostState(out, "SaveSlot");
    if (!valid.ok()) return valid;
    std::memcpy(out->data(), slots_[slot].values().data(), state_bytes());
    return absl::OkStatus();
  }

  absl::Status LoadSlot(int32_t slot, const HostState& in) override {
    absl::Status valid = CheckSlot(slot, "slot");
    if (!valid.ok()) return valid;
    valid = CheckHostState(&in, "LoadSlot");
    if (!valid.ok()) return valid;
    std::memcpy(slots_[slot].values().data(), in.data(), state_bytes());
    return absl::OkStatus();
  }

 private:
  absl::Status CheckSlot(int32_t slot, const char* what) const {
    if (slot < 0 || slot >= num_slots()) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " ", slot, " is out of range; allowed: 0..", num_slots() - 1));
    }
    return absl::OkStatus();
  }

  absl::Status CheckHostState(const HostState* h, const char* op) const {
    if (h == nullptr) return absl::InvalidArgumentError(absl::StrCat(op, ": no host state"));
    if (h->dtype() != DType::kF32 || h->size() != state_bytes()) {
      return absl::InvalidArgumentError(absl::StrCat(
          op, ": host state is ", std::string(DTypeName(h->dtype())), " with ", h->size(),
          " bytes; this backend's states are f32 with ", state_bytes(), " bytes"));
    }
    return absl::OkStatus();
  }

  // Everything that could make a step fail, checked before any state changes.
  absl::Status Validate(absl::Span<const SeqWork> work, absl::Span<SeqResult> results) const;

  std::unique_ptr<cpu::CpuModel> model_;
  size_t weight_bytes_;
  std::vector<cpu::SequenceState> slots_;
  std::vector<Sampler> samplers_;           // one per pool thread
  std::vector<std::vector<float>> logits_;  // per batch index, for sampled sequences
};

absl::Status CpuBackend::Validate(absl::Span<const SeqWork> work,
                                  absl::Span<SeqResult> results) const {
  if (results.size() != work.size()) {
    return absl::InvalidArgumentError(absl::StrCat("Step got ", work.size(), " work items but ",
                                                   results.size(), " result slots"));
  }
  const int32_t vocab = config().vocab_size;
  std::vector<bool> used(slots_.size(), false);
  for (size_t i = 0; i < work.size(); ++i) {
    const SeqWork& w = work[i];
    if (w.slot < 0 || w.slot >= num_slots()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "work item ", i, ": slot ", w.slot, " is out of range; allowed: 0..", num_slots() - 1));
    }
    if (used[w.slot]) {
      return absl::InvalidArgumentError(
          absl::StrCat("work item ", i, ": slot ", w.slot,
                       " appears twice in one step; slots must be distinct"));
    }
    used[w.slot] = true;
    if (w.tokens.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("work item ", i, " (slot ", w.slot, ") has no tokens; allowed: at least 1"));
    }
    for (size_t t = 0; t < w.tokens.size(); ++t) {
      if (w.tokens[t] < 0 || w.tokens[t] >= vocab) {
        return absl::InvalidArgumentError(
            absl::StrCat("work item ", i, " (slot ", w.slot, "): token ", t, " has id ",
                         w.tokens[t], ", outside the vocabulary; allowed: 0..", vocab - 1));
      }
    }
    if (w.sample) {
      absl::Status valid = ValidateSamplingParams(w.sampling, w.top_logprobs);
      if (!valid.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("work item ", i, " (slot ", w.slot, "): ", valid.message()));
      }
      for (int32_t t : w.penalty_tokens) {
        if (t < 0 || t >= vocab) {
          return absl::InvalidArgumentError(
              absl::StrCat("work item ", i, " (slot ", w.slot, "): repetition penalty token id ", t,
                           " is outside the vocabulary; allowed: 0..", vocab - 1));
        }
      }
    }
  }
  return absl::OkStatus();
}

absl::Status CpuBackend::Step(absl::Span<const SeqWork> work, absl::Span<SeqResult> results) {
  absl::Status valid = Validate(work, results);
  if (!valid.ok()) return valid;
  const int32_t vocab = config().vocab_size;
  if (logits_.size() < work.size()) logits_.resize(work.size());
  std::vector<cpu::SequenceInput> inputs(work.size());
  for (size_t i = 0; i < work.size(); ++i) {
    const SeqWork& w = work[i];
    SeqResult& r = results[i];
    r.token = -1;
    r.logprob = 0.0f;
    r.top.clear();
    float* logits = nullptr;
    if (w.want_logits) {
      r.logits.resize(vocab);
      logits = r.logits.data();
    } else {
      r.logits.clear();
      if (w.sample) {
        logits_[i].resize(vocab);
        logits = logits_[i].data();
      }
    }
    inputs[i] = {&slots_[w.slot], w.tokens, logits};
  }
  absl::Status forward = model_->Forward(inputs);
  if (!forward.ok()) return forward;

  // Sampling, spread over the pool's threads: a 50k vocabulary takes a few hundred microseconds.
  std::vector<size_t> to_sample;
  for (size_t i = 0; i < work.size(); ++i) {
    if (work[i].sample) to_sample.push_back(i);
  }
  if (to_sample.empty()) return absl::OkStatus();
  std::vector<absl::Status> statuses(to_sample.size());
  model_->pool().RunChunks(static_cast<int64_t>(to_sample.size()), [&](int64_t j, int thread) {
    const size_t i = to_sample[j];
    const SeqWork& w = work[i];
    SampleOutput out;
    statuses[j] =
        samplers_[thread].Sample(absl::MakeConstSpan(inputs[i].logits, vocab), w.sampling,
                                 w.sample_position, w.penalty_tokens, w.top_logprobs, &out);
    if (statuses[j].ok()) {
      results[i].token = out.token;
      results[i].logprob = out.logprob;
      results[i].top = std::move(out.top);
    }
  });
  for (size_t j = 0; j < statuses.size(); ++j) {
    if (!statuses[j].ok()) {
      return absl::Status(statuses[j].code(),
                          absl::StrCat("work item ", to_sample[j], " (slot ",
                                       work[to_sample[j]].slot, "): ", statuses[j].message()));
    }
  }
  return absl::OkStatus();
}

// The CPU backend reads its weights for as long as it serves. Views into a memory-mapped
// checkpoint would fault (SIGBUS, the whole server gone) as soon as the file is truncated or
// rewritten in place while the server runs, e.g. by an operator copying a new model over the old
// one. So the backend serves from its own copy and lets the mapping go; reading the file costs
// far more than the copy.
absl::StatusOr<ModelWeights> CopyOfWeights(const ModelConfig& config, const ModelWeights& from) {
  std::vector<const TensorView*> sources;
  from.ForEachTensor(config,
                     [&](const TensorSpec&, const TensorView& view) { sources.push_back(&view); });
  ModelWeights copy;
  copy.ResizeFor(config);
  size_t next = 0;
  absl::Status status;
  copy.ForEachMutableTensor(config, [&](const TensorSpec& spec, TensorView& to) {
    const TensorView& source = *sources[next++];
    if (!status.ok() || source.empty()) return;
    void* buffer = copy.AllocateOwned(source.nbytes());
    if (buffer == nullptr) {
      status = absl::ResourceExhaustedError(absl::StrCat(
          "cannot allocate ", source.nbytes(), " bytes for a copy of tensor '", spec.name, "'"));
      return;
    }
    std::memcpy(buffer, source.data, source.nbytes());
    to = source;
    to.data = buffer;
  });
  if (!status.ok()) return status;
  copy.lm_head_tied = from.lm_head_tied;
  if (from.lm_head_tied) copy.lm_head = copy.embedding;
  return copy;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Backend>> CreateCpuBackend(const BackendOptions& options,
                                                          LoadedModel& model) {
  if (options.num_slots < 0) {
    return absl::InvalidArgumentError(absl::StrCat("num_slots ", options.num_slots,
                                                   " is invalid; allowed: 0 (default ",
                                                   kDefaultSlots, ") or > 0"));
  }
  absl::StatusOr<DType> state_dtype = ParseDType(options.state_dtype);
  if (!state_dtype.ok() || *state_dtype != DType::kF32) {
    return absl::InvalidArgumentError(absl::StrCat("state_dtype '", options.state_dtype,
                                                   "' is not supported by the CPU backend; "
                                                   "allowed: f32"));
  }
  const int32_t num_slots = options.num_slots == 0 ? kDefaultSlots : options.num_slots;
  if (!absl::StartsWith(model.source, "synthetic:")) {
    absl::StatusOr<ModelWeights> copy = CopyOfWeights(model.config, model.weights);
    if (!copy.ok()) return copy.status();
    model.weights = *std::move(copy);  // unmaps the checkpoint
  }
  const size_t weight_bytes = model.weights.TotalBytes();
  absl::StatusOr<std::unique_ptr<cpu::CpuModel>> cpu_model =
      cpu::CpuModel::Create(model.config, std::move(model.weights), options.cpu_threads);
  if (!cpu_model.ok()) return cpu_model.status();
  return std::unique_ptr<Backend>(
      new CpuBackend(std::move(cpu_model).value(), num_slots, weight_bytes));
}

}  // namespace mamba
