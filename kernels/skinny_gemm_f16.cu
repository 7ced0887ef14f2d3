// Skinny GEMM for f16 inputs (one dtype per file so instantiations compile in parallel).
#include "kernels/skinny_gemm_kernel.cuh"

namespace mamba::kernels {

cudaError_t RunSkinnyGemmF16(const GemmArgs& args, cudaStream_t stream) {
  return RunSkinnyGemm<__half>(args, stream);
}

}  // namespace mamba::kernels
