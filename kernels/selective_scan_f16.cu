// Selective scan for f16 activations (one dtype per file so instantiations compile in parallel).
#include "kernels/selective_scan_kernel.cuh"

namespace mamba::kernels {

cudaError_t RunSelectiveScanF16(const SelectiveScanParams& params, KernelDType state_dtype,
                                cudaStream_t stream) {
  return RunSelectiveScanAnyState<__half>(params, state_dtype, stream);
}

}  // namespace mamba::kernels
