#!/usr/bin/env bash
# Sets everything up, builds with warnings as errors, and runs every test through ctest.
#   scripts/test.sh                  the whole suite (what CI runs)
#   scripts/test.sh -R tokenizer     extra arguments go to ctest
#   MAMBA_SANITIZE=address scripts/test.sh   ASan+UBSan build in build-asan/, the whole suite
#   MAMBA_SANITIZE=thread  scripts/test.sh   TSan build in build-tsan/ of the concurrency tests
#                                            (MAMBA_TSAN_TESTS below), and only those run
#   MAMBA_CI_FULL=1 scripts/test.sh  the whole suite, then the ASan suite, the TSan concurrency
#                                    tests and every fuzzer for MAMBA_FUZZ_SECONDS (default 20)
#                                    seconds (scripts/fuzz.sh); .ci/run sets it
set -euo pipefail
cd "$(dirname "$0")/.."

# The tests that exercise threads: the scheduler and engine, the sessions module, the stream
# dispatcher, the metrics registry and HTTP endpoint, the CPU backend's thread pool, the
# tokenizer's per-thread caches. Not the in-process gRPC server: Debian's gRPC is not built with
# TSan, so its internal locking is invisible and every gRPC call reports false races (see
# docs/reliability.md). Extra arguments to a TSan run replace this selection.
MAMBA_TSAN_TESTS=${MAMBA_TSAN_TESTS:-scheduler_test engine_test sessions_test server_unit_test
  metrics_test http_server_test cpu_kernels_test tokenizer_test prefix_cache_test
  chat_template_test}

if [ -n "${MAMBA_CI_FULL:-}" ] && [ -z "${MAMBA_SANITIZE:-}" ]; then
  # Each stage runs in its own process with its own build folder; all run even when one fails,
  # and the summary gives each one's time (CI's budget is 30 minutes on 2 cores).
  results=()
  failed=()
  stage() {
    local name=$1 start=$SECONDS status=ok
    shift
    echo "test.sh: stage $name"
    "$@" || status=FAILED
    results+=("$name: $status in $((SECONDS - start)) s")
    [ "$status" = ok ] || failed+=("$name")
  }
  stage suite env -u MAMBA_CI_FULL scripts/test.sh "$@"
  stage soak scripts/soak.sh --minutes="${MAMBA_SOAK_MINUTES:-2}"
  stage asan env -u MAMBA_CI_FULL -u BUILD_DIR MAMBA_SANITIZE=address scripts/test.sh
  stage tsan env -u MAMBA_CI_FULL -u BUILD_DIR MAMBA_SANITIZE=thread scripts/test.sh
  stage fuzz scripts/fuzz.sh --seconds "${MAMBA_FUZZ_SECONDS:-20}"
  printf 'test.sh: %s\n' "${results[@]}"
  if [ ${#failed[@]} -gt 0 ]; then
    echo "test.sh: FAILED: ${failed[*]}" >&2
    exit 1
  fi
  exit 0
fi

san=${MAMBA_SANITIZE:-}
ctest_args=("$@")
if [ -n "$san" ]; then
  export BUILD_DIR=${BUILD_DIR:-build-$([ "$san" = address ] && echo asan || echo tsan)}
  export CMAKE_ARGS="${CMAKE_ARGS:-} -DMAMBA_SANITIZE=$san -DMAMBA_CUDA=OFF"
  # Sanitizer reports fail the test that triggered them, with a stack to read.
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
  export TSAN_OPTIONS=${TSAN_OPTIONS:-second_deadlock_stack=1}
  if [ "$san" = thread ] && [ $# -eq 0 ]; then
    # Build only what the concurrency tests need (their dependencies come along).
    # shellcheck disable=SC2086
    export BUILD_TARGETS=$(echo $MAMBA_TSAN_TESTS)
    ctest_args=(-R "^($(echo $MAMBA_TSAN_TESTS | tr ' ' '|'))\$")
  fi
fi
export BUILD_DIR=${BUILD_DIR:-build}
export CMAKE_ARGS="${CMAKE_ARGS:-} -DMAMBA_WERROR=ON"
scripts/setup.sh
cd "$BUILD_DIR"
ctest --output-on-failure -j "${JOBS:-$(nproc)}" "${ctest_args[@]}"
