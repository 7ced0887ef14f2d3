#include "engine/model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/json_nesting.h"
#include "nlohmann/json.hpp"

namespace mamba::model {
namespace {

using Json = nlohmann::json;

// Dtypes the safetensors format defines that we do not serve, so that the error can say
// "not supported" rather than "unknown".
const std::set<std::string>& OtherSafetensorsDTypes() {
  static const auto* names = new std::set<std::string>{
      "BOOL", "U8",      "I8",      "I16",     "U16", "I32",     "U32",     "I64", "U64",
      "F64",  "F8_E4M3", "F8_E5M2", "F8_E8M0", "F4",  "F6_E2M3", "F6_E3M2", "C64"};
  return *names;
}

std::string Shown(const Json& v) {
  std::string s = v.dump();
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

// A non-negative integer that fits in int64.
bool AsCount(const Json& v, uint64_t* out) {
  if (!v.is_number_integer()) return false;
  if (v.is_number_unsigned()) {
    *out = v.get<uint64_t>();
  } else {
    const int64_t s = v.get<int64_t>();
    if (s < 0) return false;
    *out = static_cast<uint64_t>(s);
  }
  return *out <= uint64_t{INT64_MAX};
}

}  // namespace

std::string_view SafetensorsDTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return "F32";
    case DType::kF16:
      return "F16";
    case DType::kBF16:
      return "BF16";
  }
  return "?";
}

absl::StatusOr<std::map<std::string, SafetensorsFile::Entry>> SafetensorsFile::ParseHeader(
    std::string_view header, uint64_t data_size, const std::string& source) {
  auto corrupt = [&](const std::string& what) {
    return absl::DataLossError(absl::StrCat(source, ": ", what));
  };
  if (!common::JsonNestingWithin(header)) {
    return corrupt(absl::StrCat("the header nests arrays or objects more than ",
                                common::kMaxJsonNesting, " levels deep"));
  }
  Json j;
  try {
    j = Json::parse(header.begin(), header.end());
  } catch (const Json::exception& e) {
    return corrupt(absl::StrCat("the header is not valid JSON (", e.what(), ")"));
  }
  if (!j.is_object()) {
    return corrupt(absl::StrCat("the header must be a JSON object, got ", j.type_name()));
  }
  std::map<std::string, Entry> entries;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const Json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) {
        return corrupt(absl::StrCat("__metadata__ must be an object, got ", v.type_name()));
      }
      continue;
    }
    auto bad = [&](const std::string& what) {
      return corrupt(absl::StrCat("tensor '", name, "': ", what));
    };
    if (!v.is_object()) return bad(absl::StrCat("entry must be an object, got ", Shown(v)));
    auto dt = v.find("dtype");
    auto sh = v.find("shape");
    auto off = v.find("data_offsets");
    if (dt == v.end() || sh == v.end() || off == v.end()) {
      return bad("entry must have dtype, shape and data_offsets");
    }
    if (!dt->is_string()) return bad(absl::StrCat("dtype must be a string, got ", Shown(*dt)));
    Entry e;
    const std::string dtype = dt->get<std::string>();
    if (dtype == "F32") {
      e.dtype = DType::kF32;
    } else if (dtype == "F16") {
      e.dtype = DType::kF16;
    } else if (dtype == "BF16") {
      e.dtype = DType::kBF16;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": tensor '", name, "': dtype '", dtype, "' is ",
                       OtherSafetensorsDTypes().count(dtype) ? "not supported" : "unknown",
                       "; allowed: F32, F16, BF16"));
    }
    if (!sh->is_array()) return bad(absl::StrCat("shape must be an array, got ", Shown(*sh)));
    uint64_t numel = 1;
    bool overflow = false;
    for (const Json& d : *sh) {
      uint64_t dim = 0;
      if (!AsCount(d, &dim)) {
        return bad(absl::StrCat("shape ", Shown(*sh), " must list non-negative integers"));
      }
      e.shape.push_back(static_cast<int64_t>(dim));
      overflow |= __builtin_mul_overflow(numel, dim, &numel);
    }
    uint64_t nbytes = 0;
    overflow |= __builtin_mul_overflow(numel, uint64_t{DTypeSize(e.dtype)}, &nbytes);
    if (overflow || nbytes > uint64_t{INT64_MAX}) {
      return bad(absl::StrCat("shape ", Shown(*sh), " is too large"));
    }
    if (!off->is_array() || off->size() != 2 || !AsCount((*off)[0], &e.begin) ||
        !AsCount((*off)[1], &e.end) || e.begin > e.end) {
      return bad(absl::StrCat("data_offsets must be [begin, end] with 0 <= begin <= end, got ",
                              Shown(*off)));
    }
    if (e.end - e.begin != nbytes) {
      return bad(absl::StrCat("shape ", Shown(*sh), " of dtype ", dtype, " needs ", nbytes,
                              " bytes but data_offsets [", e.begin, ", ", e.end, ") hold ",
                              e.end - e.begin));
    }
    if (e.end > data_size) {
      return bad(absl::StrCat("data_offsets [", e.begin, ", ", e.end,
                              ") run past the end of the data section (", data_size,
                              " bytes); is the file truncated?"));
    }
    entries.emplace(name, std::move(e));
  }
  // The tensors must tile the data section exactly: no overlap (two tensors aliasing bytes), no
  // holes (bytes nobody accounts for), as the reference implementation requires.
  std::vector<std::pair<const std::string*, const Entry*>> order;
  for (const auto& [name, e] : entries) order.push_back({&name, &e});
  std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
    return std::pair(a.second->begin, a.second->end) < std::pair(b.second->begin, b.second->end);
  });
  uint64_t covered = 0;
  const std::string* last = nullptr;
  for (const auto& [name, e] : order) {
    if (e->begin < covered) {
      return corrupt(absl::StrCat("tensor '", *name, "' (bytes [", e->begin, ", ", e->end,
                                  ")) overlaps tensor '", *last, "' (ending at ", covered, ")"));
    }
    if (e->begin > covered) {
      return corrupt(absl::StrCat("bytes [", covered, ", ", e->begin,
                                  ") of the data section belong to no tensor (before tensor '",
                                  *name, "')"));
    }
    covered = e->end;
    last = name;
  }
  if (covered != data_size) {
    return corrupt(absl::StrCat("the data section has ", data_size - covered,
                                " bytes after the last tensor that belong to no tensor"));
  }
  return entries;
}

