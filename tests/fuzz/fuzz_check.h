// What the fuzz targets share: an invariant check that stops the run with a message (libFuzzer
// then saves the input), and where the test data lives.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>

// Checks a property the code under test promises (not just "does not crash"). On failure it
// prints the condition and aborts, which libFuzzer reports as a crash and saves the input for.
#define FUZZ_CHECK(cond, ...)                                                            \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      std::fprintf(stderr, "%s:%d: FUZZ_CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
      std::fprintf(stderr, __VA_ARGS__);                                                 \
      std::fprintf(stderr, "\n");                                                        \
      std::abort();                                                                      \
    }                                                                                    \
  } while (0)

namespace mamba::fuzz {

// tests/data of the source tree, or MAMBA_TEST_DATA_DIR from the environment when set (to run a
// fuzzer built elsewhere).
inline std::string TestDataDir() {
  if (const char* env = std::getenv("MAMBA_TEST_DATA_DIR"); env != nullptr && *env != '\0') {
    return env;
  }
  return MAMBA_TEST_DATA_DIR;
}

}  // namespace mamba::fuzz
