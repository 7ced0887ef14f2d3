#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/) with clang, ASan and UBSan into build-fuzz/, and runs
# each for a bounded time, starting from its committed seed corpus. Fails if any target crashes,
# leaks, hangs (an input slower than --timeout), or runs out of memory; the offending input is
# left in build-fuzz/fuzz-artifacts/<target>/ and the log in build-fuzz/fuzz-logs/<target>.log.
#
#   scripts/fuzz.sh                        every target for 20 s (what CI runs)
#   scripts/fuzz.sh --seconds 3600         an hour each (on demand)
#   scripts/fuzz.sh --target safetensors   one target (repeatable)
#   scripts/fuzz.sh --merge                afterwards, add the inputs that found new coverage to
#                                          tests/fuzz/corpus/<target>/ (minimized; commit them)
#   scripts/fuzz.sh --no-build             use the fuzzers already built
#   scripts/fuzz.sh --list                 print the target names
#
# Inputs found in a run are kept in build-fuzz/fuzz-corpus/<target>/ and reused by the next run.
# To reproduce a crash: build-fuzz/bin/fuzz_<target> build-fuzz/fuzz-artifacts/<target>/crash-...
set -euo pipefail
cd "$(dirname "$0")/.."

# Per target: the longest input (bytes) the fuzzer may build. The seeds fit well inside.
declare -A MAX_LEN=(
  [safetensors]=16384
  [model_config]=4096
  [tokenizer_json]=16384
  [tokenizer_encode]=4096
  [request_validation]=4096
  [session_codec]=8192
  [stop_matcher]=1024
  [openai_request]=4096
)
ALL_TARGETS=(safetensors model_config tokenizer_json tokenizer_encode request_validation
             session_codec stop_matcher openai_request)

seconds=20
timeout_s=10        # one input slower than this is a hang
rss_limit_mb=2048
build=1
merge=0
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --seconds=*) seconds="${1#*=}"; shift ;;
    --target) targets+=("$2"); shift 2 ;;
    --target=*) targets+=("${1#*=}"); shift ;;
    --timeout) timeout_s="$2"; shift 2 ;;
    --rss-limit-mb) rss_limit_mb="$2"; shift 2 ;;
    --merge) merge=1; shift ;;
    --no-build) build=0; shift ;;
    --list) printf '%s\n' "${ALL_TARGETS[@]}"; exit 0 ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "fuzz.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ ${#targets[@]} -eq 0 ] && targets=("${ALL_TARGETS[@]}")
for t in "${targets[@]}"; do
  if [ -z "${MAX_LEN[$t]:-}" ]; then
    echo "fuzz.sh: unknown target '$t'; targets: ${ALL_TARGETS[*]}" >&2
    exit 2
  fi
done
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
  echo "fuzz.sh: --seconds must be a positive integer, not '$seconds'" >&2
  exit 2
fi

BUILD_DIR=${FUZZ_BUILD_DIR:-build-fuzz}
if [ "$build" = 1 ]; then
  MAMBA_SETUP_NO_BUILD=1 scripts/setup.sh  # clang and libclang-rt (libFuzzer) among the rest
  # shellcheck disable=SC2086
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    -DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DMAMBA_FUZZ=ON -DMAMBA_SANITIZE=address \
    -DMAMBA_CUDA=OFF -DMAMBA_WERROR=ON ${CMAKE_ARGS:-} >/dev/null
  cmake --build "$BUILD_DIR" --target mamba_fuzzers -j "${JOBS:-$(nproc)}"
fi

# Leaks count as failures; UBSan stops at the first report so that libFuzzer saves the input.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

failed=()
for t in "${targets[@]}"; do
  bin="$BUILD_DIR/bin/fuzz_$t"
  if [ ! -x "$bin" ]; then
    echo "fuzz.sh: $bin is missing (run without --no-build)" >&2
    exit 1
  fi
  seeds="tests/fuzz/corpus/$t"
  work="$BUILD_DIR/fuzz-corpus/$t"
  artifacts="$BUILD_DIR/fuzz-artifacts/$t/"
  log="$BUILD_DIR/fuzz-logs/$t.log"
  mkdir -p "$work" "$artifacts" "$(dirname "$log")"
  dict=()
  [ -f "tests/fuzz/dict/$t.dict" ] && dict=(-dict="tests/fuzz/dict/$t.dict")
  echo "fuzz.sh: $t for ${seconds}s"
  # New inputs go to the first corpus folder (the working one); the committed seeds stay as
  # they are. The outer timeout is a backstop for a fuzzer that stops answering altogether.
  rc=0
  timeout --kill-after=30 $((seconds + 120)) "$bin" "${dict[@]}" \
    -max_total_time="$seconds" -max_len="${MAX_LEN[$t]}" -timeout="$timeout_s" \
    -rss_limit_mb="$rss_limit_mb" -artifact_prefix="$artifacts" -print_final_stats=1 \
    "$work" "$seeds" >"$log" 2>&1 || rc=$?
  # libFuzzer's last status line: "#RUNS DONE cov: ... corp: ... exec/s: ...".
  stats=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 |
    sed 's/^#\([0-9]*\)[[:space:]]*DONE[[:space:]]*/runs \1 /' || true)
  if [ "$rc" -ne 0 ]; then
    echo "fuzz.sh: $t FAILED (exit $rc); last lines of $log:" >&2
    grep -E 'ERROR|FUZZ_CHECK|runtime error|SUMMARY|Test unit written|==[0-9]+==' "$log" |
      head -20 >&2 || true
    tail -5 "$log" >&2
    failed+=("$t")
  else
    echo "fuzz.sh: $t ok (${stats:-no stats}; log $log)"
  fi
  if [ "$merge" = 1 ] && [ "$rc" -eq 0 ]; then
    # Keeps only the inputs that add coverage to what the committed seeds already reach.
    "$bin" -merge=1 -max_len="${MAX_LEN[$t]}" -timeout="$timeout_s" \
      -rss_limit_mb="$rss_limit_mb" "$seeds" "$work" >>"$log" 2>&1
    echo "fuzz.sh: $t corpus now $(find "$seeds" -type f | wc -l) files"
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: FAILED: ${failed[*]} (inputs in $BUILD_DIR/fuzz-artifacts/)" >&2
  exit 1
fi
echo "fuzz.sh: all ${#targets[@]} targets ran ${seconds}s each without a crash, leak or hang"
