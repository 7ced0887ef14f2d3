#include "kernels/selective_state_update.h"

#include "absl/strings/str_cat.h"
#include "kernels/cuda_status.h"

namespace mamba::kernels {

absl::Status LaunchSelectiveStateUpdate(const SelectiveStateUpdateParams& p, KernelDType act,
                                        KernelDType state, cudaStream_t stream) {
  if (p.batch < 0 || p.dim <= 0 || p.dstate < 1 || p.dstate > kStateUpdateMaxState) {
    return absl::InvalidArgumentError(absl::StrCat(
        "selective_state_update: batch ", p.batch, ", dim ", p.dim, ", dstate ", p.dstate,
        " invalid; allowed: batch >= 0, dim > 0, dstate 1..", kStateUpdateMaxState));
  }
  if (p.batch > int64_t{65535} * kStateUpdateRows) {
    return absl::InvalidArgumentError(
        absl::StrCat("selective_state_update: batch ", p.batch, " too large"));
  }
  if (p.x == nullptr || p.z == nullptr || p.b == nullptr || p.c == nullptr ||
      p.dt_bias == nullptr || p.a2 == nullptr || p.d == nullptr || p.slots == nullptr ||
      p.state == nullptr || p.out == nullptr) {
    return absl::InvalidArgumentError(
        "selective_state_update: x, z, b, c, dt_bias, a2, d, slots, state and out are required");
  }
  const bool low_rank = p.dt_proj_weight != nullptr;
  if (low_rank == (p.dt != nullptr) || (low_rank && (p.dt_low == nullptr || p.dt_rank < 1))) {
    return absl::InvalidArgumentError(
        "selective_state_update: give either dt, or dt_low + dt_proj_weight with dt_rank >= 1");
  }
  if (low_rank && p.dt_rank > kStateUpdateMaxRank) {
    return absl::InvalidArgumentError(absl::StrCat("selective_state_update: dt_rank ", p.dt_rank,
                                                   " above ", kStateUpdateMaxRank,
                                                   " needs dt precomputed (pass dt)"));
  }
  if (p.x_row_stride < p.dim || p.z_row_stride < p.dim || p.out_row_stride < p.dim ||
      (!low_rank && p.dt_row_stride < p.dim) || (low_rank && p.dt_low_row_stride < p.dt_rank) ||
      p.b_row_stride < p.dstate || p.c_row_stride < p.dstate) {
    return absl::InvalidArgumentError("selective_state_update: a row stride is too small");
  }
  if (p.state_slot_stride < p.dim * p.dstate) {
    return absl::InvalidArgumentError(
        "selective_state_update: state slot stride must hold dim * dstate elements");
  }
  if (act != KernelDType::kF16 && act != KernelDType::kBF16) {
    return absl::InvalidArgumentError(absl::StrCat("selective_state_update: activation dtype ",
                                                   KernelDTypeName(act),
                                                   " unsupported; allowed: f16, bf16"));
  }
  if (state != KernelDType::kF32 && state != KernelDType::kBF16) {
    return absl::InvalidArgumentError(absl::StrCat("selective_state_update: state dtype ",
                                                   KernelDTypeName(state),
                                                   " unsupported; allowed: f32, bf16"));
  }
  cudaError_t err = act == KernelDType::kF16 ? RunSelectiveStateUpdateF16(p, state, stream)
                                             : RunSelectiveStateUpdateBF16(p, state, stream);
  if (err != cudaSuccess) return CudaStatus(err, "selective_state_update launch");
  return CheckLaunch("selective_state_update", stream);
}

}  // namespace mamba::kernels
