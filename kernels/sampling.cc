#include "kernels/sampling.h"

#include "absl/strings/str_cat.h"
#include "kernels/cuda_status.h"

namespace mamba::kernels {

absl::Status LaunchSampling(const SamplingLaunch& l, cudaStream_t stream) {
  if (l.rows < 0 || l.rows > 0x7fffffff || l.vocab <= 0 || l.vocab > kSamplingMaxVocab) {
    return absl::InvalidArgumentError(absl::StrCat("sampling: rows ", l.rows, ", vocab ", l.vocab,
                                                   " invalid; allowed: rows >= 0, vocab 1..",
                                                   kSamplingMaxVocab));
  }
  if (l.logits == nullptr || l.row_params == nullptr || l.scratch == nullptr ||
      l.results == nullptr || l.logits_row_stride < l.vocab) {
    return absl::InvalidArgumentError(
        "sampling: logits (row stride >= vocab), row_params, scratch and results are required");
  }
  cudaError_t err = RunSampling(l, stream);
  if (err != cudaSuccess) return CudaStatus(err, "sampling launch");
  return CheckLaunch("sampling", stream);
}

absl::Status LaunchSampleUniformValues(const uint64_t* seeds, const uint64_t* positions,
                                       double* out, int64_t n, cudaStream_t stream) {
  if (n < 0 || (n > 0 && (seeds == nullptr || positions == nullptr || out == nullptr))) {
    return absl::InvalidArgumentError("sample_uniform: seeds, positions and out are required");
  }
  cudaError_t err = RunSampleUniformValues(seeds, positions, out, n, stream);
  if (err != cudaSuccess) return CudaStatus(err, "sample_uniform launch");
  return CheckLaunch("sample_uniform", stream);
}

}  // namespace mamba::kernels
