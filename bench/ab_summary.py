#!/usr/bin/env python3
"""Medians per build of an A/B log (bench/gpu_ab.sh's $OUT/ab.log).

    python3 bench/ab_summary.py ab.log [BUILD...]

gpu_ab.sh runs `prism bench` for every build in turn, round after round;
this prints, per sequence length and stage, each build's median over the
rounds and the rounds themselves, so that a difference can be told from
the noise at a glance.  Builds default to the order they first appear in.
Several runs appended to one log (bench/results/*-ab-*.log) are read as
one: give the builds of the run wanted, and mind that names repeat.
"""
import re
import statistics
import sys
from collections import defaultdict

STAGES = ["attention (dense)", "attention (random 10%)", "attention (random 20%)",
          "attention (prism mask)", "prism prefill (total)", "prism estimate"]


def read(path):
    times, order, cur = defaultdict(list), [], None
    for line in open(path, errors="replace"):
        m = re.match(r"### round \d+, build (\S+), seq (\d+)", line)
        if m:
            cur = (m.group(1), int(m.group(2)))
            if cur[0] not in order:
                order.append(cur[0])
            continue
        m = re.match(r"(attention \([^)]*\)|prism prefill \(total\)|prism estimate)\s+"
                     r"([\d.]+) ms", line)
        if m and cur:
            times[(cur[1], m.group(1), cur[0])].append(float(m.group(2)))
    return times, order


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    times, order = read(sys.argv[1])
    builds = sys.argv[2:] or order
    for seq in sorted({k[0] for k in times}):
        for stage in STAGES:
            cells = []
            for b in builds:
                t = times.get((seq, stage, b))
                if t:
                    rounds = " ".join(f"{x:g}" for x in t)
                    cells.append(f"{b} {statistics.median(t):.3f} [{rounds}]")
            if cells:
                print(f"{seq:>6} {stage:<24} " + " | ".join(cells))


if __name__ == "__main__":
    main()
