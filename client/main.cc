// mamba-client: talks to a mamba-serve server.
//   mamba-client SUBCOMMAND [ARGS] [--flags]
// Flags may come before or after the subcommand. A failed call prints the gRPC status code name
// and message to stderr and exits 1; usage errors exit 2.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/client_call.h"
#include "client/subcommands.h"
#include "common/command_line.h"

namespace {

using mamba::client::Subcommand;

constexpr Subcommand kSubcommands[] = {
    {"generate",
     "(--prompt=TEXT | --prompt_ids=1,2,3) [--session=ID] [--max_tokens=N --temperature=T "
     "--top_k=K --top_p=P --min_p=P --repetition_penalty=R --presence_penalty=P "
     "--frequency_penalty=F --seed=S --stop=S1,S2 --stop_token_ids=1,2 --ignore_eos "
     "--logprobs=K] [--json]",
     mamba::client::RunGenerate},
    {"session",
     "create [--prompt=TEXT | --prompt_ids=...] [--session=NEW_ID] [--ttl_seconds=N] | "
     "get --session=ID | fork --session=ID [--ttl_seconds=N] | close --session=ID | "
     "list [--page_size=N --page_token=T] | export --session=ID --out=FILE | "
     "import --in=FILE [--session=ID] [--ttl_seconds=N]  [--json]",
     mamba::client::RunSession},
    {"tokenize", "--text=TEXT [--add_special_tokens] [--json]", mamba::client::RunTokenize},
    {"detokenize", "--ids=1,2,3 [--skip_special_tokens] [--json]", mamba::client::RunDetokenize},
    {"info", "[--json]", mamba::client::RunInfo},
    {"health", "[--service=|liveness|readiness] [--json]", mamba::client::RunHealth},
    {"load", "--concurrency=N | --rate=R | --sessions=N ... (docs/load.md)",
     mamba::client::RunLoad},
};

std::string Usage() {
  std::string usage =
      "Talks to a mamba-serve server (--addr=HOST:PORT, default localhost:50051).\n"
      "Usage: mamba-client SUBCOMMAND [ARGS] [--flags]\n";
  for (const Subcommand& s : kSubcommands)
    absl::StrAppend(&usage, "  ", s.name, " ", s.usage, "\n");
  absl::StrAppend(&usage,
                  "Common flags: --addr, --json, --timeout_seconds, --token, --tls, --tls_ca, "
                  "--tls_cert, --tls_key, --tls_server_name. --help lists all.");
  return usage;
}

}  // namespace

int main(int argc, char** argv) {
  const mamba::common::CommandLineSpec spec{"mamba-client", Usage(), {"client/"}};
  std::vector<char*> positional = mamba::common::ParseCommandLineOrExit(argc, argv, spec);
  if (positional.size() < 2) {
    std::fprintf(stderr, "%s\n", Usage().c_str());
    return mamba::client::kExitUsage;
  }
  // Connection flags are checked once here, so that a bad file or combination is a usage error
  // before any call is made.
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      mamba::client::ChannelCredentialsFromFlags();
  if (!credentials.ok()) {
    return mamba::client::ReportUsageError(std::string(credentials.status().message()));
  }
  const std::string name = positional[1];
  mamba::client::Args args(positional.begin() + 2, positional.end());
  for (const Subcommand& s : kSubcommands) {
    if (name == s.name) return s.run(args);
  }
  return mamba::client::ReportUsageError(
      absl::StrCat("unknown subcommand '", name, "'\n", Usage()));
}
