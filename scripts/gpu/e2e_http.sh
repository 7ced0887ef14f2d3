#!/usr/bin/env bash
# The OpenAI HTTP path's bar on a GPU host (issue 27): 256 SSE streams against the same streams
# over gRPC and mamba-bench's raw decode loop at batch 256, measured as issue 9's end-to-end rows
# are (server on cores 0-7, client on cores 8-15, 256 generated tokens per request), with 1-token
# and 128-token prompts, with the prefix cache on (the default) and off.
#
#   scripts/gpu/e2e_http.sh [MODEL]    (default synthetic:130m)
#
# BUNDLE (default .gpu) as in run_cuda_checks.sh; BACKEND (default cuda); SERVER_ARGS: more
# mamba-serve flags (e.g. --http_threads=4 --stream_threads=2); reports under OUT
# (default build-gpu-logs): one JSON report per row and table.md, printed last.
set -uo pipefail
cd "$(dirname "$0")/../.."
B=${BUNDLE:-.gpu}
[ -d "$B/bin" ] || tar xJf "$B/gpu-bundle.tar.xz" -C "$B"
# shellcheck disable=SC1091
source "$B/env.sh"
# shellcheck source=scripts/gpu/serve.sh
source scripts/gpu/serve.sh
O=${OUT:-build-gpu-logs}
MODEL=${1:-synthetic:130m}
BACKEND=${BACKEND:-cuda}
mkdir -p "$O"
cores=$(nproc)
half=$((cores / 2))
server_cpus="0-$((half - 1))"
client_cpus="$half-$((cores - 1))"

timeout 120 mamba-bench --backend="$BACKEND" --model="$MODEL" --batch=256 --prefill=0 \
  --json="$O/bench.json" >"$O/bench.txt" 2>&1
for cache in on off; do
  # shellcheck disable=SC2086  # SERVER_ARGS: several flags
  start_server "$O/listen-$cache.txt" "$O/serve-$cache.err" taskset -c "$server_cpus" \
    mamba-serve --model="$MODEL" --backend="$BACKEND" --port=0 --metrics_port=-1 --http_port=0 \
    --max_running=256 --max_queue=4096 \
    --prefix_cache=$([ $cache = on ] && echo true || echo false) --log_level=warning \
    ${SERVER_ARGS:-}
  pid=$server_pid grpc=$grpc_addr http=$http_addr
  for p in 1 128; do
    for proto in grpc http; do
      extra=()
      [ $proto = http ] && extra=(--http="$http")
      timeout 120 taskset -c "$client_cpus" mamba-client load --addr="$grpc" "${extra[@]}" \
        --concurrency=256 --requests=1024 --warmup=64 --prompt_tokens=$p --output_tokens=256 \
        --ignore_eos --client_threads=4 --json_out="$O/$proto-p$p-cache$cache.json" \
        >"$O/$proto-p$p-cache$cache.txt" 2>&1
    done
  done
  kill -TERM $pid
  wait $pid
done

python3 - "$O" <<'PY' | tee "$O/table.md"
import glob, json, os, sys
o = sys.argv[1]
try:
    raw = json.load(open(f"{o}/bench.json"))["decode"][0]["tokens_per_s"]
except (OSError, ValueError, KeyError, IndexError):
    raw = None
print(f"mamba-bench decode at batch 256: {raw:.0f} tok/s" if raw else "mamba-bench: no result")
print("| prefix cache | prompt | gRPC tok/s | HTTP tok/s | HTTP / gRPC | HTTP / mamba-bench | TPOT p50 gRPC / HTTP (ms) |")
print("|---|---|---|---|---|---|---|")
for cache in ("on", "off"):
    for p in (1, 128):
        row = {}
        for proto in ("grpc", "http"):
            try:
                pt = json.load(open(f"{o}/{proto}-p{p}-cache{cache}.json"))["points"][0]
                row[proto] = (pt["output_token_throughput"], pt["tpot_ms"]["p50"],
                              pt["requests"]["failed"])
            except (OSError, ValueError, KeyError, IndexError):
                row[proto] = None
        g, h = row["grpc"], row["http"]
        fmt = lambda r: "-" if r is None else f"{r[0]:.0f}" + (f" ({r[2]} failed)" if r[2] else "")
        ratio = f"{h[0] / g[0]:.2f}" if g and h else "-"
        of_raw = f"{h[0] / raw:.2f}" if h and raw else "-"
        tpot = f"{g[1]:.2f} / {h[1]:.2f}" if g and h else "-"
        print(f"| {cache} | {p} | {fmt(g)} | {fmt(h)} | {ratio} | {of_raw} | {tpot} |")
PY
