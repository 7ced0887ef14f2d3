#!/usr/bin/env bash
# Runs the CUDA tests and benchmarks on a GPU host, from binaries built elsewhere (cmake
# -DMAMBA_CUDA=ON; targets cuda_kernels_test, cuda_backend_test, mamba-bench) and bundled with
# the shared libraries the host lacks into BUNDLE (default .gpu in the checkout root: bin/, lib/
# and env.sh, which sets LD_LIBRARY_PATH; or bin/ and lib/ packed as gpu-bundle.tar.xz).
#
#   scripts/gpu/run_cuda_checks.sh [STEP ...]
#
# Steps (default: tests memcheck racecheck scan bench130m bench1.4b):
#   tests      cuda_kernels_test, cuda_mamba2_kernels_test and cuda_backend_test
#   memcheck   compute-sanitizer memcheck on both kernel tests and on the persistent decode
#              kernel's backend tests
#   racecheck  compute-sanitizer racecheck on the shared-memory kernels' tests (not the persistent
#              decode kernel: under racecheck its grid barriers do not complete)
#   scan       the fused scan kernel alone at PERF.md's shapes (mamba-bench --scan_kernel)
#   bench130m  decode/prefill tables and the per-kernel breakdown for synthetic:130m
#   bench1.4b  the same for synthetic:1.4b
#   decode_ab  decode tables (batches 1, 16, 64, 256) for 130m and 1.4b with programmatic dependent
#              launch on and off (mamba-bench --dependent_launch)
#   persistent decode tables (batches 1, 2, 4) for 130m and 1.4b with the persistent decode kernel
#              by default, always and off (mamba-bench --persistent_decode), and its timeline at
#              batch 1 (--decode_trace)
#   bf16report the accuracy of bf16 states against fp32 ones on the golden checkpoints and two
#              long synthetic decodes (cuda_backend_test's DISABLED_Bf16StateAccuracyReport)
#   numerics   where the f16 CUDA path's first-token logprob leaves the CPU's, layer by layer, on
#              large-activation synthetic models and the golden f16 checkpoint (cuda_backend_test's
#              DISABLED_LayerByLayerNumericsReport; MAMBA_NUMERICS_CHECKPOINT=DIR adds one)
#   profile    Nsight Compute (speed of light, occupancy, warp stalls, memory) of the decode state
#              update, conv update and skinny GEMM (130m) and the prefill scan and conv (1.4b)
# Environment: BUNDLE (the bundle folder), OUT (where logs go; default build-gpu-logs), STEP_TIMEOUT
# (seconds per step, default 300), MAMBA_TEST_FILTER (a gtest filter for the tests step).
# Full logs go to $OUT/<step>.log; a compact summary is printed last and kept in
# $OUT/summary.txt.
set -uo pipefail
cd "$(dirname "$0")/../.."
BUNDLE=${BUNDLE:-.gpu}
OUT=${OUT:-build-gpu-logs}
STEP_TIMEOUT=${STEP_TIMEOUT:-300}
mkdir -p "$OUT"
# A bundle may travel compressed (the transfer is size-limited).
if [ -f "$BUNDLE/gpu-bundle.tar.xz" ] && [ ! -d "$BUNDLE/bin" ]; then
  tar xJf "$BUNDLE/gpu-bundle.tar.xz" -C "$BUNDLE"
fi
# shellcheck disable=SC1091
source "$BUNDLE/env.sh"
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(tests memcheck racecheck scan bench130m bench1.4b)
summary="$OUT/summary.txt"
: >"$summary"
note() { echo "$*" | tee -a "$summary"; }

note "== $(date -u +%Y-%m-%dT%H:%M:%SZ) $(nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader 2>/dev/null | head -1)"

# Runs "$@" with a time limit, logging to $OUT/$name.log; notes the exit status and the gtest
# verdict lines.
run_step() {
  local name=$1
  shift
  local start=$SECONDS
  timeout --signal=INT "$STEP_TIMEOUT" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  note "-- $name: exit $rc in $((SECONDS - start)) s"
  grep -E '^\[  (PASSED|FAILED|SKIPPED) |tests? ran|ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/$name.log" \
    | sort | uniq -c | sed 's/^/   /' | head -20 | tee -a "$summary"
  grep -E 'Failure|error:|Expected|Which is|actual' "$OUT/$name.log" | head -15 | sed 's/^/   /' \
    | tee -a "$summary"
  return $rc
}

