#!/usr/bin/env python3
"""Writes the seed inputs of the decoder fuzzer into a scratch directory (default $TMPDIR/memsim-fuzz-seeds).
Run once; libFuzzer then grows them and `-merge=1` keeps a coverage-minimal subset in corpus/, which is
committed (how it was made: native/README.md, "Fuzzing"):

    python native/tests/fuzz/make_corpus.py SEEDS
    fuzz_decode -max_total_time=600 -max_len=4096 -dict=native/tests/fuzz/fuzz_decode.dict GROWN SEEDS
    fuzz_decode -set_cover_merge=1 -use_counters=0 native/tests/fuzz/corpus GROWN SEEDS

Seeds are encodings made by memsim.codec of small tensors of every dtype, around the 64-element block and
vector-loop boundaries, at several densities, plus a few deliberately broken buffers. Each stays under 4 KiB
(the fuzzer's -max_len)."""
from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import numpy as np

import memsim.codec as codec

OUT = Path(sys.argv[1] if len(sys.argv) > 1 else Path(os.environ.get("TMPDIR", "/tmp")) / "memsim-fuzz-seeds")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(11)
    seeds: list[bytes] = []
    dtypes = [np.bool_, np.uint8, np.int8, np.int16, np.float16, np.int32, np.float32, np.int64, np.float64]
    for dt in dtypes:
        itemsize = np.dtype(dt).itemsize
        for n in (1, 63, 64, 65, 129, 200):
            if n * itemsize > 1600:
                continue
            for density in (0.0, 0.5, 1.0):
                raw = rng.integers(1, 255, size=n * itemsize, dtype=np.uint8).view(
                    {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[itemsize])
                raw[rng.random(n) >= density] = 0
                x = raw.view(dt) if dt is not np.bool_ else (raw & 1).astype(np.bool_)
                seeds.append(bytes(codec.encode(x)))
    seeds.append(bytes(codec.encode(np.zeros((2, 0, 3), np.float32))))
    seeds.append(bytes(codec.encode(np.float64(-0.0))))
    seeds.append(bytes(codec.encode(np.ones((1, 2, 1, 2, 1, 2, 1, 2), np.int16))))
    good = seeds[len(seeds) // 2]
    seeds += [good[:63], good[:-1], good + b"\0", b"MSBM\x01", b""]
    for s in seeds:
        (OUT / hashlib.sha1(s).hexdigest()[:16]).write_bytes(s)
    print(f"wrote {len(seeds)} seeds to {OUT}")


if __name__ == "__main__":
    main()
