// Selective scan for bf16 activations (one dtype per file so instantiations compile in parallel).
#include "kernels/selective_scan_kernel.cuh"

namespace mamba::kernels {

cudaError_t RunSelectiveScanBF16(const SelectiveScanParams& params, KernelDType state_dtype,
                                 cudaStream_t stream) {
  return RunSelectiveScanAnyState<__nv_bfloat16>(params, state_dtype, stream);
}

}  // namespace mamba::kernels
