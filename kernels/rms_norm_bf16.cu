// RMSNorm for bf16 activations (one dtype per file so instantiations compile in parallel).
#include "kernels/rms_norm_kernel.cuh"

namespace mamba::kernels {

cudaError_t RunRmsNormBF16(const RmsNormParams& params, cudaStream_t stream) {
  return RunRmsNorm<__nv_bfloat16>(params, stream);
}

}  // namespace mamba::kernels
