// mamba-client tokenize / detokenize: the server's tokenizer from the command line. Plain
// tokenize prints the ids comma-separated (ready for --prompt_ids); --json prints {"ids": [...]}
// and {"text": "..."}.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/client_call.h"
#include "client/flag_values.h"
#include "client/subcommands.h"
#include "mambaserve/v1/models.grpc.pb.h"

ABSL_FLAG(std::string, text, "", "tokenize: the text");
ABSL_FLAG(bool, add_special_tokens, false, "tokenize: add the tokenizer's special tokens");
ABSL_FLAG(std::string, ids, "", "detokenize: token ids, comma-separated");
ABSL_FLAG(bool, skip_special_tokens, false, "detokenize: leave special tokens out");

namespace mamba::client {

namespace v1 = ::mambaserve::v1;

int RunTokenize(const Args& args) {
  if (!args.empty())
    return ReportUsageError(absl::StrCat("tokenize: unexpected argument '", args[0], "'"));
  v1::TokenizeRequest request;
  request.set_text(absl::GetFlag(FLAGS_text));
  request.set_add_special_tokens(absl::GetFlag(FLAGS_add_special_tokens));
  auto stub = v1::Models::NewStub(OpenChannel());
  v1::TokenizeResponse response;
  auto context = NewContext();
  grpc::Status status = stub->Tokenize(context.get(), request, &response);
  if (!status.ok()) return ReportFailure(status);
  std::vector<int32_t> ids(response.token_ids().begin(), response.token_ids().end());
  if (JsonOutput()) {
    PrintJson({{"ids", ids}});
  } else {
    std::printf("%s\n", absl::StrJoin(ids, ",").c_str());
  }
  return kExitOk;
}

int RunDetokenize(const Args& args) {
  if (!args.empty())
    return ReportUsageError(absl::StrCat("detokenize: unexpected argument '", args[0], "'"));
  absl::StatusOr<std::vector<int32_t>> ids = ParseIdList(absl::GetFlag(FLAGS_ids), "ids");
  if (!ids.ok()) return ReportUsageError(std::string(ids.status().message()));
  v1::DetokenizeRequest request;
  request.mutable_token_ids()->Add(ids->begin(), ids->end());
  request.set_skip_special_tokens(absl::GetFlag(FLAGS_skip_special_tokens));
  auto stub = v1::Models::NewStub(OpenChannel());
  v1::DetokenizeResponse response;
  auto context = NewContext();
  grpc::Status status = stub->Detokenize(context.get(), request, &response);
  if (!status.ok()) return ReportFailure(status);
  if (JsonOutput()) {
    PrintJson({{"text", response.text()}});
  } else {
    std::fwrite(response.text().data(), 1, response.text().size(), stdout);
    std::fputc('\n', stdout);
  }
  return kExitOk;
}

}  // namespace mamba::client
