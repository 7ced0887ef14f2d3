// mamba-client info: the served model and the server's limits (GetModelInfo).
#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "client/client_call.h"
#include "client/subcommands.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/reflection.h"
#include "mambaserve/v1/models.grpc.pb.h"

namespace mamba::client {
namespace {

namespace v1 = ::mambaserve::v1;
using google::protobuf::FieldDescriptor;
using nlohmann::json;

// Every field of ModelInfo, by reflection, so new fields show up without touching the client.
json InfoJson(const v1::ModelInfo& info) {
  json out = json::object();
  const google::protobuf::Descriptor* d = info.GetDescriptor();
  const google::protobuf::Reflection* r = info.GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    switch (f->cpp_type()) {
      case FieldDescriptor::CPPTYPE_INT32:
        out[f->name()] = r->GetInt32(info, f);
        break;
      case FieldDescriptor::CPPTYPE_INT64:
        out[f->name()] = r->GetInt64(info, f);
        break;
      case FieldDescriptor::CPPTYPE_UINT32:
        out[f->name()] = r->GetUInt32(info, f);
        break;
      case FieldDescriptor::CPPTYPE_UINT64:
        out[f->name()] = r->GetUInt64(info, f);
        break;
      case FieldDescriptor::CPPTYPE_DOUBLE:
        out[f->name()] = r->GetDouble(info, f);
        break;
      case FieldDescriptor::CPPTYPE_FLOAT:
        out[f->name()] = r->GetFloat(info, f);
        break;
      case FieldDescriptor::CPPTYPE_BOOL:
        out[f->name()] = r->GetBool(info, f);
        break;
      case FieldDescriptor::CPPTYPE_STRING:
        out[f->name()] = r->GetString(info, f);
        break;
      default:
        break;
    }
  }
  return out;
}

}  // namespace

int RunInfo(const Args& args) {
  if (!args.empty())
    return ReportUsageError(absl::StrCat("info: unexpected argument '", args[0], "'"));
  auto stub = v1::Models::NewStub(OpenChannel());
  v1::ModelInfo info;
  auto context = NewContext();
  grpc::Status status = stub->GetModelInfo(context.get(), v1::GetModelInfoRequest(), &info);
  if (!status.ok()) return ReportFailure(status);
  const json out = InfoJson(info);
  if (JsonOutput()) {
    PrintJson(out);
  } else {
    for (const auto& [key, value] : out.items()) {
      const std::string shown = value.is_string() ? value.get<std::string>() : value.dump();
      std::printf("%s: %s\n", key.c_str(), shown.c_str());
    }
  }
  return kExitOk;
}

}  // namespace mamba::client
