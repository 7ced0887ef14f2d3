#include "engine/cuda/state_pool.h"

#include <cuda_runtime_api.h>

#include "absl/strings/str_cat.h"
#include "engine/status_macros.h"

namespace mamba::gpu {
namespace {

int64_t PaddedSlotElements(const ModelConfig& config, DType dtype) {
  const int64_t per_256 = 256 / static_cast<int64_t>(DTypeSize(dtype));
  return (config.StateElements() + per_256 - 1) / per_256 * per_256;
}

}  // namespace

size_t StatePool::StateBytes(const ModelConfig& config, DType dtype) {
  return static_cast<size_t>(config.StateElements()) * DTypeSize(dtype);
}

size_t StatePool::SlotFootprint(const ModelConfig& config, DType dtype) {
  return static_cast<size_t>(PaddedSlotElements(config, dtype)) * DTypeSize(dtype);
}

absl::StatusOr<StatePool> StatePool::Create(const ModelConfig& config, DType dtype,
                                            int32_t num_slots) {
  if (num_slots < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("state pool: num_slots ", num_slots, " invalid; allowed: >= 1"));
  }
  if (dtype != DType::kF32 && dtype != DType::kBF16) {
    return absl::InvalidArgumentError(absl::StrCat("state dtype ", std::string(DTypeName(dtype)),
                                                   " unsupported on CUDA; allowed: f32, bf16"));
  }
  StatePool pool;
  pool.num_slots_ = num_slots;
  pool.dtype_ = dtype;
  pool.conv_per_layer_ = config.ConvStateElementsPerLayer();
  pool.ssm_per_layer_ = config.SsmStateElementsPerLayer();
  pool.ssm_offset_ = config.n_layer * pool.conv_per_layer_;
  pool.slot_stride_ = PaddedSlotElements(config, dtype);
  pool.state_bytes_ = StateBytes(config, dtype);
  const size_t total = static_cast<size_t>(num_slots + 1) * SlotFootprint(config, dtype);
  MAMBA_ASSIGN_OR_RETURN(
      pool.buffer_,
      DeviceBuffer::Allocate(total, absl::StrCat(num_slots, " state slots of ",
                                                 FormatBytes(pool.state_bytes_), " each")));
  const cudaError_t err = cudaMemset(pool.buffer_.data(), 0, total);
  if (err != cudaSuccess) {
    return absl::InternalError(absl::StrCat("zeroing the state pool: ", cudaGetErrorString(err)));
  }
  return pool;
}

void* StatePool::conv(int layer) const {
  return buffer_.as<uint8_t>() + layer * conv_per_layer_ * DTypeSize(dtype_);
}

void* StatePool::ssm(int layer) const {
  return buffer_.as<uint8_t>() + (ssm_offset_ + layer * ssm_per_layer_) * DTypeSize(dtype_);
}

void* StatePool::slot(int32_t slot) const {
  return buffer_.as<uint8_t>() + static_cast<size_t>(slot) * slot_stride_ * DTypeSize(dtype_);
}

}  // namespace mamba::gpu
