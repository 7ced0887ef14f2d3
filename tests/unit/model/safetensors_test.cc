#include "engine/model/safetensors.h"

#include <cstring>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/model/temp_checkpoint.h"

namespace mamba {
namespace {

using ::testing::HasSubstr;
using testing::TempDir;

TEST(SafetensorsTest, WriteThenReadEveryDtype) {
  TempDir dir;
  const std::vector<float> f32 = {1.5f, -2.0f, 3.25f, 0.0f, 1e-3f, -7.0f};
  const std::vector<uint16_t> f16 = {model::FloatToHalf(0.5f), model::FloatToHalf(-1.0f),
                                     model::FloatToHalf(2.0f)};
  const std::vector<uint16_t> bf16 = {model::FloatToBFloat16(3.0f), model::FloatToBFloat16(-0.25f)};
  const std::vector<model::NamedTensor> tensors = {
      {"a.f16", {model::DType::kF16, {3}, f16.data()}},  // odd size first: later tensors misaligned
      {"b.f32", {model::DType::kF32, {2, 3}, f32.data()}},
      {"c.bf16", {model::DType::kBF16, {1, 2}, bf16.data()}},
      {"d.empty", {model::DType::kF32, {0, 4}, nullptr}},
  };
  const std::string path = dir.File("t.safetensors");
  ASSERT_TRUE(model::WriteSafetensors(path, tensors, {{"format", "pt"}}).ok());

  const std::string raw = testing::ReadText(path);
  uint64_t header_len = 0;
  std::memcpy(&header_len, raw.data(), 8);
  EXPECT_EQ((8 + header_len) % 8, 0u) << "header padded to 8 bytes";

  absl::StatusOr<std::shared_ptr<model::SafetensorsFile>> file = model::SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->entries().size(), 4u);
  EXPECT_EQ((*file)->metadata().at("format"), "pt");
  EXPECT_TRUE((*file)->Has("b.f32"));
  for (const model::NamedTensor& t : tensors) {
    absl::StatusOr<model::TensorView> v = (*file)->Get(t.name);
    ASSERT_TRUE(v.ok()) << v.status();
    EXPECT_EQ(v->dtype, t.view.dtype);
    EXPECT_EQ(v->shape, t.view.shape);
    if (t.view.nbytes() > 0) {
      EXPECT_EQ(std::memcmp(v->data, t.view.data, t.view.nbytes()), 0) << t.name;
    }
  }
  absl::StatusOr<model::TensorView> b = (*file)->Get("b.f32");
  EXPECT_FLOAT_EQ(b->At(2), 3.25f);
  EXPECT_FLOAT_EQ((*file)->Get("a.f16")->At(1), -1.0f);
  EXPECT_FLOAT_EQ((*file)->Get("c.bf16")->At(1), -0.25f);
  EXPECT_EQ((*file)->Get("nope").status().code(), absl::StatusCode::kNotFound);
}

TEST(SafetensorsTest, WriterRejectsBadNames) {
  TempDir dir;
  const float x = 1;
  EXPECT_EQ(model::WriteSafetensors(dir.File("a"), {{"t", {model::DType::kF32, {1}, &x}},
                                                    {"t", {model::DType::kF32, {1}, &x}}})
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      model::WriteSafetensors(dir.File("a"), {{"__metadata__", {model::DType::kF32, {1}, &x}}})
          .code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      model::WriteSafetensors(dir.File("a"), {{"t", {model::DType::kF32, {2}, nullptr}}}).code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(std::filesystem::exists(dir.File("a")));
}

struct HeaderCase {
  std::string name;
  std::string header;
  uint64_t data_size;
  absl::StatusCode code;
  std::vector<std::string> fragments;
};

TEST(SafetensorsTest, ParseHeaderTable) {
  const std::string t8 = R"("dtype": "F32", "shape": [2])";
  const std::vector<HeaderCase> cases = {
      {"ok",
       R"({"__metadata__": {"format": "pt"}, "a": {)" + t8 + R"(, "data_offsets": [0, 8]}})",
       8,
       absl::StatusCode::kOk,
       {}},
      {"ok with trailing spaces",
       R"({"a": {)" + t8 + R"(, "data_offsets": [0, 8]}}    )",
       8,
       absl::StatusCode::kOk,
       {}},
      {"empty object, empty data", "{}", 0, absl::StatusCode::kOk, {}},
      {"not json", "{\"a\": ", 0, absl::StatusCode::kDataLoss, {"not valid JSON"}},
      {"array", "[]", 0, absl::StatusCode::kDataLoss, {"must be a JSON object", "array"}},
      {"entry not object",
       R"({"a": 5})",
       0,
       absl::StatusCode::kDataLoss,
       {"'a'", "must be an object"}},
      {"missing offsets",
       R"({"a": {)" + t8 + "}}",
       8,
       absl::StatusCode::kDataLoss,
       {"'a'", "dtype, shape and data_offsets"}},
      {"unsupported dtype",
       R"({"a": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]}})",
       8,
       absl::StatusCode::kInvalidArgument,
       {"'a'", "'F64'", "not supported", "F32, F16, BF16"}},
      {"unknown dtype",
       R"({"a": {"dtype": "Q9", "shape": [1], "data_offsets": [0, 8]}})",
       8,
       absl::StatusCode::kInvalidArgument,
       {"'Q9'", "unknown"}},
      {"dtype not string",
       R"({"a": {"dtype": 5, "shape": [1], "data_offsets": [0, 4]}})",
       4,
       absl::StatusCode::kDataLoss,
       {"dtype must be a string"}},
      {"negative dim",
       R"({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})",
       4,
       absl::StatusCode::kDataLoss,
       {"non-negative integers"}},
      {"shape not array",
       R"({"a": {"dtype": "F32", "shape": 2, "data_offsets": [0, 8]}})",
       8,
       absl::StatusCode::kDataLoss,
       {"shape must be an array"}},
      {"one offset",
       R"({"a": {)" + t8 + R"(, "data_offsets": [0]}})",
       8,
       absl::StatusCode::kDataLoss,
       {"data_offsets must be [begin, end]"}},
      {"begin after end",
       R"({"a": {)" + t8 + R"(, "data_offsets": [8, 0]}})",
       8,
       absl::StatusCode::kDataLoss,
       {"data_offsets must be"}},
      {"shape/offset mismatch",
       R"({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})",
       8,
       absl::StatusCode::kDataLoss,
       {"'a'", "needs 12 bytes", "hold 8"}},
      {"huge shape",
       R"({"a": {"dtype": "F32", "shape": [4611686018427387904, 8],
           "data_offsets": [0, 8]}})",
       8,
       absl::StatusCode::kDataLoss,
       {"too large"}},
      {"past the end",
       R"({"a": {)" + t8 + R"(, "data_offsets": [0, 8]}})",
       4,
       absl::StatusCode::kDataLoss,
       {"'a'", "past the end of the data section (4 bytes)"}},
      {"overlap",
       R"({"a": {)" + t8 + R"(, "data_offsets": [0, 8]}, "b": {)" + t8 +
           R"(, "data_offsets": [4, 12]}})",
       12,
       absl::StatusCode::kDataLoss,
       {"'b'", "overlaps tensor 'a'"}},
      {"hole",
       R"({"a": {)" + t8 + R"(, "data_offsets": [0, 8]}, "b": {)" + t8 +
           R"(, "data_offsets": [12, 20]}})",
       20,
       absl::StatusCode::kDataLoss,
       {"bytes [8, 12)", "belong to no tensor"}},
      {"trailing bytes",
       R"({"a": {)" + t8 + R"(, "data_offsets": [0, 8]}})",
       16,
       absl::StatusCode::kDataLoss,
       {"8 bytes after the last tensor"}},
      {"bad metadata",
       R"({"__metadata__": 5})",
       0,
       absl::StatusCode::kDataLoss,
       {"__metadata__ must be an object"}},
  };
  for (const HeaderCase& t : cases) {
    SCOPED_TRACE(t.name);
    auto entries = model::SafetensorsFile::ParseHeader(t.header, t.data_size, "w.safetensors");
    EXPECT_EQ(entries.status().code(), t.code) << entries.status();
    if (!entries.ok()) {
      const std::string message(entries.status().message());
      EXPECT_THAT(message, HasSubstr("w.safetensors"));
      for (const std::string& f : t.fragments) EXPECT_THAT(message, HasSubstr(f));
    }
  }
}

