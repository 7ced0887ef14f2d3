#include "engine/cuda/weight_upload.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/cuda_status.h"

namespace mamba::cuda {

absl::Status UploadMatrix(const model::TensorView& v, model::DType target, void* dst,
                          const char* what) {
  const size_t n = static_cast<size_t>(v.numel());
  if (v.dtype == target) {
    MAMBA_CUDA_RETURN_IF_ERROR(
        cudaMemcpy(dst, v.data, n * model::DTypeSize(target), cudaMemcpyHostToDevice), what);
    return absl::OkStatus();
  }
  constexpr size_t kChunk = size_t{1} << 20;
  std::vector<float> f(std::min(n, kChunk));
  std::vector<uint16_t> h(std::min(n, kChunk));
  for (size_t off = 0; off < n; off += kChunk) {
    const size_t c = std::min(kChunk, n - off);
    model::ConvertToFloat(v.dtype,
                          static_cast<const uint8_t*>(v.data) + off * model::DTypeSize(v.dtype),
                          f.data(), c);
    model::ConvertFromFloat(target, f.data(), h.data(), c);
    MAMBA_CUDA_RETURN_IF_ERROR(
        cudaMemcpy(static_cast<uint8_t*>(dst) + off * 2, h.data(), c * 2, cudaMemcpyHostToDevice),
        what);
  }
  return absl::OkStatus();
}

absl::Status UploadVector(const model::TensorView& v, float* dst, const char* what,
                          const std::function<float(float)>& fn) {
  std::vector<float> f = v.ToFloat();
  if (fn) {
    for (float& x : f) x = fn(x);
  }
  MAMBA_CUDA_RETURN_IF_ERROR(
      cudaMemcpy(dst, f.data(), f.size() * sizeof(float), cudaMemcpyHostToDevice), what);
  return absl::OkStatus();
}

absl::Status UploadOptionalVector(const model::TensorView& v, float* dst, const char* what) {
  return v.empty() ? absl::OkStatus() : UploadVector(v, dst, what);
}

}  // namespace mamba::cuda
