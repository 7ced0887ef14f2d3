// Causal conv1d for bf16 activations (one dtype per file so instantiations compile in parallel).
#include "kernels/causal_conv1d_kernel.cuh"

namespace mamba::kernels {

cudaError_t RunCausalConv1dPrefillBF16(const CausalConv1dParams& params, KernelDType state_dtype,
                                       cudaStream_t stream) {
  return RunCausalConv1dPrefillAnyState<__nv_bfloat16>(params, state_dtype, stream);
}

cudaError_t RunCausalConv1dDecodeBF16(const CausalConv1dParams& params, KernelDType state_dtype,
                                      cudaStream_t stream) {
  return RunCausalConv1dDecodeAnyState<__nv_bfloat16>(params, state_dtype, stream);
}

}  // namespace mamba::kernels
