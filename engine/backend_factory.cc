#include "engine/backend_factory.h"

#include "absl/strings/str_cat.h"
#include "engine/cpu/cpu_backend.h"
#ifdef MAMBA_HAVE_CUDA
#include "engine/cuda/cuda_backend.h"
#endif

namespace mamba {

bool CudaAvailable() {
#ifdef MAMBA_HAVE_CUDA
  return cuda::CudaDeviceCount() > 0;
#else
  return false;
#endif
}

absl::StatusOr<std::unique_ptr<backend::Backend>> CreateBackend(
    const backend::BackendOptions& options, model::LoadedModel& model) {
  std::string kind = options.kind;
  if (kind == "auto") {
    bool cuda = CudaAvailable();
#ifdef MAMBA_HAVE_CUDA
    // A family without CUDA layers runs on the CPU rather than not at all.
    cuda = cuda && cuda::CudaSupportsFamily(model.config);
#endif
    kind = cuda ? "cuda" : "cpu";
  }
  if (kind == "cpu") return cpu::CreateCpuBackend(options, model);
  if (kind == "cuda") {
#ifdef MAMBA_HAVE_CUDA
    if (cuda::CudaDeviceCount() == 0) {
      return absl::FailedPreconditionError(
          "--backend=cuda but no CUDA device is visible (no driver or GPU); use --backend=cpu");
    }
    return cuda::CreateCudaBackend(options, model);
#else
    return absl::FailedPreconditionError(
        "--backend=cuda but this binary was built without CUDA (configure with -DMAMBA_CUDA=ON)");
#endif
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown backend '", kind, "'; allowed: auto, cpu, cuda"));
}

}  // namespace mamba
