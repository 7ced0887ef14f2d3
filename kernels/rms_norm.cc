#include "kernels/rms_norm.h"

#include "absl/strings/str_cat.h"
#include "kernels/cuda_status.h"

namespace mamba::kernels {

absl::Status LaunchRmsNorm(const RmsNormParams& p, KernelDType dtype, cudaStream_t stream) {
  if (p.rows < 0 || p.dim <= 0 || p.dim > kRmsNormMaxDim) {
    return absl::InvalidArgumentError(absl::StrCat("rms_norm: rows ", p.rows, " and dim ", p.dim,
                                                   " invalid; allowed: rows >= 0, dim in [1, ",
                                                   kRmsNormMaxDim, "]"));
  }
  if (p.rows > 0x7fffffff) {
    return absl::InvalidArgumentError(absl::StrCat("rms_norm: too many rows (", p.rows, ")"));
  }
  if (p.weight == nullptr || p.out == nullptr || p.out_row_stride < p.dim) {
    return absl::InvalidArgumentError("rms_norm: weight and out (row stride >= dim) are required");
  }
  if (p.tokens != nullptr) {
    if (p.embedding == nullptr || p.add != nullptr) {
      return absl::InvalidArgumentError(
          "rms_norm: tokens need an embedding and exclude add (the first layer has no residual)");
    }
  }
  if (p.write_residual || p.tokens == nullptr) {
    if (p.residual == nullptr || p.residual_row_stride < p.dim) {
      return absl::InvalidArgumentError(
          "rms_norm: residual (row stride >= dim) is required unless gathering the embedding "
          "without writing the residual");
    }
  }
  if (p.add != nullptr && p.add_row_stride < p.dim) {
    return absl::InvalidArgumentError("rms_norm: add row stride must be >= dim");
  }
  if (p.add_bias != nullptr && p.add == nullptr) {
    return absl::InvalidArgumentError("rms_norm: add_bias needs add");
  }
  if (!(p.eps > 0.0f)) return absl::InvalidArgumentError("rms_norm: eps must be > 0");
  cudaError_t err;
  switch (dtype) {
    case KernelDType::kF16:
      err = RunRmsNormF16(p, stream);
      break;
    case KernelDType::kBF16:
      err = RunRmsNormBF16(p, stream);
      break;
    default:
      return absl::InvalidArgumentError(absl::StrCat("rms_norm: activation dtype ",
                                                     KernelDTypeName(dtype),
                                                     " unsupported; allowed: f16, bf16"));
  }
  if (err != cudaSuccess) return CudaStatus(err, "rms_norm launch");
  return CheckLaunch("rms_norm", stream);
}

}  // namespace mamba::kernels
