// Mamba-2 kernels for bf16 activations (one dtype per file so instantiations compile in parallel).
#include "kernels/mamba2_kernel.cuh"

namespace mamba::kernels {

cudaError_t RunSsdScanBF16(const SsdScanParams& params, KernelDType state_dtype,
                          cudaStream_t stream) {
  return RunSsdScan<__nv_bfloat16>(params, state_dtype, stream);
}

cudaError_t RunGatedNormBF16(const GatedNormParams& params, cudaStream_t stream) {
  return RunGatedNorm<__nv_bfloat16>(params, stream);
}

}  // namespace mamba::kernels
