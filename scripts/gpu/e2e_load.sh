#!/usr/bin/env bash
# End-to-end throughput on a GPU host: mamba-serve (CUDA backend) driven over gRPC and over the
# OpenAI-compatible HTTP API (SSE) by `mamba-client load`, next to mamba-bench's raw backend
# decode loop at the same batch, so the scheduler's and the service's share of a step shows. Binaries come from a bundle as in
# run_cuda_checks.sh (BUNDLE, default .gpu).
#
#   scripts/gpu/e2e_load.sh [MODEL ...]      (default: synthetic:130m)
#
# Per model: the raw decode loop at batch 1/64/256, then closed-loop streaming at concurrency
# 1, then 64 and 256 (prompt 128 tokens, 256 generated, EOS ignored), the same 256 streams over
# HTTP (`--http`, issue 27's bar: >= 85% of mamba-bench at batch 256), then 64 sessions of 4 turns.
# Reports go to OUT (default build-gpu-logs): <model>-bench.txt, <model>-load.json,
# <model>-http.json, summary.txt.
set -uo pipefail
cd "$(dirname "$0")/../.."
BUNDLE=${BUNDLE:-.gpu}
OUT=${OUT:-build-gpu-logs}
mkdir -p "$OUT"
if [ -f "$BUNDLE/gpu-bundle.tar.xz" ] && [ ! -d "$BUNDLE/bin" ]; then
  tar xJf "$BUNDLE/gpu-bundle.tar.xz" -C "$BUNDLE"
fi
# shellcheck disable=SC1091
source "$BUNDLE/env.sh"
# shellcheck source=scripts/gpu/serve.sh
source scripts/gpu/serve.sh
models=("$@")
[ ${#models[@]} -eq 0 ] && models=(synthetic:130m)
summary="$OUT/summary.txt"
note() { echo "$*" | tee -a "$summary"; }
note "== $(date -u +%Y-%m-%dT%H:%M:%SZ) $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)"

for model in "${models[@]}"; do
  tag=${model#synthetic:}
  note "-- $model: raw backend decode loop"
  timeout 300 mamba-bench --backend=cuda --model="$model" --batch=1,64,256 --prefill=512 \
    >"$OUT/$tag-bench.txt" 2>&1
  grep -E "^ *(decode|batch|prefill)|tok/s" "$OUT/$tag-bench.txt" | tee -a "$summary"

  note "-- $model: mamba-serve + mamba-client load"
  log="$OUT/$tag-serve.log"
  if ! start_server "$OUT/$tag-listen.txt" "$log" mamba-serve --model="$model" --backend=cuda \
    --port=0 --metrics_port=0 --http_port=0 --max_running=256 --max_queue=4096 \
    --log_level=warning; then
    note "server did not start:"; tail -20 "$log" | tee -a "$summary"; kill "$server_pid" 2>/dev/null
    continue
  fi
  pid=$server_pid addr=$grpc_addr http=$http_addr
  timeout 200 mamba-client load --addr="$addr" --concurrency=1 --requests=16 --warmup=2 \
    --prompt_tokens=128 --output_tokens=256 --json_out="$OUT/$tag-load1.json" 2>&1 | tee -a "$summary"
  timeout 400 mamba-client load --addr="$addr" --sweep=concurrency:64,256 --requests=1024 \
    --warmup=64 --prompt_tokens=128 --output_tokens=256 --channels=8 --client_threads=4 \
    --json_out="$OUT/$tag-load.json" 2>&1 | tee -a "$summary"
  note "-- $model: the same 256 streams over HTTP (SSE)"
  timeout 400 mamba-client load --addr="$addr" --http="$http" --concurrency=256 --requests=1024 \
    --warmup=64 --prompt_tokens=128 --output_tokens=256 --client_threads=4 \
    --json_out="$OUT/$tag-http.json" 2>&1 | tee -a "$summary"
  timeout 300 mamba-client load --addr="$addr" --sessions=64 --turns=4 --prompt_tokens=64 \
    --output_tokens=64 --channels=8 --client_threads=4 \
    --json_out="$OUT/$tag-sessions.json" 2>&1 | tee -a "$summary"
  kill -TERM $pid; wait $pid
done
