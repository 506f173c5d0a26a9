"""Frozen encodings in tests/fixtures/codec/: a silent change of the format fails here.

Each ``NAME.msbm`` was written once by ``python tests/test_codec_fixtures.py --write`` from the
deterministic tensors below. The test decodes every file (must give the tensor back bit for bit) and
re-encodes the tensor (must give the file's bytes back). Never regenerate them to make a failure go
away: a format change needs a new FORMAT_VERSION and new fixtures next to the old ones. Every test runs once
for each kernel family this CPU has (the autouse ``isa`` fixture).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import memsim.codec as codec

FIXTURES = Path(__file__).parent / "fixtures" / "codec"
ISAS = [isa.value for isa in codec.available_isas()]


@pytest.fixture(autouse=True, params=ISAS)
def isa(request):
    before = codec.isa()
    codec.set_isa(request.param)
    yield request.param
    codec.set_isa(before)


def _pattern(n: int, itemsize: int, every: int) -> np.ndarray:
    """Deterministic raw bits (no RNG, so stable across numpy versions); every `every`-th element is zero."""
    i = np.arange(n, dtype=np.uint64)
    raw = (i * np.uint64(2654435761) + np.uint64(12345)) & np.uint64((1 << (8 * itemsize)) - 1)
    raw[::every] = 0
    return raw.astype({1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[itemsize])


def _from_bits(raw: np.ndarray, dtype: torch.dtype, shape: tuple[int, ...]) -> torch.Tensor:
    view = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[raw.itemsize]
    return torch.from_numpy(raw.copy().view({1: np.uint8, 2: np.int16, 4: np.int32, 8: np.int64}[raw.itemsize])
                            ).view(view).view(dtype).reshape(shape)


def fixture_tensors() -> dict[str, torch.Tensor]:
    specials = torch.tensor([0.0, -0.0, float("inf"), float("-inf"), float("nan"), 1e-45, 3.0, 0.0, -2.5],
                            dtype=torch.float32)
    return {
        "float32_specials": specials,
        "float32_2x3x5": _from_bits(_pattern(30, 4, 3), torch.float32, (2, 3, 5)),
        "float16_65": _from_bits(_pattern(65, 2, 2), torch.float16, (65,)),
        "bfloat16_7x9": _from_bits(_pattern(63, 2, 4), torch.bfloat16, (7, 9)),
        "float64_3x43": _from_bits(_pattern(129, 8, 5), torch.float64, (3, 43)),
        "int8_3x100": _from_bits(_pattern(300, 1, 2), torch.int8, (3, 100)),
        "uint8_8dims": _from_bits(_pattern(24, 1, 3), torch.uint8, (1, 2, 1, 2, 1, 2, 1, 3)),
        "int16_513": _from_bits(_pattern(513, 2, 7), torch.int16, (513,)),
        "int32_all_zero": torch.zeros(4, 16, dtype=torch.int32),
        "int64_scalar": torch.tensor(-7, dtype=torch.int64),
        "bool_70": torch.from_numpy((_pattern(70, 1, 3) & 1).astype(bool)),
        "float32_empty": torch.zeros(3, 0, 2),
    }


TENSORS = fixture_tensors()


def _raw_bytes(t: torch.Tensor) -> bytes:
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def test_fixture_set_is_complete():
    on_disk = {p.stem for p in FIXTURES.glob("*.msbm")}
    assert on_disk == set(TENSORS), "fixtures and tensors differ; add fixtures, never delete old ones"
    assert {codec.dtype_code(t.dtype) for t in TENSORS.values()} == set(codec.DType)


@pytest.mark.parametrize("name", sorted(TENSORS))
def test_frozen_fixture_decodes_and_reencodes(name):
    data = (FIXTURES / f"{name}.msbm").read_bytes()
    x = TENSORS[name]
    y = codec.decode(data)
    assert y.dtype == x.dtype and y.shape == x.shape
    assert _raw_bytes(y) == _raw_bytes(x)
    assert bytes(codec.encode(x)) == data
    assert data[:4] == b"MSBM" and data[4] == codec.FORMAT_VERSION


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    FIXTURES.mkdir(parents=True, exist_ok=True)
    for name, tensor in TENSORS.items():
        (FIXTURES / f"{name}.msbm").write_bytes(bytes(codec.encode(tensor)))
        print("wrote", name)
