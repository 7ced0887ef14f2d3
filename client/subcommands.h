// mamba-client's subcommands. Each lives in its own file and takes the positional arguments
// after its name (flags are parsed before dispatch); main.cc lists them in one table, so adding
// one is a new file plus a line there.
#pragma once

#include <string>
#include <vector>

#include "mambaserve/v1/generation.pb.h"

namespace mamba::client {

using Args = std::vector<std::string>;

// generate_command.cc
int RunGenerate(const Args& args);
// Fills `sampling` from --temperature, --top_k, --top_p, --min_p, --repetition_penalty and
// --seed (fields at their "off" value are left unset); `generate` and `load` share it.
void SamplingFromFlags(::mambaserve::v1::SamplingParams* sampling);
// session_command.cc: create | get | fork | close | list | export | import
int RunSession(const Args& args);
// tokenize_command.cc
int RunTokenize(const Args& args);
int RunDetokenize(const Args& args);
// info_command.cc
int RunInfo(const Args& args);
// health_command.cc
int RunHealth(const Args& args);
// load_command.cc: the load tester
int RunLoad(const Args& args);

struct Subcommand {
  const char* name;
  const char* usage;  // one line: arguments and flags
  int (*run)(const Args& args);
};

}  // namespace mamba::client
