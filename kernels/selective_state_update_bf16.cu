// Decode state update for bf16 activations (one dtype per file so instantiations compile in
// parallel).
#include "kernels/selective_state_update_kernel.cuh"

namespace mamba::kernels {

cudaError_t RunSelectiveStateUpdateBF16(const SelectiveStateUpdateParams& params,
                                        KernelDType state_dtype, cudaStream_t stream) {
  return RunSelectiveStateUpdateAnyState<__nv_bfloat16>(params, state_dtype, stream);
}

}  // namespace mamba::kernels
