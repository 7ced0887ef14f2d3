// Split-k GEMM for bf16 inputs (one dtype per file so instantiations compile in parallel).
#include "kernels/split_k_gemm_kernel.cuh"

namespace mamba::kernels {

cudaError_t RunSplitKGemmBF16(const GemmArgs& args, const SplitKGemmWorkspace& ws,
                              cudaStream_t stream) {
  return RunSplitKGemm<__nv_bfloat16>(args, ws, stream);
}

cudaError_t RunSplitKGemmConvBF16(const GemmArgs& args, const SplitKGemmWorkspace& ws,
                                  const CausalConv1dParams& conv, KernelDType state,
                                  cudaStream_t stream) {
  return RunSplitKGemmConv<__nv_bfloat16>(args, ws, conv, state, stream);
}

}  // namespace mamba::kernels
