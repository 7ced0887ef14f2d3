#include "kernels/max_abs.h"

#include "absl/strings/str_cat.h"
#include "kernels/cuda_status.h"

namespace mamba::kernels {

absl::Status LaunchMaxAbs(const MaxAbsParams& p, KernelDType act, cudaStream_t stream) {
  if (p.rows < 0 || p.cols < 0 || (p.rows > 0 && p.row_stride < p.cols)) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_abs: rows ", p.rows, ", cols ", p.cols, ", row stride ", p.row_stride,
                     " invalid; allowed: sizes >= 0, stride >= cols"));
  }
  if ((p.rows > 0 && p.cols > 0 && p.x == nullptr) || p.out == nullptr) {
    return absl::InvalidArgumentError("max_abs: x and out are required");
  }
  if (absl::Status s = CheckActivationDType("max_abs", act); !s.ok()) return s;
  cudaError_t err = RunMaxAbs(p, act, stream);
  if (err != cudaSuccess) return CudaStatus(err, "max_abs launch");
  return CheckLaunch("max_abs", stream);
}

}  // namespace mamba::kernels
