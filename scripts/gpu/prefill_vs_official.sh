#!/usr/bin/env bash
# Prefill of mamba-serve (mamba-bench) and of the official Mamba-2 implementation
# (scripts/gpu/official_prefill.py) side by side on one GPU, in one call, with the ratio and the
# share of the compute floor (2 x parameters FLOPs per token at PERF.md's ~990 TFLOP/s dense
# f16/bf16 on an H100) that issue 25's prefill target is stated in.
#
#   BUNDLE=.gpu OFFICIAL=.official scripts/gpu/prefill_vs_official.sh [MODELS] [TOKENS] [EXTRA...]
#
# MODELS (default mamba2-2.7b,codestral-7b; Mamba-2 shapes only) and TOKENS (default 2048,8192)
# are comma-separated; EXTRA goes to mamba-bench. BUNDLE and OFFICIAL as in
# decode_vs_official.sh. OUT (default build-gpu-logs) receives both sides' raw JSON and the table.
# The two implementations alternate per model (official, mamba-serve, twice by default: ROUNDS);
# each row reports the better run.
set -uo pipefail
cd "$(dirname "$0")/../.."
BUNDLE=${BUNDLE:-.gpu}
OFFICIAL=${OFFICIAL:-.official}
OUT=${OUT:-build-gpu-logs}
MODELS=${1:-mamba2-2.7b,codestral-7b}
TOKENS=${2:-2048,8192}
shift $(( $# > 2 ? 2 : $# ))
mkdir -p "$OUT"
# shellcheck disable=SC1091
source "$BUNDLE/env.sh"
PY=${PYTHON:-python3}
TFLOPS=${TFLOPS:-990}
device=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ) $device"
for model in ${MODELS//,/ }; do
  for round in $(seq 1 "${ROUNDS:-2}"); do
    PYTHONUNBUFFERED=1 "$PY" scripts/gpu/official_prefill.py --official "$OFFICIAL" \
      --models "$model" --tokens "$TOKENS" >>"$OUT/official_prefill.jsonl" \
      2>>"$OUT/official_prefill.err" \
      || echo "official_prefill.py failed for $model (see $OUT/official_prefill.err)"
    "$BUNDLE/bin/mamba-bench" --backend=cuda --dtype=f16 --batch=1 --steps=2 \
      --model="synthetic:$model" --prefill="$TOKENS" \
      --json="$OUT/prefill_ours_${model}_${round}.json" "$@" \
      >"$OUT/prefill_ours_${model}_${round}.log" 2>&1 \
      || echo "mamba-bench failed for $model (see $OUT/prefill_ours_${model}_${round}.log)"
  done
done
"$PY" - "$OUT" "$MODELS" "$TOKENS" "$TFLOPS" <<'PY' | tee "$OUT/prefill_table.md"
import glob, json, re, sys
out, models, tokens, tflops = sys.argv[1], sys.argv[2].split(","), sys.argv[3].split(","), float(sys.argv[4])
tokens = [int(t) for t in tokens]
official, ours, params = {}, {}, {}
for line in open(f"{out}/official_prefill.jsonl"):
    r = json.loads(line)
    key = (r["model"], r["tokens"])
    official[key] = max(official.get(key, 0.0), r["tokens_per_s"])
for path in glob.glob(f"{out}/prefill_ours_*.json"):
    model = path.split("prefill_ours_")[1].rsplit("_", 1)[0]
    for r in json.load(open(path)).get("prefill", []):
        key = (model, r["tokens"])
        ours[key] = max(ours.get(key, 0.0), r["tokens_per_s"])
    log = open(path[:-5] + ".log").read()
    m = re.search(r"([0-9.]+)M parameters", log)
    if m:
        params[model] = float(m.group(1)) * 1e6
cols = [(m, t) for m in models for t in tokens]
fmt = lambda v: "-" if v is None else (f"{v/1000:.1f}k" if v >= 1000 else f"{v:.0f}")
print("| prefill tok/s | " + " | ".join(f"{m} {t}" for m, t in cols) + " |")
print("|---|" + "---|" * len(cols))
print("| mamba-serve | " + " | ".join(fmt(ours.get(c)) for c in cols) + " |")
print("| official | " + " | ".join(fmt(official.get(c)) for c in cols) + " |")
print("| ratio | " + " | ".join(
    f"{ours[c] / official[c]:.2f}x" if c in ours and c in official else "-" for c in cols) + " |")
floor = lambda m: tflops * 1e12 / (2 * params[m]) if m in params else None
print("| mamba-serve of the compute floor | " + " | ".join(
    f"{100 * ours[c] / floor(c[0]):.0f}%" if c in ours and floor(c[0]) else "-" for c in cols)
      + " |")
PY
