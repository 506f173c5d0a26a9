"""``memsim bench codec``: speed of the native sparse-bitmap codec against numpy and a plain copy.

For each case (float32 at sparsity 0, 0.5, 0.9, 0.99 and float16 at 0.5, by default 64 MiB each) it
measures, in one run and on one thread, best of ``--repeat``:

- memsim: ``encode(x, out=buf)`` and ``decode(buf, out=t)`` into reused buffers (the intended use in a loop),
  and ``encode(x)`` / ``decode(buf)`` into fresh memory ("new" columns, page faults included);
- numpy baseline: ``np.packbits(x != 0)`` + ``x[x != 0]``, and its inverse
  ``out = np.zeros(n); out[np.unpackbits(bits, count=n).view(bool)] = vals``;
- copy: ``np.copyto(dst, x)`` into a preallocated array.

The operations of a case run interleaved, round after round, so background load affects them alike.

Throughput is always the uncompressed tensor size divided by the time (GB/s, 1 GB = 1e9 bytes), so the
columns compare directly. The size table holds the encoded size against the bitmap limit n/8 + nnz·itemsize.
"""
from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from typing import Callable

import click
import numpy as np

from memsim import codec

DEFAULT_CASES = (("float32", 0.0), ("float32", 0.5), ("float32", 0.9), ("float32", 0.99), ("float16", 0.5))
TARGET_VS_NUMPY = 5.0
TARGET_VS_COPY = 0.6


@dataclass
class CaseResult:
    """Seconds (best of N) of each operation on one tensor, and its sizes in bytes."""

    dtype: str
    sparsity: float
    nbytes: int
    encoded_bytes: int
    limit_bytes: float
    enc: float
    enc_new: float
    dec: float
    dec_new: float
    np_enc: float
    np_dec: float
    copy: float

    def gbps(self, seconds: float) -> float:
        return self.nbytes / seconds / 1e9


