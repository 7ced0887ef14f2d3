// Command-line parsing for the project's programs, on top of Abseil flags, with the behaviour the
// README promises: a usage error (an unknown flag, a value that does not parse) prints one line
// naming the flag and exits with status 2, and --help lists the program's own flags with their
// defaults and help (Abseil's --help lists only flags defined in a file named like the program,
// which ours are not).
#pragma once

#include <string>
#include <vector>

namespace mamba::common {

inline constexpr int kExitUsage = 2;

struct CommandLineSpec {
  std::string program;  // "mamba-serve"
  std::string usage;    // printed first by --help
  // The program's own flags: those defined in a source file whose path contains one of these
  // ("server/main.cc", "client/"). Abseil's and gRPC's flags still parse but are not listed.
  std::vector<std::string> own_flag_files;
};

// Parses argv. On --help (or -h, --helpshort) prints the usage and the program's own flags to
// stdout and exits 0 (--helpfull stays Abseil's: every flag of every library); on a usage error
// prints "PROGRAM: what was wrong; see --help" to stderr and exits kExitUsage. Returns the
// positional arguments, argv[0] first.
std::vector<char*> ParseCommandLineOrExit(int argc, char** argv, const CommandLineSpec& spec);

// The --help text: the usage, then each own flag as "  --name=DEFAULT  help", sorted by name.
std::string HelpText(const CommandLineSpec& spec);

}  // namespace mamba::common
