// Batch-invariant GEMM for f16 inputs (one dtype per file so instantiations compile in parallel).
#include "kernels/batch_invariant_gemm_kernel.cuh"

namespace mamba::kernels {

cudaError_t RunBatchInvariantGemmF16(const GemmArgs& args, cudaStream_t stream) {
  return RunBatchInvariantGemm<__half>(args, stream);
}

}  // namespace mamba::kernels
