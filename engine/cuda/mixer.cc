#include "engine/cuda/mixer.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/cuda/mamba1_mixer.h"
#include "engine/cuda/mamba2_mixer.h"

namespace mamba::cuda {

kernels::KernelDType ToKernelDType(model::DType t) {
  switch (t) {
    case model::DType::kF32:
      return kernels::KernelDType::kF32;
    case model::DType::kF16:
      return kernels::KernelDType::kF16;
    case model::DType::kBF16:
      return kernels::KernelDType::kBF16;
  }
  return kernels::KernelDType::kF32;
}

absl::Status GemmRunner::Run(const kernels::GemmArgs& args, cudaStream_t stream) const {
  if (deterministic_) return kernels::LaunchBatchInvariantGemm(args, stream);
  // Decode-sized products stream W once with the skinny kernel; cuBLAS's tiles leave most of
  // the GPU idle there.
  if (kernels::SkinnyGemmSupported(args)) return kernels::LaunchSkinnyGemm(args, stream);
  return gemm_->Run(args, stream);
}

absl::Status GemmRunner::Prepare(const std::vector<kernels::GemmArgs>& gemms,
                                 cudaStream_t stream) const {
  if (deterministic_) return absl::OkStatus();
  for (const kernels::GemmArgs& g : gemms) {
    if (!kernels::SkinnyGemmSupported(g)) MAMBA_RETURN_IF_ERROR(gemm_->Prepare(g, stream));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Mixer>> MakeMixer(const MixerContext& context,
                                                 const model::ModelWeights& weights) {
  switch (context.config->family) {
    case model::ModelFamily::kMamba1:
    case model::ModelFamily::kFalconMamba:
      return MakeMamba1Mixer(context, weights);
    case model::ModelFamily::kMamba2:
      return MakeMamba2Mixer(context, weights);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("the CUDA backend has no layers for the ",
                   model::FamilyName(context.config->family), " family"));
}

size_t MixerWorkspaceBytesPerToken(const model::ModelConfig& c) {
  const auto n = [](int64_t v) { return static_cast<size_t>(v); };
  if (c.family == model::ModelFamily::kMamba2) {
    // in_proj's output and the conv output (rows padded), fp32 y, the gated rows.
    return n(c.in_proj_dim() + 8) * 2 + n(c.conv_dim() + 8) * 2 + n(c.d_ssm()) * 4 +
           n(c.d_inner) * 2;
  }
  // x|z, the conv output, dt, y, and dt_low|B|C (padded).
  return n(c.d_inner) * 2 * (2 + 3) + n(c.dt_rank + 2 * c.d_state + 8) * 2;
}

}  // namespace mamba::cuda
