// Skinny GEMM for f16 inputs (one dtype per file so instantiations compile in parallel).
#include "kernels/skinny_gemm_kernel.cuh"

namespace mamba::kernels {

cudaError_t RunSkinnyGemmF16(const GemmArgs& args, cudaStream_t stream) {
  return RunSkinnyGemm<__half>(args, stream);
}

cudaError_t RunSkinnyGemmConvF16(const GemmArgs& args, const CausalConv1dParams& conv,
                                 KernelDType state, cudaStream_t stream) {
  return RunSkinnyGemmConv<__half>(args, conv, state, stream);
}

}  // namespace mamba::kernels
