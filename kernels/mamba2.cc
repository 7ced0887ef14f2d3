#include "kernels/mamba2.h"

#include "absl/strings/str_cat.h"
#include "kernels/cuda_status.h"

namespace mamba::kernels {

absl::Status LaunchSsdScan(const SsdScanParams& p, KernelDType act, KernelDType state,
                           cudaStream_t stream) {
  if (p.num_seqs < 0 || p.total_tokens < 0 || p.n_heads <= 0 || p.n_groups <= 0 ||
      p.n_heads % p.n_groups != 0 || p.head_dim < 1 || p.head_dim > kSsdMaxHeadDim ||
      p.dstate < 1 || p.dstate > kSsdMaxState) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ssd_scan: num_seqs ", p.num_seqs, ", total_tokens ", p.total_tokens, ", n_heads ",
        p.n_heads, ", n_groups ", p.n_groups, ", head_dim ", p.head_dim, ", dstate ", p.dstate,
        " invalid; allowed: counts >= 0, n_groups dividing n_heads, head_dim 1..", kSsdMaxHeadDim,
        ", dstate 1..", kSsdMaxState));
  }
  if (p.num_seqs > 65535 || p.n_heads > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ssd_scan: at most 65535 sequences and heads (got ", p.num_seqs, ", ", p.n_heads, ")"));
  }
  if (p.cu_seqlens == nullptr && p.total_tokens != p.num_seqs) {
    return absl::InvalidArgumentError(
        "ssd_scan: without cu_seqlens every sequence is one token (total_tokens == num_seqs)");
  }
  if (p.x == nullptr || p.b == nullptr || p.c == nullptr || p.dt == nullptr ||
      p.dt_bias == nullptr || p.a == nullptr || p.d == nullptr || p.slots == nullptr ||
      p.state == nullptr || p.out == nullptr) {
    return absl::InvalidArgumentError(
        "ssd_scan: x, b, c, dt, dt_bias, a, d, slots, state and out are required");
  }
  const int64_t d_ssm = p.n_heads * p.head_dim;
  if (p.xbc_row_stride < d_ssm || p.dt_row_stride < p.n_heads || p.out_row_stride < d_ssm) {
    return absl::InvalidArgumentError("ssd_scan: a row stride is too small");
  }
  if (p.state_slot_stride < d_ssm * p.dstate) {
    return absl::InvalidArgumentError(
        "ssd_scan: state slot stride must hold n_heads * head_dim * dstate elements");
  }
  if (p.chunked_head_split < 0 || p.chunked_head_split > 2) {
    return absl::InvalidArgumentError(absl::StrCat("ssd_scan: chunked_head_split ",
                                                   p.chunked_head_split,
                                                   " invalid; allowed: 0 (by occupancy), 1, 2"));
  }
  if (p.chunked_min_tokens < 0 || p.max_seqlen < 0) {
    return absl::InvalidArgumentError(absl::StrCat("ssd_scan: chunked_min_tokens ",
                                                   p.chunked_min_tokens, " and max_seqlen ",
                                                   p.max_seqlen, " must be >= 0"));
  }
  if (!(p.dt_min <= p.dt_max)) {
    return absl::InvalidArgumentError(
        absl::StrCat("ssd_scan: dt_min ", p.dt_min, " above dt_max ", p.dt_max));
  }
  if (absl::Status s = CheckActivationDType("ssd_scan", act); !s.ok()) return s;
  if (absl::Status s = CheckStateDType("ssd_scan", state); !s.ok()) return s;
  cudaError_t err =
      act == KernelDType::kF16 ? RunSsdScanF16(p, state, stream) : RunSsdScanBF16(p, state, stream);
  if (err != cudaSuccess) return CudaStatus(err, "ssd_scan launch");
  return CheckLaunch("ssd_scan", stream);
}

absl::Status LaunchGatedNorm(const GatedNormParams& p, KernelDType act, cudaStream_t stream) {
  if (p.rows < 0 || p.dim <= 0 || p.group_size <= 0 || p.dim % p.group_size != 0 || p.mlp < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "gated_norm: rows ", p.rows, ", dim ", p.dim, ", group_size ", p.group_size, ", mlp ",
        p.mlp, " invalid; allowed: rows >= 0, dim > 0, group_size dividing dim, mlp >= 0"));
  }
  if (p.rows > 2147483647 || p.dim / p.group_size > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("gated_norm: ", p.rows, " rows or ",
                                                   p.dim / p.group_size,
                                                   " groups too many; allowed: < 2^31, <= 65535"));
  }
  if (p.y == nullptr || p.z == nullptr || p.out == nullptr ||
      (p.mlp > 0 && (p.z0 == nullptr || p.x0 == nullptr))) {
    return absl::InvalidArgumentError(
        "gated_norm: y, z and out are required (z0 and x0 too with mlp channels)");
  }
  if (p.y_row_stride < p.dim || p.proj_row_stride < p.dim || p.out_row_stride < p.mlp + p.dim) {
    return absl::InvalidArgumentError("gated_norm: a row stride is too small");
  }
  if (absl::Status s = CheckActivationDType("gated_norm", act); !s.ok()) return s;
  cudaError_t err =
      act == KernelDType::kF16 ? RunGatedNormF16(p, stream) : RunGatedNormBF16(p, stream);
  if (err != cudaSuccess) return CudaStatus(err, "gated_norm launch");
  return CheckLaunch("gated_norm", stream);
}

}  // namespace mamba::kernels
