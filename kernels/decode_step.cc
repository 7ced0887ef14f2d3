#include "kernels/decode_step.h"

#include <atomic>

#include "absl/strings/str_cat.h"
#include "kernels/causal_conv1d_params.h"
#include "kernels/cuda_status.h"
#include "kernels/device_info.h"

namespace mamba::kernels {
namespace {

std::atomic<PersistentDecode> policy{PersistentDecode::kAuto};
std::atomic<unsigned long long*> trace_buffer{nullptr};
std::atomic<int64_t> trace_entries{0};

bool ShapeSupported(const DecodeStepParams& p) {
  return p.rows >= 1 && p.rows <= kDecodeStepMaxRows && p.n_layer >= 1 && p.d_model >= 8 &&
         p.d_model <= kDecodeStepMaxModel && p.d_model % 8 == 0 && p.d_inner >= 8 &&
         p.d_inner % 8 == 0 && p.dt_rank >= 8 && p.dt_rank % 8 == 0 && p.d_state >= 1 &&
         p.d_state <= kDecodeStepMaxState && p.d_conv >= 1 && p.d_conv <= kConvMaxWidth &&
         p.dbc_ld % 8 == 0 && p.dbc_ld >= p.dt_rank + 2 * p.d_state &&
         // Indices inside the kernel are 32-bit.
         p.d_model * (p.d_inner * 2) < (int64_t{1} << 31);
}

int BlocksPerSm(KernelDType act, KernelDType state, size_t smem) {
  return act == KernelDType::kF16 ? DecodeStepBlocksPerSmF16(state, smem)
                                  : DecodeStepBlocksPerSmBF16(state, smem);
}

}  // namespace

PersistentDecode PersistentDecodePolicy() { return policy.load(std::memory_order_relaxed); }

void SetPersistentDecode(PersistentDecode p) { policy.store(p, std::memory_order_relaxed); }

void SetDecodeStepTrace(unsigned long long* device_buffer, int64_t entries) {
  trace_entries.store(device_buffer != nullptr ? entries : 0, std::memory_order_relaxed);
  trace_buffer.store(device_buffer, std::memory_order_relaxed);
}

bool DecodeStepSupported(const DecodeStepParams& p, KernelDType act, KernelDType state) {
  const PersistentDecode mode = PersistentDecodePolicy();
  if (mode == PersistentDecode::kOff || !ShapeSupported(p)) return false;
  // auto: where it was measured faster (one row, on the H100; other GPUs are untested, so they
  // keep the layered kernels unless asked).
  if (mode == PersistentDecode::kAuto && (p.rows != 1 || CurrentDeviceComputeMajor() < 9)) {
    return false;
  }
  if (act != KernelDType::kF16 && act != KernelDType::kBF16) return false;
  if (state != KernelDType::kF32 && state != KernelDType::kBF16) return false;
  int device = 0, cooperative = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&cooperative, cudaDevAttrCooperativeLaunch, device) != cudaSuccess ||
      cooperative == 0) {
    return false;
  }
  // The larger (four-row) variant must fit; either may run.
  return BlocksPerSm(act, state,
                     DecodeStepSharedBytes(p.d_model, p.d_inner, p.dbc_ld, p.n_layer,
                                           kDecodeStepMaxRows)) >= 1;
}

absl::Status LaunchDecodeStep(const DecodeStepParams& p, KernelDType act, KernelDType state,
                              cudaStream_t stream) {
  if (!ShapeSupported(p)) {
    return absl::InvalidArgumentError(
        absl::StrCat("decode_step: ", p.rows, " rows (1..", kDecodeStepMaxRows, "), d_model ",
                     p.d_model, ", d_inner ", p.d_inner, ", dt_rank ", p.dt_rank,
                     " (multiples of 8), d_state ", p.d_state, " (<= ", kDecodeStepMaxState,
                     "), d_conv ", p.d_conv, " (<= ", kConvMaxWidth, ") are not supported"));
  }
  if (p.layers == nullptr || p.embedding == nullptr || p.token_ids == nullptr ||
      p.slots == nullptr || p.conv_state == nullptr || p.ssm_state == nullptr ||
      p.residual[0] == nullptr || p.residual[1] == nullptr || p.h == nullptr || p.xc == nullptr ||
      p.z == nullptr || p.dbc == nullptr || p.y == nullptr || p.barrier == nullptr) {
    return absl::InvalidArgumentError("decode_step: every buffer and the layer table are required");
  }
  const void* buffers[] = {p.residual[0], p.residual[1], p.h,         p.xc,       p.z,
                           p.dbc,         p.y,           p.embedding, p.ssm_state};
  for (const void* q : buffers) {
    if (!IsAligned(q, 16)) {
      return absl::InvalidArgumentError("decode_step: buffers must be 16-byte aligned");
    }
  }
  if (absl::Status s = CheckActivationDType("decode_step", act); !s.ok()) return s;
  if (absl::Status s = CheckStateDType("decode_step", state); !s.ok()) return s;
  // One block per multiprocessor: every block must be resident for the barriers, and more
  // blocks would only share the same memory pipes.
  const int blocks = CurrentDeviceSmCount();
  DecodeStepParams q = p;
  if (trace_entries.load(std::memory_order_relaxed) >=
      int64_t{blocks} * kDecodeStepTracePerLayer * p.n_layer) {
    q.trace = trace_buffer.load(std::memory_order_relaxed);
  }
  const cudaError_t err = act == KernelDType::kF16 ? RunDecodeStepF16(q, state, blocks, stream)
                                                   : RunDecodeStepBF16(q, state, blocks, stream);
  if (err != cudaSuccess) return CudaStatus(err, "decode_step launch");
  return CheckLaunch("decode_step", stream);
}

}  // namespace mamba::kernels
