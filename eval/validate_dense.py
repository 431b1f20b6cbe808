"""Validates the dense path of eval/model.py.

1. Perplexity of the dense forward on each text (up to --max-tokens).
2. With transformers installed (eval/requirements-validate.txt): an
   independent forward, transformers' LlamaForCausalLM loaded by its own
   GGUF reader (its own dequantization and Q/K un-permutation), on the first
   --compare-tokens tokens: logits difference, top-1 agreement, perplexity.
   Also compares the two tokenizers (transformers' GGUF conversion leaves
   out the digit split of llama.cpp's "smollm" pre-tokenizer, so they differ
   around digits; the forward comparison feeds both models the same ids).

  python3 -m eval.validate_dense --max-tokens 8192 --out eval/out/validate.json
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "eval"

from eval import model as MD  # noqa: E402
from eval import texts as TX  # noqa: E402


def ppl_of(logits, ids, chunk=1024):
    n = ids.shape[0] - 1
    nll = 0.0
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        nll += F.cross_entropy(logits[a:b].float(), ids[a + 1:b + 1].to(logits.device),
                               reduction="sum").item()
    return math.exp(nll / n)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--texts", nargs="+", default=TX.DEFAULT_TEXTS)
    ap.add_argument("--text-dir", default=None)
    ap.add_argument("--max-tokens", type=int, default=8192)
    ap.add_argument("--compare-tokens", type=int, default=512,
                    help="tokens for the transformers comparison (0: skip)")
    ap.add_argument("--skip-ppl", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", default=None, help="JSON file for the figures")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    net, tok, g = MD.load(a.device)
    res = {"device": a.device, "torch": torch.__version__, "texts": {}}
    for name in a.texts:
        text = TX.load(name, a.text_dir)
        ids_all = tok.encode(text).ids
        r = res["texts"].setdefault(name, {"tokens_in_text": len(ids_all),
                                           "sha256": TX.sha256(text),
                                           "roundtrip": tok.decode(ids_all) == text})
        if not a.skip_ppl:
            ids = torch.tensor(ids_all[:a.max_tokens])
            t0 = time.time()
            logits = net.forward(ids)
            r["ppl"] = ppl_of(logits, ids)
            r["ppl_tokens"] = ids.shape[0]
            r["top1_acc"] = (logits[:-1].argmax(-1).cpu() == ids[1:]).float().mean().item()
            r["seconds"] = round(time.time() - t0, 1)
            del logits
            print(f"{name}: dense ppl {r['ppl']:.4f} on {r['ppl_tokens']} tokens "
                  f"({r['seconds']} s)", flush=True)

    if a.compare_tokens:
        try:
            from transformers import AutoTokenizer, LlamaForCausalLM
        except ImportError:
            print("transformers not installed: comparison skipped")
            res["transformers"] = None
        else:
            import transformers
            d, f = os.path.split(g.path)
            try:
                htok = AutoTokenizer.from_pretrained(d, gguf_file=f)
                hm = LlamaForCausalLM.from_pretrained(d, gguf_file=f,
                                                      dtype=torch.float32).eval().to(a.device)
            except Exception as e:  # e.g. accelerate missing
                print(f"transformers could not load the GGUF ({e}): comparison skipped")
                res["transformers"] = {"error": str(e)}
                a.compare_tokens = 0
            cmp = {"version": transformers.__version__, "texts": {}}
            for name in (a.texts if a.compare_tokens else []):
                text = TX.load(name, a.text_dir)
                ours = tok.encode(text).ids
                theirs = htok(text, add_special_tokens=False)["input_ids"]
                ids = torch.tensor(ours[:a.compare_tokens])
                lg = net.forward(ids)
                with torch.no_grad():
                    hl = hm(ids[None].to(a.device)).logits[0].float()
                c = {"tokens": ids.shape[0],
                     "max_abs_logit_diff": (lg - hl).abs().max().item(),
                     "top1_agree": (lg.argmax(-1) == hl.argmax(-1)).float().mean().item(),
                     "ppl_ours": ppl_of(lg, ids), "ppl_transformers": ppl_of(hl, ids),
                     "tokenizer_equal": ours == theirs,
                     "tokens_ours": len(ours), "tokens_transformers": len(theirs)}
                cmp["texts"][name] = c
                print(f"{name}: vs transformers on {c['tokens']} tokens: max |dlogit| "
                      f"{c['max_abs_logit_diff']:.2e}, top-1 agree {c['top1_agree']:.4f}, "
                      f"ppl {c['ppl_ours']:.4f} vs {c['ppl_transformers']:.4f}; tokenizers "
                      f"{'equal' if c['tokenizer_equal'] else 'differ'} "
                      f"({c['tokens_ours']} vs {c['tokens_transformers']} tokens)", flush=True)
            if a.compare_tokens:
                res["transformers"] = cmp
    if a.out:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        with open(a.out, "w") as fh:
            json.dump(res, fh, indent=1)
    return res


if __name__ == "__main__":
    main()
