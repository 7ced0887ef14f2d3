// Causal conv1d for f16 activations (one dtype per file so instantiations compile in parallel).
#include "kernels/causal_conv1d_kernel.cuh"

namespace mamba::kernels {

cudaError_t RunCausalConv1dPrefillF16(const CausalConv1dParams& params, KernelDType state_dtype,
                                      cudaStream_t stream) {
  return RunCausalConv1dPrefillAnyState<__half>(params, state_dtype, stream);
}

cudaError_t RunCausalConv1dDecodeF16(const CausalConv1dParams& params, KernelDType state_dtype,
                                     cudaStream_t stream) {
  return RunCausalConv1dDecodeAnyState<__half>(params, state_dtype, stream);
}

}  // namespace mamba::kernels
