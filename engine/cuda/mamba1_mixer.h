// The Mamba-1 mixer on the GPU (DESIGN.md's math, per layer):
//   in_proj GEMM -> [x | z]
//   conv1d + silu from the slot's conv state (prefill: packed varlen; decode: by slot)
//   x_proj GEMM -> [dt_low | B | C]
//   prefill: dt_proj GEMM, then the fused selective scan from the slot's SSM state
//   decode:  the fused state update (dt_proj + softplus + update + C + D + gate in one kernel)
//   out_proj GEMM
// Matrices in fp16 or bf16, per-channel vectors in fp32, A precomputed as -exp(A_log) * log2(e).
// Decode steps of few rows (<= kDecodeStepMaxRows) run every layer in one persistent kernel
// instead (kernels/decode_step_params.h), with the same math and rounding points; the
// batch-invariant mode always uses the layered kernels.
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "engine/cuda/mixer.h"

namespace mamba::cuda {

absl::StatusOr<std::unique_ptr<Mixer>> MakeMamba1Mixer(const MixerContext& context,
                                                       const model::ModelWeights& weights);

// Decode batches of fewer rows than FusedDtMaxRows() compute dt inside the fused state update
// (dt_proj's weights read per block of channels) instead of a dt_proj GEMM before it. Larger
// batches measured slower fused on the H100 (130m batch 256: 1573 vs 1364 us per step; 1.4b batch
// 64: 3668 vs 3128). The setter is process-wide, for A/B measurements, and takes effect for
// graphs captured after it.
inline constexpr int64_t kDefaultFusedDtMaxRows = 32;
void SetFusedDtMaxRows(int64_t rows);
int64_t FusedDtMaxRows();

}  // namespace mamba::cuda
