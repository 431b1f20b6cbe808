"""Markdown tables from sweep.py's JSON (the tables of docs/fidelity.md).

    python3 -m eval.sweep_report eval/out/sweep-pyref-2k.json [--text pyref]

Prints, per text and length: the settings table (Δppl %, KL, top-1
agreement, density, and the density of the sparse layers only), the
per-layer diagnostics when the JSON has them, and the single-layer
ablations.
"""
from __future__ import annotations

import argparse
import json


def settings_table(res, key):
    text, tokens = key.split(":")
    rows = [r for r in res["runs"] if r["text"] == text and str(r["tokens"]) == tokens]
    out = [f"| setting | mode | Δppl % | KL | top-1 | density | sparse-layer density |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| `{r['spec']}` | {r['mode']} | {r['ppl_delta_pct']:+.2f} | "
                   f"{r['kl']:.4f} | {r['top1_agree']:.3f} | {r['density']:.3f} | "
                   f"{r['sparse_density']:.3f} |")
    return out


def mean(x):
    return sum(x) / len(x)


def layers_table(layers):
    out = ["| layer | density | recall: prism | high band | low band | oracle | "
           "sink+recent | error: prism | oracle | sink+recent | blocks for 95% |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for e in layers:
        f = lambda m, k: mean(e[m][k])  # noqa: E731
        out.append(
            f"| {e['layer']} | {f('prism', 'density'):.2f} | {f('prism', 'recall'):.3f} | "
            f"{f('high_only', 'recall'):.3f} | {f('low_only', 'recall'):.3f} | "
            f"{f('oracle', 'recall'):.3f} | {f('sink_recent', 'recall'):.3f} | "
            f"{f('prism', 'rel_err'):.3f} | {f('oracle', 'rel_err'):.3f} | "
            f"{f('sink_recent', 'rel_err'):.3f} | {mean(e['blocks_for_95']):.2f} |")
    return out


def ablation_table(abl):
    out = ["| layer | Δppl % | KL | top-1 | density |", "|---|---|---|---|---|"]
    for r in abl:
        out.append(f"| {r['layer']} | {r['ppl_delta_pct']:+.2f} | {r['kl']:.4f} | "
                   f"{r['top1_agree']:.3f} | {r['density']:.3f} |")
    return out


def report(res, text=None):
    out = []
    keys = sorted({f"{r['text']}:{r['tokens']}" for r in res["runs"]} |
                  set(res.get("analysis", {})))
    for key in keys:
        if text and not key.startswith(text + ":"):
            continue
        d = res["dense"].get(key, {})
        out += [f"## {key} (dense perplexity {d.get('ppl', float('nan')):.4f})", ""]
        out += settings_table(res, key) + [""]
        an = res.get("analysis", {}).get(key, {})
        if "layers" in an:
            out += ["Per layer, teacher-forced (bs=64, thr=0.95):", ""]
            out += layers_table(an["layers"]) + [""]
        for spec, abl in an.get("ablation", {}).items():
            out += [f"Single-layer ablation of `{spec}`:", ""]
            out += ablation_table(abl) + [""]
    return "\n".join(out) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("json", nargs="+")
    ap.add_argument("--text", default=None)
    a = ap.parse_args(argv)
    for p in a.json:
        with open(p) as f:
            print(report(json.load(f), a.text), end="")


if __name__ == "__main__":
    main()
