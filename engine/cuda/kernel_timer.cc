#include "engine/cuda/kernel_timer.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "kernels/cuda_status.h"

namespace mamba::cuda {

absl::StatusOr<std::unique_ptr<KernelTimer>> KernelTimer::Create(int capacity) {
  std::unique_ptr<KernelTimer> t(new KernelTimer());
  t->events_.resize(capacity, nullptr);
  t->families_.resize(capacity, nullptr);
  for (cudaEvent_t& e : t->events_) {
    MAMBA_CUDA_RETURN_IF_ERROR(cudaEventCreate(&e), "creating timing events");
  }
  return t;
}

KernelTimer::~KernelTimer() {
  for (cudaEvent_t e : events_) {
    if (e != nullptr) cudaEventDestroy(e);
  }
}

void KernelTimer::Reset() {
  used_ = 0;
  finished_ = false;
}

absl::Status KernelTimer::Mark(const char* family, cudaStream_t stream) {
  if (used_ + 1 >= events_.size()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("kernel timer: more than ", events_.size() - 1, " launches in one step"));
  }
  families_[used_] = family;
  MAMBA_CUDA_RETURN_IF_ERROR(cudaEventRecord(events_[used_], stream), "recording a timing event");
  ++used_;
  return absl::OkStatus();
}

absl::Status KernelTimer::Finish(cudaStream_t stream) {
  families_[used_] = nullptr;
  MAMBA_CUDA_RETURN_IF_ERROR(cudaEventRecord(events_[used_], stream), "recording a timing event");
  ++used_;
  finished_ = true;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<KernelFamilyTime>> KernelTimer::Collect() const {
  if (!finished_) return absl::FailedPreconditionError("kernel timer: Collect before Finish");
  std::vector<KernelFamilyTime> out;
  for (size_t i = 0; i + 1 < used_; ++i) {
    float ms = 0.0f;
    MAMBA_CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&ms, events_[i], events_[i + 1]),
                               "reading a timing event");
    KernelFamilyTime* entry = nullptr;
    for (KernelFamilyTime& e : out) {
      if (e.family == families_[i]) entry = &e;
    }
    if (entry == nullptr) {
      out.push_back({families_[i], 0.0, 0});
      entry = &out.back();
    }
    entry->ms += ms;
    entry->launches += 1;
  }
  return out;
}

}  // namespace mamba::cuda
