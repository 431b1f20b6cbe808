"""Fidelity sweep: whole-model runs of per-layer selection settings.

run_eval.py compares methods at one global setting.  This runner asks the
next question, where the loss is and what removes it: each setting (see
settings.py for the spec syntax) runs the whole model with its per-layer
selection, and is scored against the dense run like run_eval.py does
(perplexity change, KL(dense || setting), top-1 agreement, density).

Density counts every layer: a dense layer is density 1.0, so settings that
make some layers dense pay for it in the number reported.

Modes, for comparing a setting with the baselines at its own budget:
  select       the setting's selection (prism_ref.py, q and k in bf16)
  sink-recent  block 0 and the most recent blocks, as many per row and head
               as the setting keeps on the same q, k
  oracle       the same counts chosen by exact attention mass

Attention is float32 torch over the mask in every mode (as `prism-sel` in
run_eval.py), so modes differ only in the blocks they keep.

Also, with --analysis, the teacher-forced per-layer / per-head diagnostics
and single-layer ablations of layer_analysis.py.

Results accumulate in one JSON file (--out); a (text, tokens, spec, mode)
already there is skipped, so an interrupted sweep resumes.

    python3 -m eval.sweep --text pyref --max-tokens 2048 --threads 2 \\
        --out eval/out/sweep.json --settings "bs=64,thr=0.95" \\
        "bs=64,thr=0.95;3-10:thr=0.99" --modes select sink-recent
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "eval"

from eval import methods as M  # noqa: E402
from eval import model as MD  # noqa: E402
from eval import prism_ref  # noqa: E402
from eval import settings as ST  # noqa: E402
from eval import texts as TX  # noqa: E402
from eval.run_eval import device_name, log, logprobs, score  # noqa: E402

MODES = ("select", "sink-recent", "oracle")


class SettingMethod(M.Method):
    """A per-layer setting as a model attention callable."""

    def __init__(self, sels, mode="select", track_error=False):
        self.sels, self.mode = sels, mode
        super().__init__(sels[0].bs, sels[0].thr_high, track_error)

    def mask(self, q, k, layer):
        s = self.sels[layer]
        bm = s.select(q, k)
        if self.mode == "select":
            return bm
        counts = bm.sum(-1)
        nk = bm.shape[-1]
        if self.mode == "sink-recent":
            return M.sink_recent_mask(counts, nk)
        mass = M.block_attention_mass(q, k, s.bs)
        allowed = prism_ref.block_causal(bm.shape[1], nk, q.device).expand_as(mass)
        return M.top_count_mask(mass, counts, allowed)

    def attend(self, q, k, v, layer):
        s = self.sels[layer]
        if s.dense:
            return MD.dense_attention(q, k, v), None
        bm = self.mask(q, k, layer)
        return M.block_sparse_attention(q, k, v, bm, s.bs).to(q.dtype), bm


def load_results(path):
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return {"meta": {}, "dense": {}, "runs": [], "analysis": {}}


def save_results(res, path):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(res, f, indent=1)
    os.replace(tmp, path)


def done(res, text, tokens, spec, mode):
    return any(r["text"] == text and r["tokens"] == tokens and r["spec"] == spec
               and r["mode"] == mode for r in res["runs"])


def run_setting(net, ids, dense_lp, base_ppl, sels, mode):
    m = SettingMethod(sels, mode)
    t0 = time.time()
    logits = net.forward(ids, m)
    row = score(logits, dense_lp, ids)
    del logits
    sm = m.summary()
    sparse = [d for d, s in zip(sm["layer_density"], sels) if not s.dense]
    row.update(density=sm["density"], layer_density=sm["layer_density"],
               sparse_density=sum(sparse) / len(sparse) if sparse else 1.0,
               ppl_delta_pct=100.0 * (row["ppl"] - base_ppl) / base_ppl,
               seconds=round(time.time() - t0, 1))
    return row


def dense_reference(net, ids, keep_inputs):
    """Dense logprobs, and (keep_inputs) every layer's q, k, v and input
    hidden states for the teacher-forced analysis."""
    qkv, xs = {}, {}

    def rec(q, k, v, layer):
        if keep_inputs:
            qkv[layer] = (q, k, v)
        return MD.dense_attention(q, k, v)

    def on_layer(li, x):
        if keep_inputs:
            xs[li] = x
    logits = net.forward(ids, rec, on_layer=on_layer)
    lp = logprobs(logits)
    return lp, qkv, xs


def main(argv=None, preloaded=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--text", default="pyref", help=f"one of {sorted(TX.SOURCES)}")
    ap.add_argument("--text-dir", default=None)
    ap.add_argument("--max-tokens", type=int, default=2048)
    ap.add_argument("--settings", nargs="*", default=[],
                    help="setting specs (settings.py); 'config:PATH' resolves a YAML "
                         "config through the library")
    ap.add_argument("--modes", nargs="+", default=["select"], choices=MODES)
    ap.add_argument("--analysis", action="store_true",
                    help="per-layer / per-head teacher-forced diagnostics")
    ap.add_argument("--ablation", nargs="*", default=[], metavar="SPEC",
                    help="single-layer ablations: each SPEC in one layer, dense elsewhere")
    ap.add_argument("--ablation-layers", type=int, nargs="*", default=None,
                    help="the layers to ablate (default: every layer)")
    ap.add_argument("--screen", nargs="*", default=[], metavar="SPEC",
                    help="teacher-forced per-layer error and density of each SPEC")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--gguf", default=None)
    ap.add_argument("--out", default="eval/out/sweep.json")
    a = ap.parse_args(argv)

    torch.set_num_threads(a.threads)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    res = load_results(a.out)
    g = preloaded or MD.GGUFModel(a.gguf)
    dev = torch.device(a.device)
    net = MD.SmolLM2(g, dev)
    n_layers = g.config.n_layers
    tok = MD.build_tokenizer(g)
    text = TX.load(a.text, a.text_dir)
    ids = torch.tensor(tok.encode(text).ids[:a.max_tokens], dtype=torch.long)
    S = ids.shape[0]
    key = f"{a.text}:{S}"
    res["meta"].update(model=os.path.basename(g.path), torch=torch.__version__,
                       device_name=device_name(dev),
                       threads=a.threads)
    res["meta"].setdefault("texts", {})[a.text] = {
        "source": TX.SOURCES.get(a.text, a.text), "sha256": TX.sha256(text)}

    need_inputs = bool(a.analysis or a.ablation or a.screen)
    t0 = time.time()
    dense_lp, qkv, xs = dense_reference(net, ids, need_inputs)
    base = score(dense_lp, dense_lp, ids)
    res["dense"][key] = {"ppl": base["ppl"], "top1_acc_targets": None,
                         "seconds": round(time.time() - t0, 1)}
    log(f"[{key}] dense ppl {base['ppl']:.4f} ({time.time() - t0:.0f} s)")
    save_results(res, a.out)

    for spec in a.settings:
        sels = (ST.from_config(spec[7:], n_layers) if spec.startswith("config:")
                else ST.parse(spec, n_layers))
        for mode in a.modes:
            if done(res, a.text, S, spec, mode):
                log(f"  skip {spec} [{mode}] (in {a.out})")
                continue
            row = run_setting(net, ids, dense_lp, base["ppl"], sels, mode)
            row.update(text=a.text, tokens=S, spec=spec, mode=mode,
                       setting=ST.describe(sels))
            res["runs"].append(row)
            save_results(res, a.out)
            log(f"  {spec} [{mode}]: ppl {row['ppl']:.4f} ({row['ppl_delta_pct']:+.2f}%) "
                f"kl {row['kl']:.4f} top1 {row['top1_agree']:.4f} "
                f"density {row['density']:.3f} ({row['seconds']} s)")

    if need_inputs:
        from eval import layer_analysis as LA
        an = res["analysis"].setdefault(key, {})
        if a.analysis:
            an["layers"] = LA.diagnose(qkv, ST.parse("bs=64,thr=0.95", n_layers))
            save_results(res, a.out)
        for spec in a.screen:
            an.setdefault("screen", {})[spec] = LA.screen(qkv, ST.parse(spec, n_layers))
            save_results(res, a.out)
            log(f"  screened {spec}")
        for spec in a.ablation:
            got = LA.ablate(net, ids, xs, dense_lp, base["ppl"], ST.parse(spec, n_layers),
                            SettingMethod, a.ablation_layers)
            old = {r["layer"]: r for r in an.setdefault("ablation", {}).get(spec, [])}
            old.update({r["layer"]: r for r in got})
            an["ablation"][spec] = [old[k] for k in sorted(old)]
            save_results(res, a.out)
    log(f"wrote {a.out}")
    return res


if __name__ == "__main__":
    main()
