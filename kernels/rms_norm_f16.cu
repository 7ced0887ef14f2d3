// RMSNorm for fp16 activations (one dtype per file so instantiations compile in parallel).
#include "kernels/rms_norm_kernel.cuh"

namespace mamba::kernels {

cudaError_t RunRmsNormF16(const RmsNormParams& params, cudaStream_t stream) {
  return RunRmsNorm<__half>(params, stream);
}

}  // namespace mamba::kernels