bench_bin() {
  if [ -x "$BUNDLE/bin/mamba-bench" ]; then echo "$BUNDLE/bin/mamba-bench"; else echo ""; fi
}

for step in "${steps[@]}"; do
  case $step in
    tests)
      run_step kernels "$BUNDLE/bin/cuda_kernels_test" --gtest_filter="${MAMBA_TEST_FILTER:-*}"
      run_step kernels_mamba2 "$BUNDLE/bin/cuda_mamba2_kernels_test" \
        --gtest_filter="${MAMBA_TEST_FILTER:-*}"
      # One process per backend test, each with its own time limit, so one stuck test cannot
      # hide the others' results.
      : >"$OUT/backend.log"
      start=$SECONDS
      for t in $("$BUNDLE/bin/cuda_backend_test" --gtest_list_tests | awk '/^[^ ]/{s=$1} /^  /{print s $1}'); do
        timeout --signal=INT "${TEST_TIMEOUT:-90}" "$BUNDLE/bin/cuda_backend_test" \
          --gtest_filter="$t" >>"$OUT/backend.log" 2>&1
        echo "== $t exit $?" >>"$OUT/backend.log"
      done
      note "-- backend: $((SECONDS - start)) s"
      grep -E '^\[       OK \]|^\[  FAILED  \] [A-Z]|^\[  SKIPPED \] [A-Z]|^== .* exit [^0]' "$OUT/backend.log" \
        | sed 's/^/   /' | tee -a "$summary"
      grep -E 'Failure|Expected|Which is|actual' "$OUT/backend.log" | head -15 | sed 's/^/   /' \
        | tee -a "$summary"
      ;;
    memcheck)
      # The kernels on small shapes (the GEMM and sampling tests' larger cases included).
      run_step memcheck compute-sanitizer --tool memcheck --leak-check full --error-exitcode 3 \
        "$BUNDLE/bin/cuda_kernels_test"
      run_step memcheck_mamba2 compute-sanitizer --tool memcheck --leak-check full \
        --error-exitcode 3 "$BUNDLE/bin/cuda_mamba2_kernels_test"
      run_step memcheck_persistent compute-sanitizer --tool memcheck --error-exitcode 3 \
        "$BUNDLE/bin/cuda_backend_test" --gtest_filter='*Persistent*'
      ;;
    bf16report)
      run_step bf16report "$BUNDLE/bin/cuda_backend_test" --gtest_also_run_disabled_tests \
        --gtest_filter='*Bf16StateAccuracyReport'
      grep -E '^bf16-state report' "$OUT/bf16report.log" | sed 's/^/   /' | tee -a "$summary"
      ;;
    numerics)
      run_step numerics "$BUNDLE/bin/cuda_backend_test" --gtest_also_run_disabled_tests \
        --gtest_filter='*LayerByLayerNumericsReport'
      grep -E '^numerics report' "$OUT/numerics.log" | sed 's/^/   /' | tee -a "$summary"
      ;;
    racecheck)
      run_step racecheck compute-sanitizer --tool racecheck --error-exitcode 3 \
        "$BUNDLE/bin/cuda_kernels_test" \
        --gtest_filter='CudaRmsNorm*:CudaSelectiveScan*:CudaStateUpdate*:CudaSampling*:CudaGemmTest.BatchInvariant*'
      run_step racecheck_mamba2 compute-sanitizer --tool racecheck --error-exitcode 3 \
        "$BUNDLE/bin/cuda_mamba2_kernels_test"
      ;;
    scan)
      b=$(bench_bin)
      if [ -z "$b" ]; then note "-- scan: no mamba-bench in $BUNDLE/bin"; continue; fi
      run_step scan "$b" --backend=cuda --scan_kernel --json="$OUT/scan.json"
      cat "$OUT/scan.json" >>"$OUT/scan.log" 2>/dev/null && rm -f "$OUT/scan.json"
      grep -E '^[0-9]+x' "$OUT/scan.log" | sed 's/^/   /' | tee -a "$summary"
      ;;
    bench130m | bench1.4b)
      b=$(bench_bin)
      if [ -z "$b" ]; then note "-- $step: no mamba-bench in $BUNDLE/bin"; continue; fi
      model=synthetic:${step#bench}
      # PERF.md's tables (decode at 1, 16, 64, 256; prefill 512, 2048, 8192) with the breakdown
      # at batch 256, then the breakdown of a batch-1 step and a 2048-token prefill.
      run_step "$step" "$b" --backend=cuda --model="$model" --breakdown --json="$OUT/$step.json"
      "$b" --backend=cuda --model="$model" --batch=1 --prefill=2048 --breakdown \
        >>"$OUT/$step.log" 2>&1
      cat "$OUT/$step.json" >>"$OUT/$step.log" 2>/dev/null && rm -f "$OUT/$step.json"
      grep -E '^prefill |^ +[0-9]+ +[0-9.]+ +[0-9.]+|decode step at|prefill of' "$OUT/$step.log" \
        | sed 's/^/   /' | tee -a "$summary"
      ;;
    decode_ab)
      b=$(bench_bin)
      if [ -z "$b" ]; then note "-- decode_ab: no mamba-bench in $BUNDLE/bin"; continue; fi
      for model in 130m 1.4b; do
        for dep in true false; do
          run_step "decode_${model}_dep_$dep" "$b" --backend=cuda --model="synthetic:$model" \
            --batch=1,16,64,256 --prefill=0 --dependent_launch="$dep"
          grep -E '^ +[0-9]+ +[0-9.]+ +[0-9.]+' "$OUT/decode_${model}_dep_$dep.log" \
            | sed 's/^/   /' | tee -a "$summary"
        done
      done
      ;;
    persistent)
      b=$(bench_bin)
      if [ -z "$b" ]; then note "-- persistent: no mamba-bench in $BUNDLE/bin"; continue; fi
      for model in 130m 1.4b; do
        for mode in auto always off; do
          run_step "persistent_${model}_$mode" "$b" --backend=cuda --model="synthetic:$model" \
            --batch=1,2,4 --prefill=0 --persistent_decode="$mode"
          grep -E '^ +[0-9]+ +[0-9.]+ +[0-9.]+' "$OUT/persistent_${model}_$mode.log" \
            | sed 's/^/   /' | tee -a "$summary"
        done
        run_step "trace_$model" "$b" --backend=cuda --model="synthetic:$model" --batch=1 \
          --prefill=0 --decode_trace
        grep -A8 '^persistent decode kernel' "$OUT/trace_$model.log" | sed 's/^/   /' \
          | tee -a "$summary"
      done
      ;;
    profile)
      b=$(bench_bin)
      if [ -z "$b" ] || ! command -v ncu >/dev/null; then
        note "-- profile: needs mamba-bench and ncu"
        continue
      fi
      sections=(--section SpeedOfLight --section LaunchStats --section Occupancy
                --section WarpStateStats --section MemoryWorkloadAnalysis)
      {
        ncu --clock-control none "${sections[@]}" -k 'regex:SelectiveStateUpdate|CausalConv1dDecode|SkinnyGemm' \
          -s 72 -c 4 "$b" --backend=cuda --model=synthetic:130m --batch=256 --prefill=0 --steps=2 --warmup=1
        ncu --clock-control none "${sections[@]}" -k 'regex:DecodeStep|SkinnyGemm' \
          -s 2 -c 4 "$b" --backend=cuda --model=synthetic:1.4b --batch=1 --prefill=0 --steps=2 --warmup=1
        ncu --clock-control none "${sections[@]}" -k 'regex:SelectiveScanKernel|CausalConv1dPrefill' \
          -s 8 -c 3 "$b" --backend=cuda --model=synthetic:1.4b --batch=0 --prefill=2048 --prefill_runs=1
      } >"$OUT/profile.log" 2>&1
      note "-- profile: $(grep -c 'Section: GPU Speed Of Light' "$OUT/profile.log") kernels profiled"
      grep -E '^  [A-Za-z].*\(|Memory Throughput|DRAM Throughput|Compute \(SM\) Throughput|Duration|Achieved Occupancy|Registers Per' \
        "$OUT/profile.log" | sed 's/^/   /' | head -80 | tee -a "$summary"
      ;;
    *)
      note "-- unknown step $step"
      ;;
  esac
done
echo
echo "===== summary ====="
cat "$summary"
