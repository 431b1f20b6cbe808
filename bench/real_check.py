#!/usr/bin/env python3
"""Checks `prism run --device gpu --input DIR --json` on real activations.

Each JSON line is one .qkv file (one model layer).  The GPU must select the
blocks the CPU reference selects and compute the same attention over them:

  mask     the prism-gpu mask differs from the reference's prism mask in at
           most --max-differ of the block-causal blocks (default 0.001:
           float sums on the GPU may flip an exact tie, nothing more)
  output   prism-gpu's error against dense attention equals the reference
           prism row's (same mask) up to bf16 rounding of the output:
           |mean difference| <= --tol and max <= reference max + 2 * tol
  density  equal to the reference's within 1e-6 (same mask)

Prints one line per file and exits 1 when any check fails.

    python3 bench/real_check.py real-smollm2-135m.json
"""
import argparse
import json
import sys


def check(row, max_differ, tol):
    m = {x["method"]: x for x in row["methods"]}
    if "prism-gpu" not in m:
        return ["no prism-gpu row (was --device gpu given?)"]
    gpu, ref = m["prism-gpu"], m["prism"]
    bad = []
    share = row["gpu_mask_differ"] / max(1, row["gpu_mask_compared"])
    if share > max_differ:
        bad.append(f"mask differs in {row['gpu_mask_differ']} of "
                   f"{row['gpu_mask_compared']} blocks")
    if abs(gpu["density"] - ref["density"]) > 1e-6 and share == 0:
        bad.append(f"density {gpu['density']:.6f} vs {ref['density']:.6f}")
    if abs(gpu["error_mean"] - ref["error_mean"]) > tol:
        bad.append(f"error mean {gpu['error_mean']:.4e} vs reference "
                   f"{ref['error_mean']:.4e}")
    if gpu["error_max"] > ref["error_max"] + 2 * tol:
        bad.append(f"error max {gpu['error_max']:.4e} vs reference "
                   f"{ref['error_max']:.4e}")
    return bad


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("json", nargs="+", help="JSON-lines output of prism run --json")
    ap.add_argument("--max-differ", type=float, default=0.001)
    ap.add_argument("--tol", type=float, default=5e-3)
    a = ap.parse_args(argv)
    failed = rows = 0
    for path in a.json:
        with open(path) as f:
            for line in f:
                if not line.strip():
                    continue
                row = json.loads(line)
                if row.get("dense"):
                    print(f"{row['input']}: layer {row['layer']} dense in the config")
                    continue
                rows += 1
                bad = check(row, a.max_differ, a.tol)
                failed += bool(bad)
                gpu = next((x for x in row["methods"] if x["method"] == "prism-gpu"), {})
                print(f"{row['input']} ({row['config']}, layer {row['layer']}): "
                      f"{'FAIL: ' + '; '.join(bad) if bad else 'ok'} "
                      f"[density {gpu.get('density', 0):.4f}, mask differs in "
                      f"{row.get('gpu_mask_differ', '?')} of "
                      f"{row.get('gpu_mask_compared', '?')}]")
    if not rows:
        print("no rows to check")
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
