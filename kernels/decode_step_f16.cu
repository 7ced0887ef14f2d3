// Persistent decode kernel for f16 weights (one dtype per file so instantiations compile in
// parallel).
#include "kernels/decode_step_kernel.cuh"

namespace mamba::kernels {

cudaError_t RunDecodeStepF16(const DecodeStepParams& p, KernelDType state, int blocks,
                             cudaStream_t stream) {
  return RunDecodeStep<__half>(p, state, blocks, stream);
}

int DecodeStepBlocksPerSmF16(KernelDType state, size_t smem) {
  return DecodeStepBlocksPerSmFor<__half>(state, smem);
}

}  // namespace mamba::kernels
