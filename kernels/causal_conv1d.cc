#include "kernels/causal_conv1d.h"

#include <atomic>

#include "absl/strings/str_cat.h"
#include "kernels/cuda_status.h"

namespace mamba::kernels {
namespace {

// Tokens per launch: the grid's y extent (65535) times the fewest tokens per thread of any layout.
constexpr int64_t kConvPrefillMaxTokens = int64_t{65535} * 8;

std::atomic<int32_t> conv_prefill_layout{static_cast<int32_t>(ConvPrefillLayout::kDefault)};

bool ValidConvPrefillLayout(int layout) {
  return layout >= 0 && layout <= static_cast<int>(ConvPrefillLayout::k4x8);
}
constexpr char kConvLayoutsAllowed[] =
    "allowed: 0 (default, 4 x 8), 1 (8 channels x 8 tokens per thread), 2 (4 x 8)";

absl::Status CheckCommon(const CausalConv1dParams& p, KernelDType act, KernelDType state) {
  if (p.dim <= 0 || p.num_seqs < 0 || p.total_tokens < 0) {
    return absl::InvalidArgumentError(absl::StrCat("causal_conv1d: dim ", p.dim, ", num_seqs ",
                                                   p.num_seqs, ", total_tokens ", p.total_tokens,
                                                   " invalid; allowed: dim > 0, counts >= 0"));
  }
  if (p.width < 1 || p.width > kConvMaxWidth) {
    return absl::InvalidArgumentError(absl::StrCat("causal_conv1d: width ", p.width,
                                                   " unsupported; allowed: 1..", kConvMaxWidth));
  }
  if (p.x == nullptr || p.out == nullptr || p.weight == nullptr || p.slots == nullptr ||
      (p.width > 1 && p.state == nullptr)) {
    return absl::InvalidArgumentError(
        "causal_conv1d: x, out, weight, slots and state are required");
  }
  if (p.x_row_stride < p.dim || p.out_row_stride < p.dim) {
    return absl::InvalidArgumentError("causal_conv1d: row strides must be >= dim");
  }
  if (p.width > 1 && p.state_slot_stride < p.dim * (p.width - 1)) {
    return absl::InvalidArgumentError(
        "causal_conv1d: state slot stride must hold dim * (width - 1) elements");
  }
  if (absl::Status s = CheckActivationDType("causal_conv1d", act); !s.ok()) return s;
  if (absl::Status s = CheckStateDType("causal_conv1d", state); !s.ok()) return s;
  return absl::OkStatus();
}

}  // namespace

absl::Status LaunchCausalConv1dPrefill(const CausalConv1dParams& p, KernelDType act,
                                       KernelDType state, cudaStream_t stream) {
  absl::Status s = CheckCommon(p, act, state);
  if (!s.ok()) return s;
  if (p.cu_seqlens == nullptr) {
    return absl::InvalidArgumentError("causal_conv1d prefill: cu_seqlens is required");
  }
  if (p.total_tokens > 0 && p.num_seqs == 0) {
    return absl::InvalidArgumentError("causal_conv1d prefill: tokens without sequences");
  }
  if (p.num_seqs > 65535 || p.total_tokens > kConvPrefillMaxTokens) {
    return absl::InvalidArgumentError(
        absl::StrCat("causal_conv1d prefill: at most 65535 sequences and ", kConvPrefillMaxTokens,
                     " tokens per launch (got ", p.num_seqs, ", ", p.total_tokens, ")"));
  }
  if (const int layout = static_cast<int>(p.prefill_layout); !ValidConvPrefillLayout(layout)) {
    return absl::InvalidArgumentError(absl::StrCat("causal_conv1d prefill: layout ", layout,
                                                   " unsupported; ", kConvLayoutsAllowed));
  }
  CausalConv1dParams q = p;
  if (q.prefill_layout == ConvPrefillLayout::kDefault) {
    q.prefill_layout =
        static_cast<ConvPrefillLayout>(conv_prefill_layout.load(std::memory_order_relaxed));
  }
  cudaError_t err = act == KernelDType::kF16 ? RunCausalConv1dPrefillF16(q, state, stream)
                                             : RunCausalConv1dPrefillBF16(q, state, stream);
  if (err != cudaSuccess) return CudaStatus(err, "causal_conv1d prefill launch");
  return CheckLaunch("causal_conv1d prefill", stream);
}

absl::Status LaunchCausalConv1dDecode(const CausalConv1dParams& p, KernelDType act,
                                      KernelDType state, cudaStream_t stream) {
  absl::Status s = CheckCommon(p, act, state);
  if (!s.ok()) return s;
  if (p.total_tokens != p.num_seqs || p.num_seqs > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("causal_conv1d decode: one token per row and at most 65535 rows (got ",
                     p.num_seqs, " rows, ", p.total_tokens, " tokens)"));
  }
  cudaError_t err = act == KernelDType::kF16 ? RunCausalConv1dDecodeF16(p, state, stream)
                                             : RunCausalConv1dDecodeBF16(p, state, stream);
  if (err != cudaSuccess) return CudaStatus(err, "causal_conv1d decode launch");
  return CheckLaunch("causal_conv1d decode", stream);
}

absl::Status SetConvPrefillLayout(int layout) {
  if (!ValidConvPrefillLayout(layout)) {
    return absl::InvalidArgumentError(
        absl::StrCat("conv prefill layout ", layout, " unsupported; ", kConvLayoutsAllowed));
  }
  conv_prefill_layout.store(layout, std::memory_order_relaxed);
  return absl::OkStatus();
}

}  // namespace mamba::kernels
