#!/usr/bin/env python3
"""Turns the output folder of a GPU benchmark run (bench/gpu_run.sh writes
gpu.txt, prism-<SEQ>[-<tag>].json and sdpa.json to $OUT) into the committed
results: one merged JSON with Prism-vs-SDPA ratios, a log-log plot, and a
markdown table on stdout.  It exists so every run is recorded the same way
instead of being merged by hand.

A chunked-prefill run (prism-chunk.json) goes into the JSON as "chunk" and
gets a line under the table; a short-rows run (gpu_run.sh rows:
rows-prism-S.json, rows-sdpa-S.json) goes in as "rows", with
bench/rows_summary.py's table under it.

Usage:
  python3 bench/collect.py --from DIR [--card-tag h100] [--date 2026-11-28]
                           [--out bench/results]
Writes <out>/<tag>-<date>.json and .png (or -2, -3, ... if those exist; the
names are printed).  The tag defaults to the GPU model ("h100"), the date to
today.  A ratio is peer_ms / prism_ms: above 1 means Prism is faster.
Needs matplotlib (python3 -m pip install matplotlib).
"""
import argparse
import csv
import datetime
import glob
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rows_summary  # noqa: E402

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHORT = {"prism estimate": "estimate", "attention (prism mask)": "mask",
         "prism prefill (total)": "prefill", "attention (dense)": "dense"}
PEERS = {"sdpa-flash": "flash", "sdpa-cudnn": "cudnn"}
RATIO_STAGES = ("dense", "mask", "prefill")


def short_name(stage):
    """'attention (random 10%) [sm80]' -> 'random10-sm80'."""
    m = re.fullmatch(r"(.*?)(?: \[(.+)\])?", stage)
    base, tag = m.group(1), m.group(2)
    r = re.fullmatch(r"attention \(random (\d+)%\)", base)
    name = f"random{r.group(1)}" if r else SHORT.get(base, base)
    return f"{name}-{tag}" if tag else name


def read_gpu(folder):
    path = os.path.join(folder, "gpu.txt")
    if not os.path.exists(path):
        return {"card": "unknown", "driver": "unknown"}
    with open(path) as f:
        rows = [[c.strip() for c in r] for r in csv.reader(f) if r]
    vals = rows[1] if len(rows) > 1 else rows[0]  # first GPU after the header
    vals += [""] * (4 - len(vals))
    info = {"card": vals[0], "driver": vals[1]}
    if vals[2] or vals[3]:
        info["clocks"] = f"sm {vals[2]}, mem {vals[3]}"
    return info


def card_tag(card):
    m = re.search(r"\b([A-Z]{1,2}\d{2,4}[A-Z]?)\b", card)
    if m:
        return m.group(1).lower()
    slug = re.sub(r"[^a-z0-9]+", "-", card.lower().replace("nvidia", ""))
    return slug.strip("-") or "gpu"


def read_prism(folder):
    """{seq: [stages]}, tagged files' stages renamed '<stage> [<tag>]'."""
    prism, meta = {}, []
    found = []
    for path in glob.glob(os.path.join(folder, "prism-*.json")):
        m = re.fullmatch(r"prism-(\d+)(?:-(.+))?\.json", os.path.basename(path))
        if m:  # untagged files first, so their stages lead each list
            found.append((m.group(2) or "", int(m.group(1)), path, m))
    for _, _, path, m in sorted(found):
        with open(path) as f:
            doc = json.load(f)
        seq, tag = int(doc.get("sq", m.group(1))), m.group(2)
        doc.setdefault("workload", "iid")
        meta.append(doc)
        for st in doc["stages"]:
            st = dict(st)
            if tag:
                st["stage"] = f"{st['stage']} [{tag}]"
            prism.setdefault(seq, []).append(st)
    return prism, meta


