#include "engine/cpu/cpu_backend.h"

#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/cpu/cpu_model.h"
#include "engine/sampling/sampler.h"

namespace mamba::cpu {
namespace {

constexpr int32_t kDefaultSlots = 64;

class CpuBackend final : public backend::Backend {
 public:
  CpuBackend(std::unique_ptr<cpu::CpuModel> model, int32_t num_slots, size_t weight_bytes)
      : model_(std::move(model)),
        weight_bytes_(weight_bytes),
        slots_(num_slots, cpu::SequenceState(model_->config())),
        state_bytes_(slots_.empty() ? 0 : slots_[0].bytes()),
        samplers_(model_->num_threads()) {}

  const model::ModelConfig& config() const override { return model_->config(); }
  std::string name() const override { return "cpu"; }
  std::string device() const override {
    return absl::StrCat("cpu (", model_->num_threads(), " threads, AVX2)");
  }
  model::DType weight_dtype() const override { return model_->weights().MatrixDType(); }
  model::DType state_dtype() const override { return model::DType::kF32; }
  size_t weight_bytes() const override { return weight_bytes_; }
  // Fixed at construction: other threads (Engine::Stats) read it while the scheduler thread
  // copies slots, so it must not be derived from a slot's members.
  size_t state_bytes() const override { return state_bytes_; }
  int32_t num_slots() const override { return static_cast<int32_t>(slots_.size()); }

  absl::Status Step(absl::Span<const backend::SeqWork> work,
                    absl::Span<backend::SeqResult> results) override;

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
    // Element copy: the slots all have one layout, and assigning the SequenceState would rewrite
    // its vector's bookkeeping that state_bytes() readers elsewhere may be looking at.
    if (from != to) {
      absl::Span<const float> src = slots_[from].values();
      std::copy(src.begin(), src.end(), slots_[to].values().begin());
    }
    return absl::OkStatus();
  }

  std::unique_ptr<backend::HostState> AllocateHostState() override {
    return std::make_unique<backend::HeapHostState>(model::DType::kF32, state_bytes());
  }

  absl::Status SaveSlot(int32_t slot, backend::HostState* out) override {
    absl::Status valid = CheckSlot(slot, "slot");
    if (!valid.ok()) return valid;
    valid = CheckHostState(out, "SaveSlot");
    if (!valid.ok()) return valid;
    std::memcpy(out->data(), slots_[slot].values().data(), state_bytes());
    return absl::OkStatus();
  }

