#include <zlib.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "engine/tokenizer/tokenizer.h"

namespace mamba::tokenizer {
namespace {

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

absl::StatusOr<std::string> ReadWholeFile(const std::string& path, size_t max_bytes) {
  std::unique_ptr<std::FILE, FileCloser> file(std::fopen(path.c_str(), "rb"));
  if (file == nullptr) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::string data;
  char buffer[1 << 16];
  while (true) {
    const size_t n = std::fread(buffer, 1, sizeof(buffer), file.get());
    if (n > 0) {
      if (data.size() + n > max_bytes) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, " is larger than the limit of ", max_bytes, " bytes"));
      }
      data.append(buffer, n);
    }
    if (n < sizeof(buffer)) break;
  }
  if (std::ferror(file.get())) return absl::DataLossError(absl::StrCat("error reading ", path));
  return data;
}

// Inflates every gzip member of `data` (files made by concatenating gzip streams are valid).
absl::StatusOr<std::string> Gunzip(const std::string& data, const std::string& path,
                                   size_t max_bytes) {
  if (data.size() > UINT32_MAX) {
    return absl::InvalidArgumentError(absl::StrCat(path, " is too large to gunzip in one piece"));
  }
  z_stream zs{};
  // 15 + 16: a gzip wrapper with the largest window.
  if (inflateInit2(&zs, 15 + 16) != Z_OK) {
    return absl::InternalError("zlib inflateInit2 failed");
  }
  std::string out;
  char buffer[1 << 16];
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = static_cast<uInt>(data.size());
  absl::Status status;
  while (true) {
    zs.next_out = reinterpret_cast<Bytef*>(buffer);
    zs.avail_out = sizeof(buffer);
    const int rc = inflate(&zs, Z_NO_FLUSH);
    const size_t produced = sizeof(buffer) - zs.avail_out;
    if (out.size() + produced > max_bytes) {
      status = absl::InvalidArgumentError(
          absl::StrCat(path, " decompresses to more than the limit of ", max_bytes, " bytes"));
      break;
    }
    out.append(buffer, produced);
    if (rc == Z_STREAM_END) {
      if (zs.avail_in == 0) break;
      if (inflateReset(&zs) != Z_OK) {
        status = absl::InternalError("zlib inflateReset failed");
        break;
      }
      continue;
    }
    if (rc == Z_BUF_ERROR && zs.avail_in == 0) {
      status = absl::DataLossError(absl::StrCat(path, " is a truncated gzip file"));
      break;
    }
    if (rc != Z_OK) {
      status = absl::DataLossError(absl::StrCat(
          path, " is not a valid gzip file: ", zs.msg != nullptr ? zs.msg : "inflate error"));
      break;
    }
  }
  inflateEnd(&zs);
  if (!status.ok()) return status;
  return out;
}

}  // namespace

absl::StatusOr<std::string> ReadFileMaybeGzipped(const std::string& path, size_t max_bytes) {
  absl::StatusOr<std::string> data = ReadWholeFile(path, max_bytes);
  if (!data.ok()) return data.status();
  if (data->size() >= 2 && static_cast<unsigned char>((*data)[0]) == 0x1f &&
      static_cast<unsigned char>((*data)[1]) == 0x8b) {
    return Gunzip(*data, path, max_bytes);
  }
  return data;
}

}  // namespace mamba::tokenizer