absl::StatusOr<std::shared_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    const std::string what = absl::StrCat(path, ": cannot open (", std::strerror(err), ")");
    if (err == ENOENT) return absl::NotFoundError(what);
    if (err == EACCES) return absl::PermissionDeniedError(what);
    return absl::UnavailableError(what);
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size < 8) {
    close(fd);
    return absl::DataLossError(
        absl::StrCat(path, ": file is ", size,
                     " bytes; a safetensors file starts with an 8-byte header length"));
  }
  std::shared_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  void* map = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_errno = errno;
  close(fd);
  if (map == MAP_FAILED) {
    return absl::ResourceExhaustedError(absl::StrCat(path, ": cannot memory-map ", size, " bytes (",
                                                     std::strerror(map_errno), ")"));
  }
  file->map_ = map;
  file->map_size_ = size;
  const auto* bytes = static_cast<const uint8_t*>(map);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];
  if (header_len > size - 8) {
    return absl::DataLossError(absl::StrCat(path, ": header length ", header_len,
                                            " runs past the end of the file (", size,
                                            " bytes); the file is truncated or not safetensors"));
  }
  if (header_len > kMaxHeaderBytes) {
    return absl::DataLossError(absl::StrCat(path, ": header length ", header_len,
                                            " exceeds the limit of ", kMaxHeaderBytes, " bytes"));
  }
  const std::string_view header(reinterpret_cast<const char*>(bytes + 8), header_len);
  auto entries = ParseHeader(header, size - 8 - header_len, path);
  if (!entries.ok()) return entries.status();
  file->entries_ = *std::move(entries);
  // ParseHeader accepted the JSON; read the metadata strings (non-strings are kept as JSON text).
  const Json j = Json::parse(header.begin(), header.end(), nullptr, false);
  if (auto it = j.find("__metadata__"); it != j.end()) {
    for (auto m = it->begin(); m != it->end(); ++m) {
      file->metadata_[m.key()] = m->is_string() ? m->get<std::string>() : m->dump();
    }
  }
  file->data_ = bytes + 8 + header_len;
  return file;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) munmap(map_, map_size_);
}

absl::StatusOr<TensorView> SafetensorsFile::Get(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) {
    return absl::NotFoundError(absl::StrCat(path_, ": no tensor '", name, "'"));
  }
  TensorView v;
  v.dtype = it->second.dtype;
  v.shape = it->second.shape;
  v.data = data_ + it->second.begin;
  return v;
}

absl::Status WriteSafetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const NamedTensor& t : tensors) {
    if (t.name.empty() || t.name == "__metadata__" || !names.insert(t.name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": tensor name '", t.name, "' is empty, reserved or used twice"));
    }
    if (t.view.data == nullptr && t.view.numel() != 0) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": tensor '", t.name, "' has no data"));
    }
    for (int64_t d : t.view.shape) {
      if (d < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": tensor '", t.name, "' has a negative dimension"));
      }
    }
    const uint64_t n = t.view.nbytes();
    header[t.name] = {{"dtype", std::string(SafetensorsDTypeName(t.view.dtype))},
                      {"shape", t.view.shape},
                      {"data_offsets", {offset, offset + n}}};
    offset += n;
  }
  std::string text = header.dump();
  text.append((8 - (8 + text.size()) % 8) % 8, ' ');
  char prefix[8];
  uint64_t len = text.size();
  for (int i = 0; i < 8; ++i) prefix[i] = static_cast<char>((len >> (8 * i)) & 0xff);

  const std::string tmp = absl::StrCat(path, ".partial-", getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return absl::PermissionDeniedError(absl::StrCat(tmp, ": cannot create"));
    out.write(prefix, 8);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const NamedTensor& t : tensors) {
      if (t.view.nbytes() > 0) {
        out.write(static_cast<const char*>(t.view.data),
                  static_cast<std::streamsize>(t.view.nbytes()));
      }
    }
    out.flush();
    if (!out) {
      std::remove(tmp.c_str());
      return absl::DataLossError(absl::StrCat(tmp, ": write failed (disk full?)"));
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    return absl::PermissionDeniedError(absl::StrCat(
        path, ": cannot rename the written file into place (", std::strerror(err), ")"));
  }
  return absl::OkStatus();
}

}  // namespace mamba::model
