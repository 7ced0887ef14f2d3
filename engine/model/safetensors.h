// Reads safetensors files (https://github.com/huggingface/safetensors format): an 8-byte
// little-endian header length, a JSON header mapping tensor names to {dtype, shape, data_offsets}
// (plus an optional "__metadata__" object of strings), then the tensor bytes. Files are
// memory-mapped; tensors are views into the mapping.
//
// Error codes: NOT_FOUND for a file that does not exist; DATA_LOSS for a file whose structure is
// broken (too short, header length past the end, header not JSON or not an object, malformed
// entries, byte ranges that do not match shapes, run past the end, overlap or leave holes);
// INVALID_ARGUMENT for a well-formed file with a dtype we do not support. Messages name the file
// and the tensor.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/model_weights.h"

namespace mamba::model {

// "F32", "F16", "BF16": the safetensors names of our dtypes.
std::string_view SafetensorsDTypeName(DType dtype);

class SafetensorsFile {
 public:
  // Headers larger than this are rejected before parsing (the reference implementation's limit).
  static constexpr uint64_t kMaxHeaderBytes = uint64_t{100} << 20;

  // Maps `path` and validates its header completely: the header length within the file, valid
  // JSON, known dtypes (F32, F16, BF16), shapes whose byte size matches data_offsets, offsets in
  // range, not overlapping, and covering the data section without holes. Errors name the file and
  // the tensor.
  static absl::StatusOr<std::shared_ptr<SafetensorsFile>> Open(const std::string& path);

  // One tensor's header entry.
  struct Entry {
    DType dtype = DType::kF32;
    std::vector<int64_t> shape;
    uint64_t begin = 0;  // offsets relative to the start of the data section
    uint64_t end = 0;
  };

  // Validates a header held in memory (the bytes after the length prefix) against a data section
  // of `data_size` bytes, as Open() does. Exposed for tests and fuzzing. `source` names the file
  // in error messages.
  static absl::StatusOr<std::map<std::string, Entry>> ParseHeader(std::string_view header,
                                                                  uint64_t data_size,
                                                                  const std::string& source);

  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;
  ~SafetensorsFile();

  const std::string& path() const { return path_; }
  const std::map<std::string, Entry>& entries() const { return entries_; }
  // The "__metadata__" object (e.g. {"format": "pt"}); empty when absent.
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool Has(const std::string& name) const { return entries_.count(name) > 0; }
  // A view of tensor `name`, valid while this file object lives; NOT_FOUND if absent. The data
  // pointer may be misaligned for the dtype when the writer packed odd-sized tensors; callers that
  // need alignment copy (the model loader does).
  absl::StatusOr<TensorView> Get(const std::string& name) const;

 private:
  SafetensorsFile() = default;
  std::string path_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  const uint8_t* data_ = nullptr;  // start of the data section
  std::map<std::string, Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

// Writes tensors to a safetensors file (tests, tools and session export use it), in the given
// order with contiguous offsets, the header padded to a multiple of 8 bytes. The file appears
// under `path` only when complete (written beside it, then renamed). Names must be unique and
// non-empty, and "__metadata__" is reserved; INVALID_ARGUMENT otherwise.
struct NamedTensor {
  std::string name;
  TensorView view;
};
absl::Status WriteSafetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                              const std::map<std::string, std::string>& metadata = {});

}  // namespace mamba::model
