// Launchers for the causal conv1d + silu kernels; see causal_conv1d_params.h.
#pragma once

#include <cuda_runtime_api.h>

#include "absl/status/status.h"
#include "kernels/causal_conv1d_params.h"
#include "kernels/kernel_types.h"

namespace mamba::kernels {

// Prefill over packed sequences (cu_seqlens and slots required; every sequence non-empty, slots
// distinct: device data the caller guarantees). `act_dtype` is T (f16/bf16), `state_dtype` f32
// or bf16.
absl::Status LaunchCausalConv1dPrefill(const CausalConv1dParams& params, KernelDType act_dtype,
                                       KernelDType state_dtype, cudaStream_t stream);

// One token per row (total_tokens == num_seqs, no cu_seqlens), state updated in place.
absl::Status LaunchCausalConv1dDecode(const CausalConv1dParams& params, KernelDType act_dtype,
                                      KernelDType state_dtype, cudaStream_t stream);

// Process-wide prefill thread layout for launches whose params leave it kDefault (benchmarks and
// A/B runs): a ConvPrefillLayout value, 0 restoring the default (4 channels x 8 tokens).
absl::Status SetConvPrefillLayout(int layout);

}  // namespace mamba::kernels
