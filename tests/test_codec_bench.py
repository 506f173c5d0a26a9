"""`memsim bench codec` runs end to end on a small size: every kernel side by side, both tables, targets."""
from __future__ import annotations

import re

from click.testing import CliRunner

import memsim.codec as codec
from memsim.cli.bench.codec import command

def _cells(text: str) -> str:
    """The output with the tables' padding collapsed ("|  a   |" → "| a |")."""
    return re.sub(r" {2,}", " ", text)


ROWS = ("float32 0% zeros", "float32 50% zeros", "float32 90% zeros", "float32 99% zeros", "float16 50% zeros")


def test_bench_codec_prints_every_kernel_side_by_side():
    result = CliRunner().invoke(command, ["--size", "1", "--repeat", "1"])
    assert result.exit_code == 0, result.output
    out = _cells(result.output)
    header = next(line for line in out.splitlines() if line.startswith("| tensor | operation |"))
    for name in ["auto"] + [i.value for i in codec.available_isas()]:
        assert f"| {name} GB/s (×copy) |" in header
    for row in ROWS:
        for op in ("encode, out=", "encode, new", "decode, out=", "decode, new"):
            assert f"| {row} | {op} |" in out
    assert out.count("target float32 50%") == 4 and "(auto)" in out
    assert "auto encode 4-byte:" in out and "first-use measurement" in out


def test_bench_codec_single_kernel_and_sizes():
    result = CliRunner().invoke(command, ["--size", "1", "--repeat", "1", "--isa", "scalar"])
    assert result.exit_code == 0, result.output
    out = _cells(result.output)
    assert "kernels scalar" in out and "| scalar GB/s (×copy) |" in out and "| avx2 GB/s" not in out
    for row in ROWS:
        assert out.count(f"| {row} |") == 5  # four speed rows and the size row
    # 1 MiB float32 at 50% zeros: 262144 elements, 131072 non-zeros -> exact size from the formula.
    assert "| float32 50% zeros | 1,048,576 | 557,120 | 557,056 |" in out
    assert out.count("target float32 50%") == 4 and "(scalar)" in out


def test_bench_codec_rejects_bad_options():
    result = CliRunner().invoke(command, ["--size", "0"])
    assert result.exit_code == 2 and "--size" in result.output
    result = CliRunner().invoke(command, ["--isa", "sse9"])
    assert result.exit_code == 2 and "auto" in result.output


def test_bench_codec_restores_the_isa():
    before = codec.isa()
    CliRunner().invoke(command, ["--size", "1", "--repeat", "1", "--isa", "scalar"])
    assert codec.isa() == before
