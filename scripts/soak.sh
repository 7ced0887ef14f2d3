#!/usr/bin/env bash
# The soak test: mamba-serve on loopback under mixed traffic from `mamba-client load` for a fixed
# time, watched through /metrics. It fails when
#   - any request or session call ends with a status other than OK (the client reports and the
#     server's own mamba_requests_total both count),
#   - resident memory, less the host memory the prefix cache holds (bounded by
#     --prefix_cache_host_gb, filled on purpose), grows more than 5% from a sample taken after the
#     warm-up to the last sample under load,
#   - requests, sessions or state slots do not return to their baseline once the load is over,
#   - the server does not exit 0 on SIGTERM.
#
#   scripts/soak.sh                      2 minutes (what CI runs)
#   scripts/soak.sh --minutes=60         an hour
#   scripts/soak.sh --seconds=45         a short bound (the ctest entry)
# Options: --model=SPEC (default synthetic:tiny; e.g. models/default), --bin_dir=DIR (default
# $MAMBA_BIN_DIR or build/bin), --num_slots=N (default 8: fewer than the load wants, so idle
# sessions move to host memory and back), --cache_host_gb=G (the server's --prefix_cache_host_gb,
# default 0.0625: small, so the cache fills during the warm-up and evicts for the rest of the
# run), --sample_seconds=N (default 5), --keep (keep the work folder with logs and samples; it is
# always kept on failure).
#
# Traffic, all at once for the whole time:
#   - a closed loop of 2 greedy streams (prompts of 4-96 token ids, 4-64 new tokens);
#   - an open loop of 4 requests/s (at most 4 in flight): random-word prompts, sampled
#     (temperature 0.8, top_p 0.95), 1-32 new tokens;
#   - waves of 5 sessions, 4 turns each with 50 ms think time, closed at the end, one wave after
#     another until the time is up.
# Only loopback: the server binds 127.0.0.1 and the load tester refuses anything else.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
}

seconds=120
model=synthetic:tiny
bin_dir=${MAMBA_BIN_DIR:-build/bin}
num_slots=8
cache_host_gb=0.0625
sample_seconds=5
keep=0
for arg in "$@"; do
  case "$arg" in
    --minutes=*) seconds=$(awk -v m="${arg#*=}" 'BEGIN { if (m + 0 > 0) printf "%d", m * 60 }') ;;
    --seconds=*) seconds=${arg#*=} ;;
    --model=*) model=${arg#*=} ;;
    --bin_dir=*) bin_dir=${arg#*=} ;;
    --num_slots=*) num_slots=${arg#*=} ;;
    --cache_host_gb=*) cache_host_gb=${arg#*=} ;;
    --sample_seconds=*) sample_seconds=${arg#*=} ;;
    --keep) keep=1 ;;
    -h | --help) usage ;;
    *) echo "soak: unknown argument '$arg'" >&2; usage ;;
  esac
done
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 20 ]; then
  echo "soak: the run must last at least 20 seconds (--minutes=M or --seconds=S); got '$seconds'" >&2
  exit 2
fi
if ! [[ "$num_slots" =~ ^[0-9]+$ ]] || [ "$num_slots" -lt 1 ]; then
  echo "soak: --num_slots must be a positive integer; got '$num_slots'" >&2
  exit 2
fi
if ! [[ "$sample_seconds" =~ ^[0-9]+$ ]] || [ "$sample_seconds" -lt 1 ]; then
  echo "soak: --sample_seconds must be a positive integer; got '$sample_seconds'" >&2
  exit 2
fi
serve=$bin_dir/mamba-serve
client=$bin_dir/mamba-client
for b in "$serve" "$client"; do
  if [ ! -x "$b" ]; then
    echo "soak: $b not found; build it (cmake --build build --target mamba-serve mamba-client)" \
      "or pass --bin_dir" >&2
    exit 2
  fi
done
python=$(command -v python3 || true)
[ -n "$python" ] || { echo "soak: python3 is needed to read /metrics and the reports" >&2; exit 2; }