  absl::Status LoadSlot(int32_t slot, const backend::HostState& in) override {
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

  absl::Status CheckHostState(const backend::HostState* h, const char* op) const {
    if (h == nullptr) return absl::InvalidArgumentError(absl::StrCat(op, ": no host state"));
    if (h->dtype() != model::DType::kF32 || h->size() != state_bytes()) {
      return absl::InvalidArgumentError(absl::StrCat(
          op, ": host state is ", std::string(model::DTypeName(h->dtype())), " with ", h->size(),
          " bytes; this backend's states are f32 with ", state_bytes(), " bytes"));
    }
    return absl::OkStatus();
  }

  // Checks work[i] on its own: what could make it fail before anything runs. `used` marks the
  // slots of the items already accepted in this step.
  absl::Status CheckItem(const backend::SeqWork& w, std::vector<bool>& used) const;

  std::unique_ptr<cpu::CpuModel> model_;
  size_t weight_bytes_;
  std::vector<cpu::SequenceState> slots_;
  const size_t state_bytes_;
  std::vector<sampling::Sampler> samplers_;  // one per pool thread
  std::vector<std::vector<float>> logits_;   // per batch index, for sampled sequences
};

absl::Status CpuBackend::CheckItem(const backend::SeqWork& w, std::vector<bool>& used) const {
  const int32_t vocab = config().vocab_size;
  if (w.slot < 0 || w.slot >= num_slots()) {
    return absl::InvalidArgumentError(
        absl::StrCat("slot ", w.slot, " is out of range; allowed: 0..", num_slots() - 1));
  }
  if (used[w.slot]) {
    return absl::InvalidArgumentError(
        absl::StrCat("slot ", w.slot, " appears twice in one step; slots must be distinct"));
  }
  if (w.tokens.empty()) {
    return absl::InvalidArgumentError("the sequence has no tokens; allowed: at least 1");
  }
  for (size_t t = 0; t < w.tokens.size(); ++t) {
    if (w.tokens[t] < 0 || w.tokens[t] >= vocab) {
      return absl::InvalidArgumentError(absl::StrCat("token ", t, " has id ", w.tokens[t],
                                                     ", outside the vocabulary; allowed: 0..",
                                                     vocab - 1));
    }
  }
  if (w.sample) {
    for (int32_t t : w.penalty_tokens) {
      if (t < 0 || t >= vocab) {
        return absl::InvalidArgumentError(absl::StrCat("repetition penalty token id ", t,
                                                       " is outside the vocabulary; allowed: 0..",
                                                       vocab - 1));
      }
    }
    for (int32_t t : w.output_tokens) {
      if (t < 0 || t >= vocab) {
        return absl::InvalidArgumentError(absl::StrCat(
            "output token id ", t, " is outside the vocabulary; allowed: 0..", vocab - 1));
      }
    }
  }
  used[w.slot] = true;
  return absl::OkStatus();
}

absl::Status CpuBackend::Step(absl::Span<const backend::SeqWork> work,
                              absl::Span<backend::SeqResult> results) {
  if (results.size() != work.size()) {
    return absl::InvalidArgumentError(absl::StrCat("Step got ", work.size(), " work items but ",
                                                   results.size(), " result slots"));
  }
  const int32_t vocab = config().vocab_size;
  if (logits_.size() < work.size()) logits_.resize(work.size());
  std::vector<bool> used(slots_.size(), false);
  std::vector<cpu::SequenceInput> inputs;
  std::vector<size_t> input_of;  // work index of each input
  inputs.reserve(work.size());
  for (size_t i = 0; i < work.size(); ++i) {
    const backend::SeqWork& w = work[i];
    backend::SeqResult& r = results[i];
    r = backend::SeqResult();
    r.status = CheckItem(w, used);
    if (!r.status.ok()) continue;  // refused before anything ran: its state is untouched
    float* logits = nullptr;
    if (w.want_logits) {
      r.logits.resize(vocab);
      logits = r.logits.data();
    } else if (w.sample) {
      logits_[i].resize(vocab);
      logits = logits_[i].data();
    }
    inputs.push_back({&slots_[w.slot], w.tokens, logits});
    input_of.push_back(i);
  }
  if (inputs.empty()) return absl::OkStatus();
  // Every input was checked above, so Forward cannot refuse any of them.
  absl::Status forward = model_->Forward(inputs);
  if (!forward.ok()) return forward;

  // Sampling, spread over the pool's threads: a 50k vocabulary takes a few hundred microseconds.
  // A sampler error (logits that are not finite: a diverged or poisoned state) fails that
  // sequence alone.
  std::vector<size_t> to_sample;  // input indices
  for (size_t j = 0; j < inputs.size(); ++j) {
    if (work[input_of[j]].sample) to_sample.push_back(j);
  }
  model_->pool().RunChunks(static_cast<int64_t>(to_sample.size()), [&](int64_t k, int thread) {
    const size_t j = to_sample[k];
    const size_t i = input_of[j];
    const backend::SeqWork& w = work[i];
    sampling::SampleOutput out;
    absl::Status st = samplers_[thread].Sample(absl::MakeConstSpan(inputs[j].logits, vocab),
                                               w.sampling, w.sample_position, w.penalty_tokens,
                                               w.output_tokens, w.top_logprobs, &out);
    if (st.ok()) {
      results[i].token = out.token;
      results[i].logprob = out.logprob;
      results[i].top = std::move(out.top);
    } else {
      // The state has advanced past this point: whatever the sampler refused, it is a fault of
      // this sequence's step, not a refusal before it.
      results[i].status =
          st.code() == absl::StatusCode::kInternal
              ? std::move(st)
              : absl::InternalError(absl::StrCat("sampling failed: ", st.message()));
    }
  });
  return absl::OkStatus();
}

// The CPU backend reads its weights for as long as it serves. Views into a memory-mapped
// checkpoint would fault (SIGBUS, the whole server gone) as soon as the file is truncated or
// rewritten in place while the server runs, e.g. by an operator copying a new model over the old
// one. So the backend serves from its own copy and lets the mapping go; reading the file costs
// far more than the copy.
absl::StatusOr<model::ModelWeights> CopyOfWeights(const model::ModelConfig& config,
                                                  const model::ModelWeights& from) {
  std::vector<const model::TensorView*> sources;
  from.ForEachTensor(config, [&](const model::TensorSpec&, const model::TensorView& view) {
    sources.push_back(&view);
  });
  model::ModelWeights copy;
  copy.ResizeFor(config);
  size_t next = 0;
  absl::Status status;
  copy.ForEachMutableTensor(config, [&](const model::TensorSpec& spec, model::TensorView& to) {
    const model::TensorView& source = *sources[next++];
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

absl::StatusOr<std::unique_ptr<backend::Backend>> CreateCpuBackend(
    const backend::BackendOptions& options, model::LoadedModel& model) {
  if (options.num_slots < 0) {
    return absl::InvalidArgumentError(absl::StrCat("num_slots ", options.num_slots,
                                                   " is invalid; allowed: 0 (default ",
                                                   kDefaultSlots, ") or > 0"));
  }
  absl::StatusOr<model::DType> state_dtype = model::ParseDType(options.state_dtype);
  if (!state_dtype.ok() || *state_dtype != model::DType::kF32) {
    return absl::InvalidArgumentError(absl::StrCat("state_dtype '", options.state_dtype,
                                                   "' is not supported by the CPU backend; "
                                                   "allowed: f32"));
  }
  const int32_t num_slots = options.num_slots == 0 ? kDefaultSlots : options.num_slots;
  if (!absl::StartsWith(model.source, "synthetic:")) {
    absl::StatusOr<model::ModelWeights> copy = CopyOfWeights(model.config, model.weights);
    if (!copy.ok()) return copy.status();
    model.weights = *std::move(copy);  // unmaps the checkpoint
  }
  const size_t weight_bytes = model.weights.TotalBytes();
  absl::StatusOr<std::unique_ptr<cpu::CpuModel>> cpu_model =
      cpu::CpuModel::Create(model.config, std::move(model.weights), options.cpu_threads);
  if (!cpu_model.ok()) return cpu_model.status();
  return std::unique_ptr<backend::Backend>(
      new CpuBackend(std::move(cpu_model).value(), num_slots, weight_bytes));
}

}  // namespace mamba::cpu
