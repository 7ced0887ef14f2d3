// CUDA errors as absl::Status, and the post-launch check every launcher ends with.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

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
