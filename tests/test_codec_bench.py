"""`memsim bench codec` runs end to end on a small size and prints both tables and the target lines."""
from __future__ import annotations

from click.testing import CliRunner

from memsim.benchmarks.codec import command


def test_bench_codec_small_run_prints_tables():
    result = CliRunner().invoke(command, ["--size", "1", "--repeat", "1", "--isa", "scalar"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "kernels scalar" in out
    for row in ("float32 0% zeros", "float32 50% zeros", "float32 90% zeros", "float32 99% zeros",
                "float16 50% zeros"):
        assert out.count(f"| {row} |") == 2  # speed table and size table
    # 1 MiB float32 at 50% zeros: 262144 elements, 131072 non-zeros -> exact size from the formula.
    assert "| float32 50% zeros | 1,048,576 | 557,120 | 557,056 |" in out
    assert out.count("target float32 50%") == 2


def test_bench_codec_rejects_bad_options():
    result = CliRunner().invoke(command, ["--size", "0"])
    assert result.exit_code == 2 and "--size" in result.output


def test_bench_codec_restores_the_isa():
    import memsim.codec as codec

    before = codec.isa()
    CliRunner().invoke(command, ["--size", "1", "--repeat", "1", "--isa", "scalar"])
    assert codec.isa() == before
