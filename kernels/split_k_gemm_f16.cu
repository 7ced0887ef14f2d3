// Split-k GEMM for f16 inputs (one dtype per file so instantiations compile in parallel).
#include "kernels/split_k_gemm_kernel.cuh"

namespace mamba::kernels {

cudaError_t RunSplitKGemmF16(const GemmArgs& args, const SplitKGemmWorkspace& ws,
                             cudaStream_t stream) {
  return RunSplitKGemm<__half>(args, ws, stream);
}

cudaError_t RunSplitKGemmConvF16(const GemmArgs& args, const SplitKGemmWorkspace& ws,
                                 const CausalConv1dParams& conv, KernelDType state,
                                 cudaStream_t stream) {
  return RunSplitKGemmConv<__half>(args, ws, conv, state, stream);
}

}  // namespace mamba::kernels
