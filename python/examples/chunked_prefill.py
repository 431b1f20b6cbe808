"""A chunked prefill over a paged KV cache, as a serving engine runs it.

One prompt of 512 tokens is prefilled in chunks of 128: for each chunk
the engine writes the chunk's K and V into the sequence's pages (here in
the vLLM layout, [num_pages, page_size, Hkv, D]), then calls Prism with
the chunk's queries, the page pools and the page table; the chunk's
queries attend to the cached prefix and to themselves.  A pooled-key
cache keeps each full key block's pooled summary, so later chunks do not
pool the prefix again.  With calibration off the chunks give exactly the
one-shot prefill's output (calibration adapts to each call's queries).

Runs on the CPU with small sizes:  python examples/chunked_prefill.py
"""

import torch

import prism_attn

HEAD_DIM, Q_HEADS, KV_HEADS, BLOCK = 64, 4, 2, 32
PAGE_SIZE = 2 * BLOCK          # a multiple of the config's block_size
PROMPT, CHUNK = 512, 128       # chunks of whole blocks
NUM_PAGES = 32                 # the engine's pool (more than one prompt uses)


def main(device="cpu"):
    config = {"name": "example", "dtype": "bf16",
              "model": {"head_dim": HEAD_DIM, "q_heads": Q_HEADS,
                        "kv_heads": KV_HEADS},
              "rope": {"layout": "half", "theta": 10000.0},
              "prism": {"block_size": BLOCK, "calibrate": False,
                        "thresholds": {"high": 0.8, "low": 0.8}}}
    kern = prism_attn.kernel(config, device)

    g = torch.Generator().manual_seed(0)
    dt = torch.bfloat16
    # the prompt's projections (a model's layer would compute these): a
    # shared direction per head and a few strong keys, so that attention
    # concentrates and the selection is sparse
    base = torch.randn(1, KV_HEADS, 1, 1, HEAD_DIM, generator=g)
    noise = torch.randn(1, KV_HEADS, Q_HEADS // KV_HEADS, PROMPT, HEAD_DIM,
                        generator=g)
    q = (2 * base + noise).view(1, Q_HEADS, PROMPT, HEAD_DIM).to(dt)
    k = 2 * base[:, :, 0] + torch.randn(1, KV_HEADS, PROMPT, HEAD_DIM,
                                         generator=g)
    k[:, :, torch.randint(0, PROMPT, (6,), generator=g)] *= 4
    k = k.to(dt)
    v = torch.randn(1, KV_HEADS, PROMPT, HEAD_DIM, generator=g).to(dt)
    q, k, v = q.to(device), k.to(device), v.to(device)

    # the engine's paged cache and the pages it gave this sequence
    shape = (NUM_PAGES, PAGE_SIZE, KV_HEADS, HEAD_DIM)
    k_cache = torch.zeros(shape, dtype=dt, device=device)
    v_cache = torch.zeros(shape, dtype=dt, device=device)
    pages = torch.randperm(NUM_PAGES, generator=g)[:PROMPT // PAGE_SIZE]
    page_table = pages.to(torch.int32).view(1, -1).to(device)
    pooled = kern.pooled_keys_buffer(NUM_PAGES, PAGE_SIZE)

    out = torch.empty_like(q)
    for start in range(0, PROMPT, CHUNK):
        end = start + CHUNK
        # write the chunk's K and V into its pages (token t: row t % size
        # of page page_table[0, t // size])
        t = torch.arange(start, end, device=device)
        rows = page_table[0, t // PAGE_SIZE].long(), t % PAGE_SIZE
        k_cache[rows] = k[0, :, start:end].transpose(0, 1)
        v_cache[rows] = v[0, :, start:end].transpose(0, 1)
        # the chunk's queries over the prefix and the chunk: end keys
        o, mask = kern.prefill(q[:, :, start:end], k_cache, v_cache,
                               page_table=page_table, seqlens_k=end,
                               kv_layout="nhd", pooled_keys=pooled,
                               return_mask=True)
        out[:, :, start:end] = o
        print(f"chunk [{start:3d}, {end:3d}): {end:3d} keys, "
              f"density {mask.density():.2f}")

    one_shot = kern.prefill(q, k, v)
    if device == "cpu":  # the CPU backend is exact whatever the chunking
        assert torch.equal(out, one_shot), "chunks differ from the one-shot prefill"
    else:  # on a GPU the kernels' tiles differ by chunk: bf16 rounding
        err = float((out.float() - one_shot.float()).abs().max())
        assert err < 2e-2, f"chunks differ from the one-shot prefill by {err}"
    print("chunked prefill over the paged cache == one-shot prefill")


if __name__ == "__main__":
    main()
