// Mamba-2 kernels for f16 activations (one dtype per file so instantiations compile in parallel).
#include "kernels/mamba2_kernel.cuh"

namespace mamba::kernels {

cudaError_t RunSsdScanF16(const SsdScanParams& params, KernelDType state_dtype,
                          cudaStream_t stream) {
  return RunSsdScan<__half>(params, state_dtype, stream);
}

cudaError_t RunGatedNormF16(const GatedNormParams& params, cudaStream_t stream) {
  return RunGatedNorm<__half>(params, stream);
}

}  // namespace mamba::kernels
