"""The decoder never trusts its input: truncated, bit-flipped and hostile buffers raise ValueError with a
reason, or decode to a tensor of the shape the (valid) header states. Never a crash or an out-of-bounds
access (run under ASan too, see native/README.md). Every test runs once for each kernel family this CPU has
(the autouse ``isa`` fixture); the coverage-guided fuzzer is native/tests/fuzz (test_codec_native.py)."""
from __future__ import annotations

import struct

import numpy as np
import pytest
import torch

import memsim.codec as codec

ISAS = [isa.value for isa in codec.available_isas()]


@pytest.fixture(autouse=True, params=ISAS)
def isa(request):
    before = codec.isa()
    codec.set_isa(request.param)
    yield request.param
    codec.set_isa(before)


def _seeds() -> list[bytes]:
    g = torch.Generator().manual_seed(0)
    tensors = [
        torch.relu(torch.randn(3, 70, generator=g)),
        torch.relu(torch.randn(130, generator=g)).half(),
        (torch.randn(5, 5, generator=g) > 0.5).to(torch.int64),
        torch.relu(torch.randn(600, generator=g)).to(torch.int8),
        torch.tensor(1.5, dtype=torch.float64),
        torch.zeros(2, 64),
    ]
    return [bytes(codec.encode(t)) for t in tensors]


def _try_decode(buf: bytes) -> str:
    try:
        y = codec.decode(buf)
    except ValueError as e:
        assert str(e), "ValueError without a reason"
        return "rejected"
    inf = codec.info(buf)
    assert tuple(y.shape) == inf.shape and codec.dtype_code(y.dtype) == inf.dtype
    assert codec.count_nonzero(y) <= inf.nnz  # a flipped value may have become zero, never more non-zeros
    return "decoded"


def test_mutation_fuzz(isa):
    rng = np.random.default_rng(2024)
    outcomes = {"rejected": 0, "decoded": 0}
    seeds = _seeds()
    for trial in range(3000):
        base = bytearray(seeds[trial % len(seeds)])
        kind = trial % 6
        if kind == 0:  # truncation
            m = base[: int(rng.integers(0, len(base)))]
        elif kind == 1:  # 1-3 bit flips anywhere
            m = base
            for _ in range(int(rng.integers(1, 4))):
                i = int(rng.integers(0, len(m)))
                m[i] ^= 1 << int(rng.integers(0, 8))
        elif kind == 2:  # bit flip in the header or the bitmap
            m = base
            i = int(rng.integers(0, min(len(m), 64 + 32)))
            m[i] ^= 1 << int(rng.integers(0, 8))
        elif kind == 3:  # random header bytes after the magic
            m = base
            for _ in range(int(rng.integers(1, 5))):
                m[int(rng.integers(4, 64))] = int(rng.integers(0, 256))
        elif kind == 4:  # garbage behind a valid magic and version
            m = bytearray(b"MSBM\x01") + bytearray(rng.integers(0, 256, int(rng.integers(0, 300)), dtype=np.uint8))
        else:  # extra or missing trailing bytes
            m = base + bytes(int(rng.integers(1, 9))) if rng.random() < 0.5 else base[:-1]
        outcomes[_try_decode(bytes(m))] += 1
    # Both outcomes must occur: the fuzz reaches the decoder, and most damage is detected.
    assert outcomes["rejected"] > 1500 and outcomes["decoded"] > 50, outcomes


def _header(dtype=9, ndim=1, shape=(10,), nnz=0, version=1, flags=0, magic=b"MSBM") -> bytearray:
    h = bytearray(64)
    h[0:4] = magic
    h[4], h[5], h[6], h[7] = version, dtype, ndim, flags
    h[8:16] = struct.pack("<Q", nnz)
    for d, s in enumerate(shape):
        h[16 + 6 * d: 22 + 6 * d] = s.to_bytes(6, "little")
    return h


@pytest.mark.parametrize("buf, reason", [
    (b"", "shorter than the 64-byte header"),
    (bytes(_header(magic=b"NOPE")) + bytes(8), "bad magic"),
    (bytes(_header(version=2)) + bytes(8), "version"),
    (bytes(_header(dtype=0)) + bytes(8), "dtype"),
    (bytes(_header(dtype=99)) + bytes(8), "dtype"),
    (bytes(_header(flags=1)) + bytes(8), "flags"),
    (bytes(_header(ndim=9, shape=(1,) * 8)) + bytes(8), "ndim"),
    (bytes(_header(ndim=1, shape=(10, 3))) + bytes(8), "unused shape slot"),
    (bytes(_header(ndim=8, shape=((1 << 48) - 1,) * 8)), "overflows"),
    (bytes(_header(ndim=2, shape=(1 << 30, 1 << 30))), "larger than 2\\*\\*60"),
    (bytes(_header(nnz=11)) + bytes(8) + bytes(44), "nnz larger"),
    (bytes(_header(nnz=(1 << 64) - 1)) + bytes(8), "nnz larger"),
    (bytes(_header(shape=(1 << 40,))) + bytes(8), "truncated"),
    (bytes(_header()) + bytes(9), "trailing"),
    (bytes(_header(nnz=1)) + bytes(8) + bytes(4), "popcount"),
    (bytes(_header(nnz=1)) + b"\x00\x04" + bytes(6) + bytes(4), "padding bits"),
], ids=lambda v: v if isinstance(v, str) else f"{len(v)}B")
def test_hostile_headers_raise_value_error_with_reason(isa, buf, reason):
    with pytest.raises(ValueError, match=reason):
        codec.decode(buf)


def test_valid_hand_made_buffer_decodes():
    buf = bytes(_header(nnz=2)) + bytes([0b00100001, 0]) + bytes(6) + struct.pack("<ff", 1.5, -0.0)
    assert codec.decode(buf).tolist() == [1.5, 0, 0, 0, 0, -0.0, 0, 0, 0, 0]
    assert codec.decode(buf)[5].signbit()
