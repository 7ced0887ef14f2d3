#include "server/wire_codec.h"

#include <string>

#include "gmock/gmock.h"
#include "grpcpp/support/byte_buffer.h"
#include "gtest/gtest.h"
#include "mambaserve/v1/generation.pb.h"
#include "mambaserve/v1/sessions.pb.h"

namespace mamba::server {
namespace {

namespace v1 = ::mambaserve::v1;
using ::testing::HasSubstr;

// A length-delimited field: tag, length, bytes (lengths here are < 128).
std::string Field(int number, const std::string& bytes) {
  std::string out;
  out.push_back(static_cast<char>((number << 3) | 2));
  out.push_back(static_cast<char>(bytes.size()));
  out += bytes;
  return out;
}

grpc::ByteBuffer ToBuffer(const std::string& bytes) {
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

TEST(WireCodecTest, RoundTrip) {
  v1::GenerateRequest in;
  in.set_text("héllo");
  in.mutable_stopping()->add_stop("\n");
  grpc::ByteBuffer buffer;
  ASSERT_TRUE(SerializeResponse(in, &buffer).ok());
  // Serializing twice into the same buffer replaces its contents.
  ASSERT_TRUE(SerializeResponse(in, &buffer).ok());
  v1::GenerateRequest out;
  ASSERT_TRUE(ParseRequest(buffer, &out).ok());
  EXPECT_EQ(out.text(), "héllo");
  EXPECT_EQ(out.stopping().stop(0), "\n");
}

TEST(WireCodecTest, InvalidUtf8NamesTheField) {
  struct Case {
    std::string bytes;
    const char* field;
  };
  const std::string bad = "a\xff\xfe";
  const Case cases[] = {
      {Field(1, bad), "field 'text' is not valid UTF-8"},
      {Field(3, bad), "field 'session_id' is not valid UTF-8"},
      {Field(5, Field(2, bad)), "field 'stopping.stop' is not valid UTF-8"},
      {Field(7, "\xc0\x80"), "field 'request_id' is not valid UTF-8"},  // overlong
      {Field(1, "\xed\xa0\x80"), "field 'text'"},                       // surrogate
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.field);
    v1::GenerateRequest message;
    absl::Status s = ParseRequest(ToBuffer(c.bytes), &message);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(s.message()), HasSubstr(c.field));
  }
  v1::CreateSessionRequest create;
  absl::Status s = ParseRequestBytes(Field(1, bad), &create);
  EXPECT_THAT(std::string(s.message()), HasSubstr("field 'text' is not valid UTF-8"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("token ids"));
}

TEST(WireCodecTest, BrokenWireFormat) {
  v1::GenerateRequest message;
  // A length-delimited field claiming more bytes than there are.
  absl::Status s = ParseRequestBytes(std::string("\x0a\x50hello", 7), &message);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("mambaserve.v1.GenerateRequest"));
}

TEST(WireCodecTest, EmptyMessageIsValid) {
  v1::GenerateRequest message;
  EXPECT_TRUE(ParseRequest(ToBuffer(""), &message).ok());
}

}  // namespace
}  // namespace mamba::server
