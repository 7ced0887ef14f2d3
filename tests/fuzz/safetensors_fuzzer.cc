// Fuzzes the safetensors reader: SafetensorsFile::ParseHeader on a header held in memory, and
// SafetensorsFile::Open on a file built from the same bytes, checking that both agree and that
// every accepted tensor lies inside the file.
//
// Input layout (the first byte picks the mode):
//   even: 8-byte little-endian data-section size, then the header JSON. The file written is
//         length prefix + header + that many zero bytes (sparse, so real checkpoints' headers
//         make small inputs); sizes above kMaxDataBytes are only parsed, not written.
//   odd:  the rest of the input is the whole file, length prefix included.
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "engine/model/safetensors.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using mamba::model::SafetensorsFile;

constexpr uint64_t kMaxDataBytes = uint64_t{64} << 20;

// One scratch file per fuzzing process, rewritten for every input.
class ScratchFile {
 public:
  ScratchFile() {
    const char* dir = std::getenv("TMPDIR");
    path_ = std::string(dir != nullptr && *dir != '\0' ? dir : "/tmp") +
            "/mamba_fuzz_safetensors_XXXXXX";
    fd_ = mkstemp(path_.data());
    if (fd_ < 0) {
      std::perror("mkstemp");
      std::abort();
    }
  }
  ~ScratchFile() {
    close(fd_);
    unlink(path_.c_str());
  }
  // Replaces the content with `bytes` followed by `zeros` zero bytes.
  void Write(std::string_view bytes, uint64_t zeros) {
    FUZZ_CHECK(ftruncate(fd_, 0) == 0, "ftruncate");
    size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n =
          pwrite(fd_, bytes.data() + done, bytes.size() - done, static_cast<off_t>(done));
      FUZZ_CHECK(n > 0, "pwrite");
      done += static_cast<size_t>(n);
    }
    FUZZ_CHECK(ftruncate(fd_, static_cast<off_t>(bytes.size() + zeros)) == 0, "ftruncate");
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
};

uint64_t LoadLE64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

std::string LE64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

bool ExpectedCode(const absl::Status& s) {
  return s.code() == absl::StatusCode::kDataLoss || s.code() == absl::StatusCode::kInvalidArgument;
}

// The accepted entries must tile [0, data_size) exactly, each sized by its shape and dtype.
void CheckEntries(const std::map<std::string, mamba::model::SafetensorsFile::Entry>& entries,
                  uint64_t data_size) {
  uint64_t total = 0;
  for (const auto& [name, e] : entries) {
    FUZZ_CHECK(e.begin <= e.end && e.end <= data_size, "tensor '%s' [%llu, %llu) outside %llu",
               name.c_str(), static_cast<unsigned long long>(e.begin),
               static_cast<unsigned long long>(e.end), static_cast<unsigned long long>(data_size));
    uint64_t numel = 1;
    for (int64_t d : e.shape) {
      FUZZ_CHECK(d >= 0, "negative dimension in '%s'", name.c_str());
      FUZZ_CHECK(!__builtin_mul_overflow(numel, static_cast<uint64_t>(d), &numel),
                 "shape of '%s' overflows", name.c_str());
    }
    FUZZ_CHECK(numel * mamba::model::DTypeSize(e.dtype) == e.end - e.begin, "size of '%s' != shape",
               name.c_str());
    total += e.end - e.begin;
  }
  FUZZ_CHECK(total == data_size, "tensors cover %llu of %llu data bytes",
             static_cast<unsigned long long>(total), static_cast<unsigned long long>(data_size));
}

void CheckOpened(const mamba::model::SafetensorsFile& file, uint64_t data_size) {
  CheckEntries(file.entries(), data_size);
  for (const auto& [name, e] : file.entries()) {
    absl::StatusOr<mamba::model::TensorView> view = file.Get(name);
    FUZZ_CHECK(view.ok(), "Get('%s') failed after Open listed it", name.c_str());
    FUZZ_CHECK(view->shape == e.shape && view->dtype == e.dtype, "view of '%s' differs",
               name.c_str());
    const uint64_t n = e.end - e.begin;
    if (n > 0) {
      // Touch both ends: a view outside the mapping faults here.
      const auto* p = static_cast<const volatile uint8_t*>(view->data);
      (void)p[0];
      (void)p[n - 1];
    }
  }
  FUZZ_CHECK(!file.Get("\x01no such tensor").ok(), "Get of an absent tensor succeeded");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static ScratchFile scratch_file;  // removed at exit
  ScratchFile* scratch = &scratch_file;
  if (size < 1) return 0;
  const bool raw = (data[0] & 1) != 0;
  ++data;
  --size;

  if (!raw) {
    if (size < 8) return 0;
    const uint64_t data_size = LoadLE64(data);
    const std::string_view header(reinterpret_cast<const char*>(data + 8), size - 8);
    auto parsed = mamba::model::SafetensorsFile::ParseHeader(header, data_size, "fuzz.safetensors");
    if (parsed.ok()) {
      CheckEntries(*parsed, data_size);
    } else {
      FUZZ_CHECK(ExpectedCode(parsed.status()), "unexpected status %s",
                 parsed.status().ToString().c_str());
    }
    if (data_size > kMaxDataBytes) return 0;
    scratch->Write(LE64(header.size()) + std::string(header), data_size);
    auto opened = mamba::model::SafetensorsFile::Open(scratch->path());
    FUZZ_CHECK(opened.ok() == parsed.ok(), "Open (%s) and ParseHeader (%s) disagree",
               opened.status().ToString().c_str(), parsed.status().ToString().c_str());
    if (opened.ok()) {
      FUZZ_CHECK((*opened)->entries().size() == parsed->size(), "entry counts differ");
      CheckOpened(**opened, data_size);
    } else {
      FUZZ_CHECK(opened.status().code() == parsed.status().code(), "codes differ: %s vs %s",
                 opened.status().ToString().c_str(), parsed.status().ToString().c_str());
    }
    return 0;
  }

  const std::string_view file(reinterpret_cast<const char*>(data), size);
  scratch->Write(file, 0);
  auto opened = mamba::model::SafetensorsFile::Open(scratch->path());
  bool prefix_ok = size >= 8;
  uint64_t header_len = prefix_ok ? LoadLE64(data) : 0;
  prefix_ok = prefix_ok && header_len <= size - 8 &&
              header_len <= mamba::model::SafetensorsFile::kMaxHeaderBytes;
  if (!prefix_ok) {
    FUZZ_CHECK(!opened.ok() && opened.status().code() == absl::StatusCode::kDataLoss,
               "a file with a bad length prefix gave %s", opened.status().ToString().c_str());
    return 0;
  }
  const uint64_t data_size = size - 8 - header_len;
  auto parsed =
      mamba::model::SafetensorsFile::ParseHeader(file.substr(8, header_len), data_size, "fuzz");
  FUZZ_CHECK(opened.ok() == parsed.ok(), "Open (%s) and ParseHeader (%s) disagree",
             opened.status().ToString().c_str(), parsed.status().ToString().c_str());
  if (opened.ok()) {
    CheckOpened(**opened, data_size);
  } else {
    FUZZ_CHECK(ExpectedCode(opened.status()), "unexpected status %s",
               opened.status().ToString().c_str());
  }
  return 0;
}
