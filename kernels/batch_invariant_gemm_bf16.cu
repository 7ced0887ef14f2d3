// Batch-invariant GEMM for bf16 inputs (one dtype per file so instantiations compile in parallel).
#include "kernels/batch_invariant_gemm_kernel.cuh"

namespace mamba::kernels {

cudaError_t RunBatchInvariantGemmBF16(const GemmArgs& args, cudaStream_t stream) {
  return RunBatchInvariantGemm<__nv_bfloat16>(args, stream);
}

}  // namespace mamba::kernels