# Warm-up: a quarter of the run, at least 10 s and at most 5 minutes. Allocators, gRPC's buffers
# and the session tiers reach their working size in it; after it, memory must stay flat.
warmup=$((seconds / 4))
[ "$warmup" -lt 10 ] && warmup=10
[ "$warmup" -gt 300 ] && warmup=300

work=$(mktemp -d -t mamba-soak.XXXXXX)
server_pid=""
load_pids=()
failures=()
cleanup() {
  for p in "${load_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -KILL "$server_pid" 2>/dev/null || true
  fi
  if [ "$keep" = 1 ] || [ ${#failures[@]} -gt 0 ]; then
    echo "soak: logs and samples kept in $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
fail() {
  failures+=("$1")
  echo "soak: FAIL: $1" >&2
}

# Reads /metrics and prints the values the soak watches, one "name value" a line.
metrics() {
  "$python" - "$metrics_addr" <<'EOF'
import sys, urllib.request
text = urllib.request.urlopen("http://%s/metrics" % sys.argv[1], timeout=10).read().decode()
want = {"process_resident_memory_bytes", "mamba_requests_running", "mamba_requests_waiting",
        "mamba_state_slots", "mamba_state_slots_used"}
out = {"mamba_sessions": 0.0, "requests_not_ok": 0.0, "requests_ok": 0.0,
       "cache_host_bytes": 0.0}
bad = []
for line in text.splitlines():
    if not line or line.startswith("#"):
        continue
    series, _, value = line.rpartition(" ")
    name = series.split("{", 1)[0]
    if name in want:
        out[name] = float(value)
    elif name == "mamba_sessions":
        out[name] += float(value)
    elif name == "mamba_prefix_cache_bytes" and 'tier="host"' in series:
        out["cache_host_bytes"] += float(value)
    elif name == "mamba_requests_total":
        if 'code="OK"' in series:
            out["requests_ok"] += float(value)
        elif float(value) > 0:
            out["requests_not_ok"] += float(value)
            bad.append("%s=%s" % (series, value))
for k in sorted(out):
    print(k, "%.0f" % out[k])
print("requests_not_ok_series", ",".join(bad) or "-")
EOF
}
value() { awk -v k="$1" '$1 == k { print $2 }' <<<"$2"; }

# The server.
"$serve" --model="$model" --backend=cpu --cpu_threads=1 --host=127.0.0.1 --port=0 \
  --metrics_host=127.0.0.1 --metrics_port=0 --http_port=0 --num_slots="$num_slots" \
  --prefix_cache_host_gb="$cache_host_gb" --log_level=warning \
  --drain_seconds=10 >"$work/serve.out" 2>"$work/serve.err" &
server_pid=$!
grpc_addr=""
for _ in $(seq 1 600); do
  line=$(head -n 1 "$work/serve.out" 2>/dev/null || true)
  if [[ "$line" =~ grpc=([^ ]+)\ metrics=([^ ]+) ]]; then
    grpc_addr=${BASH_REMATCH[1]}
    metrics_addr=${BASH_REMATCH[2]}
    break
  fi
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$grpc_addr" ]; then
  failures+=("server did not start")
  echo "soak: mamba-serve did not print its listening line; its stderr:" >&2
  tail -n 20 "$work/serve.err" >&2
  exit 1
fi
baseline=$(metrics)
echo "soak: mamba-serve pid $server_pid on grpc=$grpc_addr metrics=$metrics_addr, model $model," \
  "$num_slots slots; load for ${seconds}s (warm-up ${warmup}s), samples every ${sample_seconds}s"

# The load.
common=(--addr="$grpc_addr" --slo= --timeout_seconds=120 --channels=2)
"$client" load "${common[@]}" --concurrency=2 --duration="$seconds" --prompt_tokens=uniform:4:96 \
  --output_tokens=uniform:4:64 --workload_seed=1 --json_out="$work/closed.json" \
  >"$work/closed.out" 2>"$work/closed.err" &
load_pids+=($!)
"$client" load "${common[@]}" --rate=4 --concurrency=4 --duration="$seconds" --prompt_text \
  --prompt_tokens=uniform:4:48 --output_tokens=uniform:1:32 --temperature=0.8 --top_p=0.95 \
  --workload_seed=2 --json_out="$work/open.json" >"$work/open.out" 2>"$work/open.err" &
load_pids+=($!)
(
  end=$((SECONDS + seconds))
  wave=0
  while [ $SECONDS -lt $end ]; do
    wave=$((wave + 1))
    "$client" load "${common[@]}" --sessions=5 --turns=4 --think_time_ms=50 \
      --prompt_tokens=uniform:4:32 --output_tokens=uniform:4:32 --workload_seed=$((100 + wave)) \
      --json_out="$work/sessions-$wave.json" >"$work/sessions-$wave.out" \
      2>"$work/sessions-$wave.err" || echo "wave $wave: mamba-client exited $?" >>"$work/waves.err"
  done
) &
load_pids+=($!)

# Samples while the load runs.
printf 't_s\trss_bytes\tcache_host_bytes\trunning\twaiting\tsessions\tslots_used\n' \
  >"$work/samples.tsv"
start=$SECONDS
warm_rss=""
last_rss=""
max_rss=0
while :; do
  sleep "$sample_seconds"
  t=$((SECONDS - start))
  [ "$t" -ge "$seconds" ] && break
  if ! kill -0 "$server_pid" 2>/dev/null; then
    fail "mamba-serve died during the load (see $work/serve.err)"
    break
  fi
  m=$(metrics) || { fail "could not read /metrics at ${t}s"; continue; }
  # The prefix cache's host entries are memory the server keeps on purpose, up to its bound.
  cache_bytes=$(value cache_host_bytes "$m")
  rss=$(($(value process_resident_memory_bytes "$m") - cache_bytes))
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$rss" "$cache_bytes" \
    "$(value mamba_requests_running "$m")" \
    "$(value mamba_requests_waiting "$m")" "$(value mamba_sessions "$m")" \
    "$(value mamba_state_slots_used "$m")" >>"$work/samples.tsv"
  if [ -z "$warm_rss" ] && [ "$t" -ge "$warmup" ]; then warm_rss=$rss; fi
  last_rss=$rss
  [ "$rss" -gt "$max_rss" ] && max_rss=$rss
done
for p in "${load_pids[@]}"; do
  wait "$p" || true
done
load_pids=()

# Every request the load tester made, by status.
report=$("$python" - "$work" <<'EOF'
import glob, json, os, sys
work = sys.argv[1]
totals = {"requests": 0, "ok": 0, "tokens": 0, "sessions_created": 0, "sessions_closed": 0,
          "usage_mismatches": 0}
bad = {}
for path in sorted(glob.glob(os.path.join(work, "*.json"))):
    name = os.path.basename(path)[:-5]
    try:
        report = json.load(open(path))
    except Exception as e:
        bad["%s: unreadable report (%s)" % (name, e)] = 1
        continue
    for point in report["points"]:
        r = point["requests"]
        totals["requests"] += r["sent"]
        totals["ok"] += r["succeeded"]
        totals["tokens"] += point["tokens"]["received"]
        totals["usage_mismatches"] += point["tokens"]["usage_mismatches"]
        for code, n in r["failed_by_code"].items():
            bad["generate " + code] = bad.get("generate " + code, 0) + n
        if r["sent"] != r["succeeded"] + r["failed"]:
            bad["%s: requests neither succeeded nor failed" % name] = 1
        s = point.get("sessions")
        if s:
            totals["sessions_created"] += s["created"]
            totals["sessions_closed"] += s["closed"]
            for kind in ("create", "close"):
                for code, n in s["%s_failed_by_code" % kind].items():
                    key = "session %s %s" % (kind, code)
                    bad[key] = bad.get(key, 0) + n
for k, v in totals.items():
    print(k, v)
print("bad", "; ".join("%s x%d" % kv for kv in sorted(bad.items())) or "-")
EOF
)
requests=$(value requests "$report")
ok=$(value ok "$report")
bad=$(sed -n 's/^bad //p' <<<"$report")
[ "$bad" = "-" ] || fail "requests ended with unexpected statuses: $bad"
[ "$(value usage_mismatches "$report")" = 0 ] ||
  fail "$(value usage_mismatches "$report") streams' usage disagreed with the tokens received"
[ "${requests:-0}" -gt 0 ] || fail "the load tester sent no request"
[ "$(value sessions_created "$report")" = "$(value sessions_closed "$report")" ] ||
  fail "sessions created and closed differ: $(value sessions_created "$report") vs $(value sessions_closed "$report")"
if [ -s "$work/waves.err" ]; then fail "$(tr '\n' ' ' <"$work/waves.err")"; fi

# Memory after the warm-up.
growth="n/a"
if [ -n "$warm_rss" ] && [ -n "$last_rss" ]; then
  growth=$(awk -v a="$warm_rss" -v b="$last_rss" 'BEGIN { printf "%+.2f", (b - a) * 100 / a }')
  if awk -v g="$growth" 'BEGIN { exit !(g > 5) }'; then
    fail "resident memory grew ${growth}% after the warm-up ($warm_rss -> $last_rss bytes)"
  fi
else
  fail "no memory sample after the warm-up (run longer than $((warmup + sample_seconds))s)"
fi

# Back to the baseline once the load is over (sessions the load created were all closed).
settled=0
for _ in $(seq 1 100); do
  m=$(metrics) || break
  if [ "$(value mamba_requests_running "$m")" = 0 ] && [ "$(value mamba_requests_waiting "$m")" = 0 ] &&
    [ "$(value mamba_sessions "$m")" = "$(value mamba_sessions "$baseline")" ] &&
    [ "$(value mamba_state_slots_used "$m")" = "$(value mamba_state_slots_used "$baseline")" ]; then
    settled=1
    break
  fi
  sleep 0.2
done
after=$(metrics) || after=""
if [ "$settled" != 1 ]; then
  fail "not back to baseline 20 s after the load: running=$(value mamba_requests_running "$after") waiting=$(value mamba_requests_waiting "$after") sessions=$(value mamba_sessions "$after") (baseline $(value mamba_sessions "$baseline")) slots_used=$(value mamba_state_slots_used "$after") (baseline $(value mamba_state_slots_used "$baseline"))"
fi
server_bad=$(value requests_not_ok_series "$after")
[ "$server_bad" = "-" ] || fail "the server counted RPCs that did not end OK: $server_bad"

# A clean exit on SIGTERM.
kill -TERM "$server_pid"
exit_code=0
wait "$server_pid" || exit_code=$?
server_pid=""
[ "$exit_code" = 0 ] || fail "mamba-serve exited $exit_code on SIGTERM (see $work/serve.err)"

echo "soak: summary"
printf '  %-26s %s\n' \
  "duration" "${seconds}s (warm-up ${warmup}s)" \
  "requests" "$requests sent, $ok OK, $(value tokens "$report") tokens streamed" \
  "sessions" "$(value sessions_created "$report") created, $(value sessions_closed "$report") closed" \
  "server RPCs (metrics)" "$(value requests_ok "$after") OK, $(value requests_not_ok "$after") other" \
  "unexpected statuses" "$bad" \
  "resident memory - cache" "after warm-up $warm_rss, end $last_rss, max $max_rss bytes (${growth}%)" \
  "after the load" "running=$(value mamba_requests_running "$after") waiting=$(value mamba_requests_waiting "$after") sessions=$(value mamba_sessions "$after") slots_used=$(value mamba_state_slots_used "$after")/$(value mamba_state_slots "$after")" \
  "SIGTERM exit" "$exit_code"
if [ ${#failures[@]} -gt 0 ]; then
  echo "soak: FAILED (${#failures[@]} problem(s))" >&2
  exit 1
fi
echo "soak: PASSED"
