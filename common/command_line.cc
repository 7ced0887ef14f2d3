#include "common/command_line.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace mamba::common {
namespace {

bool IsHelp(std::string_view name) {
  return name == "help" || name == "helpshort" || name == "h" || name == "?";
}

bool IsOwn(const absl::CommandLineFlag& flag, const CommandLineSpec& spec) {
  const std::string file = flag.Filename();
  return std::any_of(spec.own_flag_files.begin(), spec.own_flag_files.end(),
                     [&](const std::string& own) { return file.find(own) != std::string::npos; });
}

[[noreturn]] void UsageError(const CommandLineSpec& spec, const std::string& what) {
  std::fprintf(stderr, "%s: %s; see %s --help\n", spec.program.c_str(), what.c_str(),
               spec.program.c_str());
  std::exit(kExitUsage);
}

// Checks every flag argument before Abseil parses them (it exits with status 1 on an error, and
// the programs promise 2): the flag must exist, and a value must parse.
void CheckFlags(int argc, char** argv, const CommandLineSpec& spec) {
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--") break;
    if (arg.size() < 2 || arg[0] != '-') continue;  // positional
    arg.remove_prefix(arg[1] == '-' ? 2 : 1);
    const size_t eq = arg.find('=');
    const std::string name(arg.substr(0, eq));
    if (name == "helpfull" || name == "helppackage" || name == "version") continue;  // Abseil's
    if (IsHelp(name)) {
      std::fputs(HelpText(spec).c_str(), stdout);
      std::exit(0);
    }
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    if (flag == nullptr) {
      // --noflag sets a bool flag to false.
      absl::CommandLineFlag* negated =
          name.rfind("no", 0) == 0 ? absl::FindCommandLineFlag(name.substr(2)) : nullptr;
      if (negated != nullptr && negated->IsOfType<bool>() && eq == std::string_view::npos) {
        continue;
      }
      UsageError(spec, absl::StrCat("unknown flag --", name));
    }
    std::string value;
    if (eq != std::string_view::npos) {
      value = std::string(arg.substr(eq + 1));
    } else if (flag->IsOfType<bool>()) {
      continue;
    } else if (i + 1 < argc) {
      value = argv[++i];  // --flag VALUE
    } else {
      UsageError(spec, absl::StrCat("flag --", name, " needs a value"));
    }
    std::string error;
    // Parsing sets the flag; Abseil's own parse below sets it again to the same value.
    if (!flag->ParseFrom(value, &error)) {
      UsageError(spec, absl::StrCat("--", name, "=", value.substr(0, 64),
                                    " is not a valid value: ", error));
    }
  }
}

}  // namespace

std::string HelpText(const CommandLineSpec& spec) {
  std::vector<const absl::CommandLineFlag*> own;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (IsOwn(*flag, spec)) own.push_back(flag);
  }
  std::sort(own.begin(), own.end(),
            [](const auto* a, const auto* b) { return a->Name() < b->Name(); });
  std::string text = spec.usage;
  if (!text.empty() && text.back() != '\n') text += '\n';
  text += "\nFlags:\n";
  for (const absl::CommandLineFlag* flag : own) {
    const std::string def = flag->DefaultValue();
    absl::StrAppend(&text, "  --", flag->Name(), "=", def.empty() ? "\"\"" : def, "\n      ",
                    flag->Help(), "\n");
  }
  return text;
}

std::vector<char*> ParseCommandLineOrExit(int argc, char** argv, const CommandLineSpec& spec) {
  absl::SetProgramUsageMessage(spec.usage);
  CheckFlags(argc, argv, spec);
  return absl::ParseCommandLine(argc, argv);
}

}  // namespace mamba::common
