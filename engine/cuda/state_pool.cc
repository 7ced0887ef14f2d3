#include "engine/cuda/state_pool.h"

#include <cuda_runtime_api.h>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace mamba::cuda {
namespace {

int64_t PaddedSlotElements(const model::ModelConfig& config, model::DType dtype) {
  const int64_t per_256 = 256 / static_cast<int64_t>(model::DTypeSize(dtype));
  return (model::StateLayoutOf(config).elements() + per_256 - 1) / per_256 * per_256;
}

}  // namespace

size_t StatePool::StateBytes(const model::ModelConfig& config, model::DType dtype) {
  return static_cast<size_t>(model::StateLayoutOf(config).elements()) * model::DTypeSize(dtype);
}

size_t StatePool::SlotFootprint(const model::ModelConfig& config, model::DType dtype) {
  return static_cast<size_t>(PaddedSlotElements(config, dtype)) * model::DTypeSize(dtype);
}

absl::StatusOr<StatePool> StatePool::Create(const model::ModelConfig& config, model::DType dtype,
                                            int32_t num_slots) {
  if (num_slots < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("state pool: num_slots ", num_slots, " invalid; allowed: >= 1"));
  }
  if (dtype != model::DType::kF32 && dtype != model::DType::kBF16) {
    return absl::InvalidArgumentError(absl::StrCat("state dtype ",
                                                   std::string(model::DTypeName(dtype)),
                                                   " unsupported on CUDA; allowed: f32, bf16"));
  }
  StatePool pool;
  pool.num_slots_ = num_slots;
  pool.dtype_ = dtype;
  const model::StateLayout layout = model::StateLayoutOf(config);
  pool.conv_per_layer_ = layout.conv_elements_per_layer();
  pool.ssm_per_layer_ = layout.ssm_elements_per_layer();
  pool.ssm_offset_ = layout.ssm_offset(0);
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
  return buffer_.as<uint8_t>() + layer * conv_per_layer_ * model::DTypeSize(dtype_);
}

void* StatePool::ssm(int layer) const {
  return buffer_.as<uint8_t>() + (ssm_offset_ + layer * ssm_per_layer_) * model::DTypeSize(dtype_);
}

void* StatePool::slot(int32_t slot) const {
  return buffer_.as<uint8_t>() +
         static_cast<size_t>(slot) * slot_stride_ * model::DTypeSize(dtype_);
}

}  // namespace mamba::cuda
