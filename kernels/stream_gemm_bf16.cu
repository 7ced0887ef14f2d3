// Stream GEMM for bf16 inputs (one dtype per file so instantiations compile in parallel).
#include "kernels/stream_gemm_kernel.cuh"

namespace mamba::kernels {

cudaError_t RunStreamGemmBF16(const GemmArgs& args, const StreamGemmLayout& layout,
                              cudaStream_t stream) {
  return RunStreamGemm<__nv_bfloat16>(args, layout, stream);
}

}  // namespace mamba::kernels
