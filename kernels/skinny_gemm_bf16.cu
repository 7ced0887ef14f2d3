// Skinny GEMM for bf16 inputs (one dtype per file so instantiations compile in parallel).
#include "kernels/skinny_gemm_kernel.cuh"

namespace mamba::kernels {

cudaError_t RunSkinnyGemmBF16(const GemmArgs& args, cudaStream_t stream) {
  return RunSkinnyGemm<__nv_bfloat16>(args, stream);
}

cudaError_t RunSkinnyGemmConvBF16(const GemmArgs& args, const CausalConv1dParams& conv,
                                 KernelDType state, cudaStream_t stream) {
  return RunSkinnyGemmConv<__nv_bfloat16>(args, conv, state, stream);
}

}  // namespace mamba::kernels
