// Reads safetensors files (https://github.com/huggingface/safetensors format): an 8-byte
// little-endian header length, a JSON header mapping tensor names to {dtype, shape, data_offsets},
// then the tensor bytes. Files are memory-mapped; tensors are views into the mapping.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model_weights.h"

namespace mamba {

class SafetensorsFile {
 public:
  // Maps `path` and validates its header completely: the header length within the file, valid
  // JSON, known dtypes (F32, F16, BF16), shapes whose byte size matches data_offsets, offsets in
  // range and not overlapping. Errors name the file and the tensor.
  static absl::StatusOr<std::shared_ptr<SafetensorsFile>> Open(const std::string& path);

  // Validates a header held in memory (the bytes after the length prefix) against a data section
  // of `data_size` bytes. Exposed for tests and fuzzing; Open() uses it.
  struct Entry {
    DType dtype;
    std::vector<int64_t> shape;
    uint64_t begin = 0;  // offsets relative to the start of the data section
    uint64_t end = 0;
  };
  static absl::StatusOr<std::map<std::string, Entry>> ParseHeader(std::string_view header,
                                                                   uint64_t data_size,
                                                                   const std::string& source);

  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;
  ~SafetensorsFile();

  const std::string& path() const { return path_; }
  const std::map<std::string, Entry>& entries() const { return entries_; }
  bool Has(const std::string& name) const { return entries_.count(name) > 0; }
  // A view of tensor `name`, valid while this file object lives; NOT_FOUND if absent.
  absl::StatusOr<TensorView> Get(const std::string& name) const;

 private:
  SafetensorsFile() = default;
  std::string path_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  const uint8_t* data_ = nullptr;  // start of the data section
  std::map<std::string, Entry> entries_;
};

// Writes tensors to a safetensors file (tests, tools and session export use it).
struct NamedTensor {
  std::string name;
  TensorView view;
};
absl::Status WriteSafetensors(const std::string& path, const std::vector<NamedTensor>& tensors);

}  // namespace mamba
