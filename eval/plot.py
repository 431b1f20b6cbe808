"""Perplexity increase vs density, one panel per text, from results.json.

  python3 -m eval.plot eval/out/results.json [-o eval/out/ppl_vs_density.png]
"""
from __future__ import annotations

import argparse
import json
import os
import sys

MARKERS = {64: "o", 128: "s"}


def plot(res: dict, path: str):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    texts = list(res["meta"]["texts"])
    fig, axes = plt.subplots(1, len(texts), figsize=(6.5 * len(texts), 4.8),
                             squeeze=False)
    methods = [m for m in dict.fromkeys(r["method"] for r in res["rows"]) if m != "dense"]
    colors = {m: f"C{i}" for i, m in enumerate(methods)}
    for ax, name in zip(axes[0], texts):
        rows = [r for r in res["rows"] if r["text"] == name and r["method"] != "dense"
                and "error" not in r]
        for m in methods:
            for bs in sorted({r["block_size"] for r in rows if r["method"] == m}):
                pts = sorted((r["density"], r["ppl_delta_pct"]) for r in rows
                             if r["method"] == m and r["block_size"] == bs)
                if not pts:
                    continue
                xs, ys = zip(*pts)
                ax.plot(xs, ys, marker=MARKERS.get(bs, "^"), color=colors[m],
                        linestyle="-" if bs == 64 else "--",
                        label=f"{m} BS {bs}")
        dense = next(r for r in res["rows"] if r["text"] == name and r["method"] == "dense")
        t = res["meta"]["texts"][name]
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_title(f"{name}: {t['tokens_used']} tokens, dense ppl {dense['ppl']:.3f}")
        ax.set_xlabel("density (selected / block-causal blocks)")
        ax.set_ylabel("perplexity increase over dense (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    fig.suptitle("SmolLM2-135M-Instruct: perplexity increase vs density "
                 "(thresholds 0.90 / 0.95 / 0.98 along each line)", fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results")
    ap.add_argument("-o", "--output", default=None)
    a = ap.parse_args(argv)
    with open(a.results) as f:
        res = json.load(f)
    out = a.output or os.path.join(os.path.dirname(a.results), "ppl_vs_density.png")
    print(plot(res, out))


if __name__ == "__main__":
    sys.exit(main())
