#!/usr/bin/env python3
"""Per-kernel durations and gaps of a decode step, from an Nsight Systems trace exported as CSV.

  nsys profile --cuda-graph-trace=node -o trace mamba-bench ... --prefill=0
  nsys stats --report cuda_gpu_trace --format csv -o trace trace.nsys-rep
  scripts/gpu/timeline.py trace_cuda_gpu_trace.csv [--last N]

Prints, per kernel family (name up to the first '<' or '('), the count, median duration and the
median gap from the end of the previous kernel to its start, over the last N kernels (default:
the last 2000, i.e. steady-state graph replays), and the totals: where a step's time goes
between kernels running and the GPU waiting between them.
"""
import csv
import statistics
import sys


def main():
    path = sys.argv[1]
    last = 2000
    if "--last" in sys.argv:
        last = int(sys.argv[sys.argv.index("--last") + 1])
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            name = r.get("Name", "")
            if not name or "memcpy" in name.lower() or "memset" in name.lower():
                continue
            start = float(r["Start (ns)"])
            dur = float(r["Duration (ns)"])
            rows.append((start, dur, name))
    rows.sort()
    rows = rows[-last:]
    fam = {}
    busy = 0.0
    gaps = 0.0
    prev_end = None
    for start, dur, name in rows:
        key = name.split("<")[0].split("(")[0].strip()
        gap = start - prev_end if prev_end is not None else 0.0
        prev_end = max(prev_end or 0.0, start + dur)
        d = fam.setdefault(key, ([], []))
        d[0].append(dur)
        d[1].append(gap)
        busy += dur
        gaps += max(gap, 0.0)
    print(f"{len(rows)} kernels: busy {busy / 1e3:.1f} us, gaps {gaps / 1e3:.1f} us "
          f"(overlap shows as negative gaps, counted 0)")
    print(f"{'kernel':50s} {'n':>6s} {'med us':>8s} {'med gap us':>10s} {'sum us':>9s}")
    for key, (durs, gps) in sorted(fam.items(), key=lambda kv: -sum(kv[1][0])):
        print(f"{key[:50]:50s} {len(durs):6d} {statistics.median(durs) / 1e3:8.2f} "
              f"{statistics.median(gps) / 1e3:10.2f} {sum(durs) / 1e3:9.1f}")


if __name__ == "__main__":
    main()
