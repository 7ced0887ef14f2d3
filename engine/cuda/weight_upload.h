// Copies of host tensors (any model dtype) into device memory, as the kernels want them.
#pragma once

#include <functional>

#include "absl/status/status.h"
#include "engine/model/dtype.h"
#include "engine/model/model_weights.h"

namespace mamba::cuda {

// A matrix in `target` (f16 or bf16), converted in bounded chunks.
absl::Status UploadMatrix(const model::TensorView& v, model::DType target, void* dst,
                          const char* what);
// A small tensor in fp32, each element passed through `fn` when given.
absl::Status UploadVector(const model::TensorView& v, float* dst, const char* what,
                          const std::function<float(float)>& fn = nullptr);
// The same for an optional tensor (a bias, a norm weight): nothing to do when `v` is empty, as
// `dst` is then null.
absl::Status UploadOptionalVector(const model::TensorView& v, float* dst, const char* what);

}  // namespace mamba::cuda
