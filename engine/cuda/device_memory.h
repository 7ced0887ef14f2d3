// Owning handles for device and pinned host memory. Allocation failures are statuses naming what
// was being allocated and how much, never crashes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace mamba::cuda {

// cudaMalloc'd memory on the current device, freed on destruction. Move-only.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  // RESOURCE_EXHAUSTED (with `what` and the size) when the device has no room.
  static absl::StatusOr<DeviceBuffer> Allocate(size_t bytes, const std::string& what);

  void* data() const { return ptr_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  size_t size() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// Page-locked host memory (cudaMallocHost), so copies can be asynchronous and captured in graphs.
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  ~PinnedBuffer();
  PinnedBuffer(PinnedBuffer&& other) noexcept;
  PinnedBuffer& operator=(PinnedBuffer&& other) noexcept;
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;

  static absl::StatusOr<PinnedBuffer> Allocate(size_t bytes, const std::string& what);

  void* data() const { return ptr_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  size_t size() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// Lays out sub-buffers in one allocation: Reserve returns offsets (256-byte aligned, as cuBLASLt
// and 16-byte vector accesses want), Bytes the total to allocate.
class BufferLayout {
 public:
  size_t Reserve(size_t bytes) {
    const size_t offset = (total_ + 255) / 256 * 256;
    total_ = offset + bytes;
    return offset;
  }
  size_t Bytes() const { return (total_ + 255) / 256 * 256; }

 private:
  size_t total_ = 0;
};

// "1.50 GiB", "12.0 MiB", "512 B".
std::string FormatBytes(size_t bytes);

}  // namespace mamba::cuda
