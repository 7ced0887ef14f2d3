#include "kernels/dbc_norm.h"

#include "absl/strings/str_cat.h"
#include "kernels/cuda_status.h"

namespace mamba::kernels {

absl::Status LaunchDbcNorm(const DbcNormParams& p, KernelDType act, cudaStream_t stream) {
  if (p.rows < 0 || p.rows > 2147483647 || p.dt_rank < 1 || p.dstate < 1) {
    return absl::InvalidArgumentError(absl::StrCat("dbc_norm: rows ", p.rows, ", dt_rank ",
                                                   p.dt_rank, ", dstate ", p.dstate,
                                                   " invalid; allowed: rows >= 0, sizes >= 1"));
  }
  if (p.dbc == nullptr || p.row_stride < p.dt_rank + 2 * p.dstate) {
    return absl::InvalidArgumentError(
        "dbc_norm: dbc is required and its rows must hold dt_rank + 2 * dstate values");
  }
  if (absl::Status s = CheckActivationDType("dbc_norm", act); !s.ok()) return s;
  cudaError_t err = RunDbcNorm(p, act, stream);
  if (err != cudaSuccess) return CudaStatus(err, "dbc_norm launch");
  return CheckLaunch("dbc_norm", stream);
}

}  // namespace mamba::kernels
