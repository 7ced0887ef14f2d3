#!/usr/bin/env bash
# The prefix state cache on a GPU host (issue 26's measurement): stateless multi-turn chat with the
# cache off, with it on, and the same conversations through sessions, against one mamba-serve
# (CUDA backend) per mode. Binaries come from a bundle as in run_cuda_checks.sh (BUNDLE, default
# .gpu).
#
#   scripts/gpu/e2e_prefix_cache.sh [MODEL] [CONVERSATIONS]   (default: synthetic:130m 64)
#
# Each conversation: a shared system prompt of 1024 tokens, 4 turns of 64 new tokens, 32 generated
# per turn (EOS ignored). Reports go to OUT (default build-gpu-logs): prefix-<mode>.json and a
# table of warm-turn TTFT, prefill tokens per warm turn and the hit rate in summary.txt. BACKEND
# (default cuda) picks the server's backend (cpu tries the script anywhere).
set -uo pipefail
cd "$(dirname "$0")/../.."
BUNDLE=${BUNDLE:-.gpu}
OUT=${OUT:-build-gpu-logs}
BACKEND=${BACKEND:-cuda}
MODEL=${1:-synthetic:130m}
CONVERSATIONS=${2:-64}
mkdir -p "$OUT"
if [ -f "$BUNDLE/gpu-bundle.tar.xz" ] && [ ! -d "$BUNDLE/bin" ]; then
  tar xJf "$BUNDLE/gpu-bundle.tar.xz" -C "$BUNDLE"
fi
# shellcheck disable=SC1091
source "$BUNDLE/env.sh"
# shellcheck source=scripts/gpu/serve.sh
source scripts/gpu/serve.sh
summary="$OUT/summary.txt"
note() { echo "$*" | tee -a "$summary"; }
note "== $(date -u +%Y-%m-%dT%H:%M:%SZ) $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)"
note "-- $MODEL: $CONVERSATIONS conversations x 4 turns, system prompt 1024, 64 new + 32 generated"

workload=(--turns=4 --system_prompt_tokens=1024 --prompt_tokens=64 --output_tokens=32
          --ignore_eos --channels=8 --client_threads=4)
for mode in off on sessions; do
  flags=()
  [ "$mode" = off ] && flags=(--prefix_cache=false)
  log="$OUT/prefix-$mode-serve.log"
  if ! start_server "$OUT/prefix-$mode-listen.txt" "$log" mamba-serve --model="$MODEL" \
    --backend="$BACKEND" --port=0 --metrics_port=-1 --http_port=-1 --max_running=256 \
    --log_level=warning "${flags[@]}"; then
    note "server did not start ($mode):"; tail -20 "$log" | tee -a "$summary"
    kill "$server_pid" 2>/dev/null
    continue
  fi
  pid=$server_pid addr=$grpc_addr
  if [ "$mode" = sessions ]; then
    conv=(--sessions="$CONVERSATIONS")
  else
    conv=(--chat="$CONVERSATIONS")
  fi
  timeout 300 mamba-client load --addr="$addr" "${conv[@]}" "${workload[@]}" \
    --json_out="$OUT/prefix-$mode.json" >"$OUT/prefix-$mode.txt" 2>&1
  note "   $mode: exit $?"
  kill -TERM $pid
  wait $pid
done

python3 - "$OUT" <<'PY' | tee -a "$summary"
import json, sys
out = sys.argv[1]
print("| mode | warm TTFT mean / p50 / p90 (ms) | prefilled per warm turn | reused per warm turn | warm hit rate | tok/s |")
print("|---|---|---|---|---|---|")
for mode in ("off", "on", "sessions"):
    try:
        r = json.load(open(f"{out}/prefix-{mode}.json"))
    except (OSError, ValueError) as e:
        print(f"| {mode} | no report ({e}) | | | | |")
        continue
    p = r["points"][0]
    t, w = p["turns"]["warm_ttft_ms"], p["turns"]
    print("| %s | %.1f / %.1f / %.1f | %.1f | %.1f | %.0f%% | %.0f |" % (
        mode, t["mean"], t["p50"], t["p90"], w["warm_prefill_tokens"],
        w["warm_cached_tokens"], 100 * w["warm_hit_rate"], p["output_token_throughput"]))
PY