def best_of_interleaved(ops: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Shortest wall time (seconds) of each operation over ``repeat`` rounds. Each round runs every
    operation once, so load from other processes hits all of them alike and the ratios stay fair."""
    best = {name: float("inf") for name in ops}
    for _ in range(repeat):
        for name, fn in ops.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def synthetic(n: int, dtype: str, sparsity: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` non-zero normal values with exactly ``round(sparsity * n)`` zeros at random positions."""
    x = (np.abs(rng.standard_normal(n, dtype=np.float32)) + 0.1).astype(dtype)
    zeros = round(sparsity * n)
    if zeros:
        x[rng.permutation(n)[:zeros]] = 0
    return x


def measure_case(dtype: str, sparsity: float, size_bytes: int, repeat: int, rng: np.random.Generator) -> CaseResult:
    import torch

    itemsize = np.dtype(dtype).itemsize
    n = size_bytes // itemsize
    x = synthetic(n, dtype, sparsity, rng)
    nnz = codec.count_nonzero(x)

    enc_buf = np.empty(codec.max_encoded_size(n, dtype), np.uint8)
    enc_buf.fill(0)  # touch the pages once, as a reused buffer would be
    encoded = codec.encode(x, out=enc_buf)
    dec_out = torch.empty(n, dtype=getattr(torch, dtype))
    dec_out.fill_(0)
    codec.decode(encoded, out=dec_out)
    if not np.array_equal(dec_out.numpy().view(np.uint8), x.view(np.uint8)):
        raise AssertionError("codec round trip differs")

    bits = np.packbits(x != 0)
    vals = x[x != 0]

    def numpy_decode():
        out = np.zeros(n, dtype=dtype)
        out[np.unpackbits(bits, count=n).view(bool)] = vals
        return out

    copy_dst = np.empty_like(x)
    copy_dst.fill(0)
    ops = {
        "enc": lambda: codec.encode(x, out=enc_buf),
        "enc_new": lambda: codec.encode(x),
        "dec": lambda: codec.decode(encoded, out=dec_out),
        "dec_new": lambda: codec.decode(encoded),
        "np_enc": lambda: (np.packbits(x != 0), x[x != 0]),
        "np_dec": numpy_decode,
        "copy": lambda: np.copyto(copy_dst, x),
    }
    seconds = best_of_interleaved(ops, repeat)
    return CaseResult(dtype=dtype, sparsity=sparsity, nbytes=x.nbytes, encoded_bytes=len(encoded),
                      limit_bytes=n / 8 + nnz * itemsize, **seconds)


def format_tables(results: list[CaseResult]) -> str:
    """The speed and size tables as Markdown."""
    lines = [
        "| tensor | encode memsim | (new) | numpy | copy | ×numpy | ×copy "
        "| decode memsim | (new) | numpy | copy | ×numpy | ×copy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        g = r.gbps
        lines.append(
            f"| {r.dtype} {r.sparsity:.0%} zeros | {g(r.enc):.2f} | {g(r.enc_new):.2f} | {g(r.np_enc):.2f} "
            f"| {g(r.copy):.2f} | {r.np_enc / r.enc:.1f} | {r.copy / r.enc:.2f} "
            f"| {g(r.dec):.2f} | {g(r.dec_new):.2f} | {g(r.np_dec):.2f} | {g(r.copy):.2f} "
            f"| {r.np_dec / r.dec:.1f} | {r.copy / r.dec:.2f} |"
        )
    lines += [
        "",
        "| tensor | dense bytes | encoded bytes | limit n/8 + nnz·itemsize | encoded / limit | ratio dense/encoded |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.dtype} {r.sparsity:.0%} zeros | {r.nbytes:,} | {r.encoded_bytes:,} | {r.limit_bytes:,.0f} "
            f"| {r.encoded_bytes / r.limit_bytes:.6f} | {r.nbytes / r.encoded_bytes:.2f}× |"
        )
    return "\n".join(lines)


def target_lines(results: list[CaseResult]) -> list[str]:
    """Pass/fail of the issue's targets (float32 at 50% zeros, reused buffers)."""
    out = []
    for r in results:
        if r.dtype == "float32" and r.sparsity == 0.5:
            for name, fast, slow_np in (("encode", r.enc, r.np_enc), ("decode", r.dec, r.np_dec)):
                vs_np, vs_copy = slow_np / fast, r.copy / fast
                ok = vs_np >= TARGET_VS_NUMPY and vs_copy >= TARGET_VS_COPY
                out.append(f"target float32 50% {name}: {vs_np:.1f}× numpy (≥{TARGET_VS_NUMPY:g}), "
                           f"{vs_copy:.2f}× copy (≥{TARGET_VS_COPY:g}): {'PASS' if ok else 'FAIL'}")
    return out


@click.command()
@click.option("--size", "size_mb", default=64, show_default=True, type=click.IntRange(1, 4096),
              help="Size of each test tensor in MiB.")
@click.option("--repeat", default=5, show_default=True, type=click.IntRange(1, 1000),
              help="Runs per measurement; the best is reported.")
@click.option("--isa", "isa_name", default=None,
              type=click.Choice([i.value for i in codec.available_isas()]),
              help="Kernels to use (default: the best this CPU runs).")
def command(size_mb: int, repeat: int, isa_name: str | None) -> None:
    """Encode/decode speed (GB/s) of the native codec vs numpy and a plain copy, and encoded sizes."""
    import torch

    previous_threads, previous_isa = torch.get_num_threads(), codec.isa()
    torch.set_num_threads(1)
    if isa_name:
        codec.set_isa(isa_name)
    try:
        _run(size_mb, repeat)
    finally:
        codec.set_isa(previous_isa)
        torch.set_num_threads(previous_threads)


def _run(size_mb: int, repeat: int) -> None:
    rng = np.random.default_rng(0)
    click.echo(f"memsim codec benchmark: {size_mb} MiB per tensor, best of {repeat}, one thread, "
               f"kernels {codec.isa().value} (available: {', '.join(i.value for i in codec.available_isas())}), "
               f"{platform.machine()} {_cpu_name()}")
    click.echo("GB/s = uncompressed bytes / time; (new) = fresh output memory, else reused buffers; "
               "×numpy = numpy time / memsim time, ×copy = copy time / memsim time")
    click.echo("")
    results = [measure_case(dt, sp, size_mb << 20, repeat, rng) for dt, sp in DEFAULT_CASES]
    click.echo(format_tables(results))
    click.echo("")
    for line in target_lines(results):
        click.echo(line)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"
