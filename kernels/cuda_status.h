// CUDA errors as absl::Status, and the post-launch check every launcher ends with.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/kernel_types.h"

namespace mamba::kernels {

// OK for cudaSuccess, else INTERNAL (RESOURCE_EXHAUSTED for out-of-memory) naming `what`.
inline absl::Status CudaStatus(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return absl::OkStatus();
  std::string msg =
      absl::StrCat(what, ": ", cudaGetErrorName(err), " (", cudaGetErrorString(err), ")");
  if (err == cudaErrorMemoryAllocation) return absl::ResourceExhaustedError(msg);
  return absl::InternalError(msg);
}

// Checks that the last launch on `stream` was accepted. Debug builds also wait for the kernel
// and report errors it raised, unless the stream is being captured into a graph (where waiting
// is not allowed).
inline absl::Status CheckLaunch(const char* kernel, cudaStream_t stream) {
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return CudaStatus(err, kernel);
#ifndef NDEBUG
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(stream, &capture) == cudaSuccess &&
      capture == cudaStreamCaptureStatusNone) {
    return CudaStatus(cudaStreamSynchronize(stream), kernel);
  }
#else
  (void)stream;
#endif
  return absl::OkStatus();
}

// OK for the activation dtypes the kernels take (f16, bf16), else INVALID_ARGUMENT naming
// `kernel` and what is allowed.
inline absl::Status CheckActivationDType(const char* kernel, KernelDType act) {
  if (act == KernelDType::kF16 || act == KernelDType::kBF16) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      kernel, ": activation dtype ", KernelDTypeName(act), " unsupported; allowed: f16, bf16"));
}

// The same for state dtypes (f32, bf16).
inline absl::Status CheckStateDType(const char* kernel, KernelDType state) {
  if (state == KernelDType::kF32 || state == KernelDType::kBF16) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(kernel, ": state dtype ", KernelDTypeName(state),
                                                 " unsupported; allowed: f32, bf16"));
}

// True when `p` is aligned to `bytes`.
inline bool IsAligned(const void* p, int bytes) {
  return (reinterpret_cast<uintptr_t>(p) % static_cast<uintptr_t>(bytes)) == 0;
}

}  // namespace mamba::kernels

// Returns from the enclosing function when a CUDA runtime call fails.
#define MAMBA_CUDA_RETURN_IF_ERROR(expr, what)                    \
  do {                                                            \
    cudaError_t mamba_cuda_err_ = (expr);                         \
    if (mamba_cuda_err_ != cudaSuccess)                           \
      return ::mamba::kernels::CudaStatus(mamba_cuda_err_, what); \
  } while (0)