def read_chunk(folder):
    """prism-chunk.json (gpu_run.sh's chunked prefill: Sq < Sk on a
    tensor-parallel shard) as it is, or None.  Kept apart from the Sq = Sk
    series: other shapes, no SDPA peer."""
    path = os.path.join(folder, "prism-chunk.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def chunk_line(doc):
    stages = {st["stage"]: st for st in doc.get("stages", [])}
    parts = []
    for name in ("attention (dense)", "attention (prism mask)",
                 "prism prefill (total)"):
        st = stages.get(name)
        if st:
            parts.append(f"{name} {st['ms']:.3f} ms ({st['tflops']:.0f} TFLOP/s)")
    return (f"chunked prefill, {doc.get('config', '?')} (Hq={doc.get('hq', '?')} "
            f"Hkv={doc.get('hkv', '?')}), Sq={doc.get('sq', '?')} "
            f"Sk={doc.get('sk', '?')}: " + "; ".join(parts))


def read_sdpa(folder):
    path = os.path.join(folder, "sdpa.json")
    if not os.path.exists(path):
        print(f"warning: no {path}; no SDPA baseline", file=sys.stderr)
        return [], {}
    with open(path) as f:
        doc = json.load(f)
    # sdpa_baseline.py writes a bare list of rows; a later version may wrap
    # them as {"args": {...}, "results": [...]}.
    rows = doc["results"] if isinstance(doc, dict) else doc
    args = doc.get("args", {}) if isinstance(doc, dict) else {}
    for r in rows:  # sdpa_baseline.py writes "method"; accept "backend" too
        r.setdefault("method", r.get("backend"))
    return rows, args


def config_shape(name):
    """Heads, head dim and dtype from configs/<name>.yaml, if it is there."""
    path = os.path.join(REPO, "configs", f"{name}.yaml")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        text = f.read()
    get = lambda key: (re.search(rf"^\s*{key}:\s*(\S+)", text, re.M) or [0, None])[1]
    return get("q_heads"), get("kv_heads"), get("head_dim"), get("dtype")


def pick(doc, *key_sets):
    """The values of the first key set that doc holds completely, else None."""
    for keys in key_sets:
        if all(k in doc for k in keys):
            return tuple(doc[k] for k in keys)
    return None


def shapes_string(meta, sdpa_args):
    """'B=1 Hq=32 Hkv=8 D=128 bf16 causal, mixed workload' from the inputs:
    the keys `prism bench` writes, else sdpa.json's args, else the config."""
    first = meta[0] if meta else {}
    shape = (pick(first, ("hq", "hkv", "d", "dtype"),
                  ("q_heads", "kv_heads", "head_dim", "dtype"))
             or pick(sdpa_args, ("heads", "kv_heads", "dim", "dtype"))
             or config_shape(first.get("config", "")))
    if shape and all(shape):
        s = "B=1 Hq={} Hkv={} D={} {} causal".format(*shape)
    else:
        s = f"{first.get('config', 'unknown config')}, causal"
    workloads = sorted({d["workload"] for d in meta})
    if workloads:
        s += f", {'/'.join(workloads)} " + (
            "inputs" if workloads == ["iid"] else "workload")
    return s


def series(prism, sdpa):
    """{method: {seq: ms}} for every Prism stage and SDPA backend."""
    out = {}
    for seq in sorted(prism):
        for st in prism[seq]:
            out.setdefault(short_name(st["stage"]), {})[seq] = st["ms"]
    for r in sdpa:
        out.setdefault(r["method"], {})[int(r["seq"])] = r["ms"]
    return out


def ratios(ser, seqs):
    out = {}
    for seq in seqs:
        row = {}
        for name, ms in ser.items():
            base = name.split("-")[0]
            if base not in RATIO_STAGES or seq not in ms or not ms[seq]:
                continue
            for peer, short in PEERS.items():
                if seq in ser.get(peer, {}):
                    key = f"{name}_vs_{short}"
                    row[key] = round(ser[peer][seq] / ms[seq], 4)
        out[str(seq)] = row
    return out


def free_stem(out, tag, date):
    stem, n = f"{tag}-{date}", 1
    while any(os.path.exists(os.path.join(out, stem + e)) for e in (".json", ".png")):
        n += 1
        stem = f"{tag}-{date}-{n}"
    return os.path.join(out, stem)


def seq_label(seq):
    return f"{seq // 1024}K" if seq % 1024 == 0 else str(seq)


def plot(ser, seqs, title, path):
    """One colour per stage; a tagged run's series is dotted in its colour."""
    fig, ax = plt.subplots(figsize=(9, 6))
    colours = {"sdpa-flash": "black", "sdpa-cudnn": "grey"}
    for name, pts in ser.items():
        xs = [s for s in seqs if s in pts]
        peer, base = name in PEERS, name.split("-")[0]
        tagged = not peer and base != name
        colour = colours.setdefault(name if peer else base, f"C{len(colours) - 2}")
        ax.plot(xs, [pts[s] for s in xs], color=colour,
                marker="s" if peer else "^" if tagged else "o",
                linestyle="--" if peer else ":" if tagged else "-",
                label=name if peer else f"prism {name}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(seqs, [seq_label(s) for s in seqs])
    ax.minorticks_off()
    ax.set_xlabel("sequence length (Sq = Sk)")
    ax.set_ylabel("time (ms)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.4)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def table(ser, rat, seqs):
    fmt = lambda v: "-" if v is None else f"{v:.3f}"
    head = ["seq"] + list(ser) + ["dense/cuDNN", "dense/flash", "prefill/flash"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in seqs:
        r = rat[str(s)]
        cells = [str(s)] + [fmt(ser[m].get(s)) for m in ser]
        cells += [fmt(r.get(k)) for k in
                  ("dense_vs_cudnn", "dense_vs_flash", "prefill_vs_flash")]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("\nms per method; ratios are peer ms / Prism ms (>1: Prism faster).")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--from", dest="src", required=True,
                    help="output folder of bench/gpu_run.sh")
    ap.add_argument("--card-tag", help="file name prefix (default: from gpu.txt)")
    ap.add_argument("--date", default=datetime.date.today().isoformat())
    ap.add_argument("--out", default=os.path.join(REPO, "bench", "results"))
    args = ap.parse_args()

    gpu = read_gpu(args.src)
    prism, meta = read_prism(args.src)
    sdpa, sdpa_args = read_sdpa(args.src)
    if not prism and not sdpa:
        sys.exit(f"no prism-*.json or sdpa.json in {args.src}")
    seqs = sorted(set(prism) | {int(r["seq"]) for r in sdpa})
    ser = series(prism, sdpa)
    rat = ratios(ser, seqs)
    shapes = shapes_string(meta, sdpa_args)
    result = dict(gpu, date=args.date, shapes=shapes,
                  prism={str(s): prism[s] for s in seqs if s in prism},
                  sdpa=sdpa, ratios=rat)
    chunk = read_chunk(args.src)
    if chunk:
        result["chunk"] = chunk
    rows_prism, rows_sdpa = rows_summary.load(args.src)
    if rows_prism:
        result["rows"] = [
            dict({"seq": s, "batch": b, "prism_ms": ms, "prism_tflops": tf},
                 **{f"{m.replace('-', '_')}_ms": rows_sdpa[(m, s)][0]
                    for m in ("sdpa-cudnn", "sdpa-flash") if (m, s) in rows_sdpa})
            for s, (b, ms, tf) in sorted(rows_prism.items())]

    os.makedirs(args.out, exist_ok=True)
    stem = free_stem(args.out, args.card_tag or card_tag(gpu["card"]), args.date)
    with open(stem + ".json", "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    plot(ser, seqs, f"{gpu['card']}: {shapes}", stem + ".png")
    print(f"wrote {stem}.json and {stem}.png\n")
    print(table(ser, rat, seqs))
    if chunk:
        print("\n" + chunk_line(chunk))
    if rows_prism:
        print()
        rows_summary.main([args.src])
    return 0


if __name__ == "__main__":
    sys.exit(main())
