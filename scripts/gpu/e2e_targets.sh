#!/usr/bin/env bash
# Issue 9's end-to-end rows on a GPU host: synthetic:130m served by mamba-serve (cores 0-7),
# driven by mamba-client load (cores 8-15) over loopback.
#   - 256 concurrent streams, 256 generated tokens each, 1-token and 128-token prompts, with the
#     default prefill budget per step (2048 tokens) and with 512;
#   - TTFT of 512-token prompts sent one at a time while 256 streams run;
#   - 64 sessions x 4 turns (cold vs warm TTFT).
# Bundle as in run_cuda_checks.sh (BUNDLE, default .gpu); reports under OUT.
#   scripts/gpu/e2e_targets.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
B=${BUNDLE:-.gpu}
[ -d "$B/bin" ] || tar xJf "$B/gpu-bundle.tar.xz" -C "$B"
# shellcheck disable=SC1091
source "$B/env.sh"
O=${OUT:-build-gpu-logs}
mkdir -p "$O"
show='Output token|TTFT|ITL|cold|warm|Requests:'
serve() {  # serve CHUNK: starts the server, sets $pid and $addr
  taskset -c 0-7 mamba-serve --model=synthetic:130m --backend=cuda --port=0 --metrics_port=0 --http_port=0 \
    --max_running=256 --max_queue=4096 --max_prefill_tokens_per_step="$1" --log_level=warning \
    >"$O/listen-$1.txt" 2>"$O/serve-$1.err" &
  pid=$!
  for _ in $(seq 1 300); do grep -q listening "$O/listen-$1.txt" && break; sleep 0.2; done
  addr=127.0.0.1:$(sed -n 's/.*grpc=[^ ]*:\([0-9]*\).*/\1/p' "$O/listen-$1.txt")
}
load() { taskset -c 8-15 mamba-client load --addr="$addr" --channels=8 --client_threads=4 "$@"; }
for chunk in 2048 512; do
  serve "$chunk"
  for p in 1 128; do
    echo "== chunk $chunk, concurrency 256, prompt $p"
    load --concurrency=256 --requests=1024 --warmup=64 --prompt_tokens="$p" \
      --output_tokens=256 --json_out="$O/c256-p$p-chunk$chunk.json" 2>&1 | grep -E "$show"
  done
  echo "== chunk $chunk, 512-token prompts one at a time under 256 streams"
  load --concurrency=256 --duration=6 --prompt_tokens=1 --output_tokens=256 >/dev/null 2>&1 &
  bg=$!
  sleep 1.5
  load --concurrency=1 --requests=8 --prompt_tokens=512 --output_tokens=4 2>&1 | grep -E "TTFT"
  wait $bg
  if [ "$chunk" = 2048 ]; then
    echo "== sessions 64 x 4"
    load --sessions=64 --turns=4 --prompt_tokens=64 --output_tokens=64 2>&1 | grep -E "$show"
  fi
  kill -TERM $pid; wait $pid
done
