// mamba-client health: asks grpc.health.v1.Health/Check. Exits 0 only when the status is
// SERVING, so it can serve as a container health check.
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "client/client_call.h"
#include "client/subcommands.h"
#include "grpc/health/v1/health.grpc.pb.h"

ABSL_FLAG(std::string, service, "",
          "health: the service to check: \"\" (the server), liveness or readiness");

namespace mamba::client {

int RunHealth(const Args& args) {
  if (!args.empty())
    return ReportUsageError(absl::StrCat("health: unexpected argument '", args[0], "'"));
  using grpc::health::v1::HealthCheckRequest;
  using grpc::health::v1::HealthCheckResponse;
  HealthCheckRequest request;
  request.set_service(absl::GetFlag(FLAGS_service));
  auto stub = grpc::health::v1::Health::NewStub(OpenChannel());
  HealthCheckResponse response;
  auto context = NewContext();
  grpc::Status status = stub->Check(context.get(), request, &response);
  if (!status.ok()) return ReportFailure(status);
  const std::string name = HealthCheckResponse::ServingStatus_Name(response.status());
  if (JsonOutput()) {
    PrintJson({{"service", request.service()}, {"status", name}});
  } else {
    std::printf("%s\n", name.c_str());
  }
  return response.status() == HealthCheckResponse::SERVING ? kExitOk : kExitCallFailed;
}

}  // namespace mamba::client
