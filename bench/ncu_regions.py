#!/usr/bin/env python3
"""Where a kernel's warps spend their time, by stretch of code.

Reads the per-SASS-instruction CSV that bench/gpu_profile.sh writes
(`ncu --page source --print-source sass --csv`, e.g. ncu-attention-sass.csv)
and prints:
  * the stall reasons over the whole kernel (share of all warp samples);
  * the kernel cut into runs of consecutive instructions with the same
    execution count -- a run is one stretch of straight-line code, and its
    count says what it is per (per item, per tile, per masked tile ...);
    each run with at least --min percent of the samples is printed with its
    instruction mix and its top stall reasons.
Why: Nsight Compute's source view answers "which instruction", but the
questions while tuning were "how much goes to the softmax, the wgmma issue,
the per-item set-up and the epilogue", which this answers in one table
(docs/performance.md).

Usage: python3 bench/ncu_regions.py CSV [--min 0.5] [--show ADDR_FROM ADDR_TO]
--show prints every instruction of that address range (last hex digits are
enough) with its samples and top stall reasons.
--by-count sums the samples of all instructions executed equally often
(per tile, per item, per warp ...) wherever they lie, with the samples
per execution: comparing two profiles of one build (dense and sparse)
class by class says whether a mask costs more per tile or per item
(docs/performance.md, "Cost per tile and per item").
"""
import argparse
import collections
import csv
import sys

SAMPLES = "Warp Stall Sampling (All Samples)"
EXECUTED = "Instructions Executed"


def load(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    # the first line names the kernel; the header follows
    start = next(i for i, r in enumerate(rows) if r and r[0] == "Address")
    header, data = rows[start], [r for r in rows[start + 1:] if len(r) > 2]
    col = {h: i for i, h in enumerate(header)}
    stalls = [h for h in header if h.startswith("stall_") and "Not Issued" not in h]
    return data, col, stalls


def num(row, col, name):
    try:
        return float(row[col[name]] or 0)
    except (ValueError, KeyError):
        return 0.0


def opcode(sass):
    words = sass.split()
    op = words[1] if words and words[0].startswith("@") else (words[0] if words else "")
    return op.split(".")[0]


def top_stalls(rows, col, stalls, n=3):
    agg = collections.Counter()
    for r in rows:
        for h in stalls:
            agg[h[len("stall_"):]] += num(r, col, h)
    return [(k, int(v)) for k, v in agg.most_common(n)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("--min", type=float, default=0.5,
                    help="print runs with at least this percent of the samples")
    ap.add_argument("--show", nargs=2, metavar=("FROM", "TO"))
    ap.add_argument("--by-count", action="store_true",
                    help="samples per execution count class instead of runs")
    a = ap.parse_args()
    data, col, stalls = load(a.csv)
    total = sum(num(r, col, SAMPLES) for r in data) or 1.0
    print(f"{len(data)} instructions, {int(total)} warp samples")
    for name, v in top_stalls(data, col, stalls, 10):
        print(f"  {name:22s} {v:10d} {100 * v / total:5.1f}%")

    if a.show:
        lo = next(i for i, r in enumerate(data) if r[0].endswith(a.show[0]))
        hi = next(i for i, r in enumerate(data) if r[0].endswith(a.show[1]))
        for r in data[lo:hi + 1]:
            print(f"{r[0][-5:]} {int(num(r, col, SAMPLES)):7d}  {r[1][:70]:70s} "
                  f"{top_stalls([r], col, stalls, 2)}")
        return 0

    if a.by_count:
        by, n = collections.Counter(), collections.Counter()
        for r in data:
            e = int(num(r, col, EXECUTED))
            by[e] += num(r, col, SAMPLES)
            n[e] += 1
        print(f"\nclasses with >= {a.min}% of the samples (executions per "
              "instruction, instructions, samples, per execution, share)")
        for e, v in by.most_common():
            if 100 * v / total >= a.min:
                print(f"x{e:<9d} n{n[e]:<5d} {int(v):8d} {v / max(e, 1):9.5f} "
                      f"{100 * v / total:5.1f}%")
        return 0

    runs, cur = [], None
    for i, r in enumerate(data):
        e = int(num(r, col, EXECUTED))
        if cur and cur["exec"] == e:
            cur["end"] = i
        else:
            cur = {"exec": e, "start": i, "end": i}
            runs.append(cur)
    print(f"\nruns with >= {a.min}% of the samples "
          "(address range, executions per instruction, instructions, share)")
    for run in runs:
        rows = data[run["start"]:run["end"] + 1]
        s = sum(num(r, col, SAMPLES) for r in rows)
        if 100 * s / total < a.min:
            continue
        mix = collections.Counter(opcode(r[1]) for r in rows).most_common(4)
        print(f"{rows[0][0][-5:]}-{rows[-1][0][-5:]} x{run['exec']:<9d} "
              f"n{len(rows):<4d} {100 * s / total:5.1f}%  "
              f"{', '.join(f'{k} {v}' for k, v in mix)}  "
              f"{top_stalls(rows, col, stalls)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