TEST(SafetensorsTest, OpenRejectsBrokenFiles) {
  TempDir dir;
  EXPECT_EQ(model::SafetensorsFile::Open(dir.File("missing")).status().code(),
            absl::StatusCode::kNotFound);

  testing::WriteText(dir.File("short"), "abc");
  auto s = model::SafetensorsFile::Open(dir.File("short"));
  EXPECT_EQ(s.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("8-byte header length"));

  testing::WriteRawSafetensors(dir.File("long_header"), "{}", "", 1 << 20);
  s = model::SafetensorsFile::Open(dir.File("long_header"));
  EXPECT_EQ(s.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("header length 1048576 runs past"));

  testing::WriteRawSafetensors(dir.File("ok"), "{}", "");
  EXPECT_TRUE(model::SafetensorsFile::Open(dir.File("ok")).ok());

  EXPECT_EQ(model::SafetensorsFile::Open(dir.path()).status().code(),
            absl::StatusCode::kInvalidArgument);  // a folder
}

// Random damage to a valid file (flipped bytes anywhere, truncation at any length) must give a
// status, never a crash, and any file that still opens must have entries inside the file.
TEST(SafetensorsTest, RandomDamageNeverCrashes) {
  TempDir dir;
  std::vector<float> a(37, 1.0f);
  std::vector<uint16_t> b(11, model::FloatToHalf(2.0f));
  const std::string path = dir.File("t.safetensors");
  ASSERT_TRUE(model::WriteSafetensors(path,
                                      {{"alpha", {model::DType::kF32, {37}, a.data()}},
                                       {"beta.x", {model::DType::kBF16, {11, 1}, b.data()}}},
                                      {{"format", "pt"}})
                  .ok());
  const std::string good = testing::ReadText(path);
  uint64_t x = 99;
  auto next = [&x] {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    return x >> 33;
  };
  int opened = 0;
  for (int trial = 0; trial < 600; ++trial) {
    std::string bad = good;
    if (trial % 3 == 0) {
      bad.resize(next() % good.size());
    } else {
      const int flips = 1 + static_cast<int>(next() % 4);
      for (int f = 0; f < flips; ++f) {
        // Mostly the length prefix and header, where the parser works.
        const size_t at = next() % std::min<size_t>(good.size(), 8 + 200);
        bad[at] = static_cast<char>(next() & 0xff);
      }
    }
    testing::WriteText(path, bad);
    auto file = model::SafetensorsFile::Open(path);
    if (!file.ok()) {
      EXPECT_FALSE(file.status().message().empty());
      continue;
    }
    ++opened;
    // Views point at the right bytes of the file, all of which lie inside it.
    uint64_t header_len = 0;
    std::memcpy(&header_len, bad.data(), 8);
    const size_t data_start = 8 + header_len;
    for (const auto& [name, e] : (*file)->entries()) {
      ASSERT_LE(data_start + e.end, bad.size()) << name;
      absl::StatusOr<model::TensorView> v = (*file)->Get(name);
      ASSERT_TRUE(v.ok());
      EXPECT_EQ(std::memcmp(v->data, bad.data() + data_start + e.begin, v->nbytes()), 0) << name;
    }
  }
  EXPECT_GT(opened, 0) << "some damage (inside tensor data) leaves a valid file";
}

}  // namespace
}  // namespace mamba
