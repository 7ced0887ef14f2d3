// Persistent decode kernel for bf16 weights (one dtype per file so instantiations compile in
// parallel).
#include "kernels/decode_step_kernel.cuh"

namespace mamba::kernels {

cudaError_t RunDecodeStepBF16(const DecodeStepParams& p, KernelDType state, int blocks,
                              cudaStream_t stream) {
  return RunDecodeStep<__nv_bfloat16>(p, state, blocks, stream);
}

int DecodeStepBlocksPerSmBF16(KernelDType state, size_t smem) {
  return DecodeStepBlocksPerSmFor<__nv_bfloat16>(state, smem);
}

}  // namespace mamba::kernels
