#!/usr/bin/env python3
"""Dense causal attention against row length: the table of gpu_run.sh's
`rows` mode (rows-prism-S.json from `prism bench --batch`, rows-sdpa-S.json
from sdpa_baseline.py --batch, same run, same card).

    python3 bench/rows_summary.py DIR

Why: a query tile's row of key tiles is what a block-sparse mask shortens
(at 8K a 10% mask leaves ~5 tiles a row), and B short causal sequences
have rows just as short with every block dense, so the peers can run the
same shape.  Each method's TFLOP/s is also given as a share of its own on
the longest sequence: how much each pays per row.  A causal sequence of S
tokens in 128-token tiles has (S / 128 + 1) / 2 tiles a row on average.
"""
import glob
import json
import os
import re
import sys


def load(folder):
    prism, sdpa = {}, {}
    for path in glob.glob(os.path.join(folder, "rows-prism-*.json")):
        doc = json.load(open(path))
        dense = [st for st in doc["stages"] if st["stage"] == "attention (dense)"]
        if dense:
            prism[doc["sk"]] = (doc.get("batch", 1), dense[0]["ms"], dense[0]["tflops"])
    for path in glob.glob(os.path.join(folder, "rows-sdpa-*.json")):
        for row in json.load(open(path)):
            sdpa[(row["method"], row["seq"])] = (row["ms"], row["tflops"])
    return prism, sdpa


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.exit(__doc__)
    prism, sdpa = load(argv[0])
    if not prism:
        sys.exit(f"no rows-prism-*.json in {argv[0]}")
    seqs = sorted(prism)
    top = seqs[-1]
    base = {"prism": prism[top][2]}
    for m in ("sdpa-cudnn", "sdpa-flash"):
        if (m, top) in sdpa:
            base[m] = sdpa[(m, top)][1]
    print(f"dense causal, B sequences of S tokens; share = TFLOP/s over the "
          f"method's own at S = {top}")
    print(f"{'S':>6} {'B':>4} {'tiles/row':>9} | {'Prism ms':>9} {'TF':>6} {'share':>5} | "
          f"{'cuDNN ms':>9} {'TF':>6} {'share':>5} | {'FA2 ms':>9} {'TF':>6} {'share':>5} | "
          f"{'vs cuDNN':>8}")
    for s in seqs:
        b, ms, tf = prism[s]
        cells = [f"{s:6d} {b:4d} {(s / 128 + 1) / 2:9.1f}",
                 f"{ms:9.3f} {tf:6.1f} {tf / base['prism']:5.2f}"]
        for m in ("sdpa-cudnn", "sdpa-flash"):
            if (m, s) in sdpa and m in base:
                mms, mtf = sdpa[(m, s)]
                cells.append(f"{mms:9.3f} {mtf:6.1f} {mtf / base[m]:5.2f}")
            else:
                cells.append(f"{'-':>9} {'-':>6} {'-':>5}")
        ratio = (f"{sdpa[('sdpa-cudnn', s)][0] / ms:7.2f}x"
                 if ("sdpa-cudnn", s) in sdpa else f"{'-':>8}")
        print(" | ".join(cells) + " | " + ratio)
    return 0


if __name__ == "__main__":
    sys.exit(main())
