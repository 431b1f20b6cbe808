#!/usr/bin/env python3
"""Writes the seed corpus of tests/fuzz/fuzz_api.c into tests/fuzz/api_corpus.

Each seed is a valid call in the input encoding documented at the top of
fuzz_api.c, so the fuzzer starts from inputs that reach the kernels and
mutates them into the edge cases.  Run it from anywhere; it rewrites the
files it owns and leaves other files of the directory alone.
"""
import os
import struct


def number(v):
    """The encoding of one number: small values in one byte, the rest as
    a tag 0xF0 + n - 1 and n little-endian bytes."""
    if 0 <= v < 0xC0:
        return bytes([v])
    raw = struct.pack("<q", v)
    return bytes([0xF0 + 7]) + raw


def seed(flags, modes, limits=(0, 0, 0), batch=(0, 0, 0, 0, 0),
         strides=(0,) * 12, mask=(0, 0), size=0, rng=1):
    out = bytes([flags, modes])
    for v in (*limits, *batch, *strides, *mask, size, rng):
        out += number(v)
    return out


CALLER_WS, CONFIG_B, RAGGED = 0x01, 0x02, 0x04
ESTIMATE, ATTENTION, PREFILL, ALL = 0x00, 0x08, 0x10, 0x18
OUR_WS, EXTRAS = 0x20, 0x40

SEEDS = {
    "estimate_default": seed(ESTIMATE, 0),
    "prefill_caller_workspace": seed(CALLER_WS | PREFILL | OUR_WS | EXTRAS, 0,
                                     limits=(2, 512, 512),
                                     batch=(2, 100, 160, 0, 0)),
    "attention_config_b": seed(CONFIG_B | ATTENTION | EXTRAS, 0,
                               batch=(1, 96, 96, 0, 0)),
    "ragged_all_three": seed(RAGGED | ALL | OUR_WS, 0, limits=(4, 256, 256),
                             batch=(3, 100, 120, 0, 0)),
    "prefill_config_b_strided": seed(CONFIG_B | PREFILL, 0,
                                     batch=(2, 64, 128, 0, 0),
                                     strides=(0, 128, 512, 0, 0, 0,
                                              0, 0, 0, 0, 0, 0)),
    "small_caller_workspace": seed(CALLER_WS | PREFILL | OUR_WS, 0,
                                   size=100),
}


def main():
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        "api_corpus")
    os.makedirs(here, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(here, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
