#!/usr/bin/env bash
# Decode throughput of mamba-serve (mamba-bench) and of the official implementation
# (scripts/gpu/official_decode.py) side by side on one GPU, in one call, and the ratio table every
# decode result is reported as (bench/RESULTS.md records both rows).
#
#   BUNDLE=.gpu OFFICIAL=.official scripts/gpu/decode_vs_official.sh [MODELS] [BATCHES] [EXTRA...]
#
# MODELS (default 130m,1.4b) and BATCHES (default 1,16,64,256) are comma-separated; EXTRA goes to
# mamba-bench (e.g. --state_dtype=bf16). BUNDLE holds bin/mamba-bench and env.sh
# (../shared/scripts/gpu-bundle.sh makes it); OFFICIAL holds the official package's mamba_ssm/
# (copied from a fetch of state-spaces/mamba, never committed). OUT (default build-gpu-logs)
# receives the raw JSON of both sides and the table. The two implementations alternate per model:
# official, mamba-serve, official, mamba-serve; each row reports the better of its two runs.
set -uo pipefail
cd "$(dirname "$0")/../.."
BUNDLE=${BUNDLE:-.gpu}
OFFICIAL=${OFFICIAL:-.official}
OUT=${OUT:-build-gpu-logs}
MODELS=${1:-130m,1.4b}
BATCHES=${2:-1,16,64,256}
shift $(( $# > 2 ? 2 : $# ))
mkdir -p "$OUT"
# shellcheck disable=SC1091
source "$BUNDLE/env.sh"
PY=${PYTHON:-python3}
device=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ) $device"
for model in ${MODELS//,/ }; do
  for round in $(seq 1 "${ROUNDS:-2}"); do
    PYTHONUNBUFFERED=1 "$PY" scripts/gpu/official_decode.py --official "$OFFICIAL" \
      --models "$model" --batch "$BATCHES" >>"$OUT/official.jsonl" 2>>"$OUT/official.err" \
      || echo "official_decode.py failed for $model (see $OUT/official.err)"
    "$BUNDLE/bin/mamba-bench" --backend=cuda --dtype=f16 --prefill=0 --model="synthetic:$model" \
      --batch="$BATCHES" --json="$OUT/ours_${model}_${round}.json" "$@" >"$OUT/ours_${model}_${round}.log" 2>&1 \
      || echo "mamba-bench failed for $model (see $OUT/ours_${model}_${round}.log)"
  done
done
"$PY" - "$OUT" "$MODELS" "$BATCHES" <<'PY' | tee "$OUT/table.md"
import glob, json, sys
out, models, batches = sys.argv[1], sys.argv[2].split(","), [int(b) for b in sys.argv[3].split(",")]
official, ours, floor = {}, {}, {}
for line in open(f"{out}/official.jsonl"):
    r = json.loads(line)
    key = (r["model"], r["batch"])
    official[key] = max(official.get(key, 0.0), r["tok_per_s"])
for path in glob.glob(f"{out}/ours_*.json"):
    model = path.split("ours_")[1].rsplit("_", 1)[0]
    for r in json.load(open(path))["decode"]:
        key = (model, r["batch"])
        if r["tokens_per_s"] > ours.get(key, 0.0):  # the better run, with its share of the floor
            ours[key] = r["tokens_per_s"]
            floor[key] = r["fraction_of_floor"]
cols = [(m, b) for m in models for b in batches]
fmt = lambda v: "-" if v is None else (f"{v/1000:.1f}k" if v >= 1000 else f"{v:.0f}")
print("| tok/s | " + " | ".join(f"{m} B={b}" for m, b in cols) + " |")
print("|---|" + "---|" * len(cols))
print("| mamba-serve | " + " | ".join(fmt(ours.get(c)) for c in cols) + " |")
print("| official | " + " | ".join(fmt(official.get(c)) for c in cols) + " |")
print("| ratio | " + " | ".join(
    f"{ours[c] / official[c]:.2f}x" if c in ours and c in official else "-" for c in cols) + " |")
print("| mamba-serve of the floor | " + " | ".join(
    f"{100 * floor[c]:.0f}%" if c in floor else "-" for c in cols) + " |")
PY
