"""``memsim bench codec``: speed of every kernel family of the native codec, side by side, against copies.

For each case (float32 at 0, 50, 90 and 99% zeros and float16 at 50%, by default 64 MiB each) it measures on
one thread, best of ``--repeat``, for the default choice (``auto``) and for every kernel family this CPU runs:

- ``encode, out=`` / ``decode, out=``: into a reused, already touched buffer (the intended use in a loop),
  against ``copy, out=``: ``np.copyto(dst, x)`` into a preallocated array;
- ``encode, new`` / ``decode, new``: into fresh memory (page faults included), against an allocating copy
  ``x.copy()`` (numpy's allocator, which asks for transparent huge pages on large arrays, as the codec does);
- the numpy baseline ``np.packbits(x != 0)`` + ``x[x != 0]`` and its inverse
  ``out = np.zeros(n); out[np.unpackbits(bits, count=n).view(bool)] = vals`` (both allocate).

All operations of a case run interleaved, round after round, so background load affects them alike and the
ratios stay fair on a busy machine. Throughput is the uncompressed tensor size divided by the time (GB/s,
1 GB = 1e9 bytes), so all columns compare directly; ``×`` is the copy's time over the codec's time (above 1:
faster than the copy). The size table holds the encoded size against the bitmap limit n/8 + nnz·itemsize.

Targets (issue 11), for the default kernels on float32 at 50% zeros: ``out=`` at least 1.0× the copy into
existing memory, ``new`` at least 0.9× the allocating copy.
"""
from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field
from typing import Callable

import click
import numpy as np

from memsim import codec

DEFAULT_CASES = (("float32", 0.0), ("float32", 0.5), ("float32", 0.9), ("float32", 0.99), ("float16", 0.5))
TARGET_OUT_VS_COPY = 1.0
TARGET_NEW_VS_ALLOC_COPY = 0.9
OPERATIONS = ("encode, out=", "encode, new", "decode, out=", "decode, new")
_OP_KEYS = {"encode, out=": "enc", "encode, new": "enc_new", "decode, out=": "dec", "decode, new": "dec_new"}


@dataclass
class CaseResult:
    """Seconds (best of N) of each operation on one tensor, per kernel, and its sizes in bytes."""

    dtype: str
    sparsity: float
    nbytes: int
    encoded_bytes: int
    limit_bytes: float
    kernels: list[str]
    seconds: dict[str, dict[str, float]] = field(default_factory=dict)  # kernel -> op key -> s
    copy: float = 0.0
    copy_new: float = 0.0
    np_enc: float = 0.0
    np_dec: float = 0.0
    auto_units: dict[str, str] = field(default_factory=dict)  # "encode"/"decode" -> unit

    def gbps(self, seconds: float) -> float:
        return self.nbytes / seconds / 1e9

    def baseline(self, op: str) -> float:
        """The copy an operation is held against: into existing memory for out=, allocating for new."""
        return self.copy if op.endswith("out=") else self.copy_new


def best_of_interleaved(ops: dict[str, Callable[[], object]], repeat: int, seed: int = 0) -> dict[str, float]:
    """Shortest wall time (seconds) of each operation over ``repeat`` rounds. Each round runs every
    operation once, so load from other processes hits all of them alike and the ratios stay fair; the order
    is shuffled each round (seeded), so no operation always runs right after the same neighbour (e.g. after
    an allocating copy that has just flushed the caches)."""
    best = {name: float("inf") for name in ops}
    names = list(ops)
    rng = np.random.default_rng(seed)
    for r in range(repeat):
        order = names if r == 0 else [names[i] for i in rng.permutation(len(names))]
        for name in order:
            fn = ops[name]
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


def _with_kernel(name: str, fn: Callable[[], object]) -> Callable[[], object]:
    def run():
        codec.set_isa(name)
        return fn()

    return run


def measure_case(dtype: str, sparsity: float, size_bytes: int, repeat: int, rng: np.random.Generator,
                 kernels: list[str]) -> CaseResult:
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
    for name in kernels:  # correctness, and the first-use measurement of auto, before any timing
        codec.set_isa(name)
        if bytes(codec.encode(x)) != bytes(encoded):
            raise AssertionError(f"kernels {name}: encoding differs")
        codec.decode(encoded, out=dec_out)
        if not np.array_equal(dec_out.numpy().view(np.uint8), x.view(np.uint8)):
            raise AssertionError(f"kernels {name}: codec round trip differs")
    codec.set_isa("auto")
    auto_units = {op: codec._bitmap.kernel_unit(op, itemsize) for op in ("encode", "decode")}

    bits = np.packbits(x != 0)
    vals = x[x != 0]

    def numpy_decode():
        out = np.zeros(n, dtype=dtype)
        out[np.unpackbits(bits, count=n).view(bool)] = vals
        return out

    copy_dst = np.empty_like(x)
    copy_dst.fill(0)
    ops: dict[str, Callable[[], object]] = {
        "copy": lambda: np.copyto(copy_dst, x),
        "copy_new": lambda: x.copy(),
    }
    for name in kernels:
        ops[f"{name}/enc"] = _with_kernel(name, lambda: codec.encode(x, out=enc_buf))
        ops[f"{name}/enc_new"] = _with_kernel(name, lambda: codec.encode(x))
        ops[f"{name}/dec"] = _with_kernel(name, lambda: codec.decode(encoded, out=dec_out))
        ops[f"{name}/dec_new"] = _with_kernel(name, lambda: codec.decode(encoded))
    ops["np_enc"] = lambda: (np.packbits(x != 0), x[x != 0])
    ops["np_dec"] = numpy_decode
    seconds = best_of_interleaved(ops, repeat)
    result = CaseResult(dtype=dtype, sparsity=sparsity, nbytes=x.nbytes, encoded_bytes=len(encoded),
                        limit_bytes=n / 8 + nnz * itemsize, kernels=list(kernels), copy=seconds["copy"],
                        copy_new=seconds["copy_new"], np_enc=seconds["np_enc"], np_dec=seconds["np_dec"],
                        auto_units=auto_units)
    for name in kernels:
        result.seconds[name] = {key: seconds[f"{name}/{key}"] for key in ("enc", "enc_new", "dec", "dec_new")}
    return result


def format_tables(results: list[CaseResult]) -> str:
    """The speed table (every kernel side by side) and the size table, as Markdown."""
    from memsim.output.tables import table

    kernels = results[0].kernels
    rows = []
    for r in results:
        for op in OPERATIONS:
            key = _OP_KEYS[op]
            base = r.baseline(op)
            cells = [f"{r.gbps(r.seconds[k][key]):.2f} ({base / r.seconds[k][key]:.2f}×)" for k in kernels]
            numpy = {"encode, new": r.np_enc, "decode, new": r.np_dec}.get(op)
            rows.append([f"{r.dtype} {r.sparsity:.0%} zeros", op, *cells,
                         f"{r.gbps(base):.2f}" + (" alloc" if op.endswith("new") else ""),
                         f"{r.gbps(numpy):.2f}" if numpy else "–"])
    speed = table(["tensor", "operation", *(f"{k} GB/s (×copy)" for k in kernels), "copy GB/s", "numpy GB/s"],
                  rows, right=set(range(2, len(kernels) + 4)), markdown=True)
    sizes = table(["tensor", "dense bytes", "encoded bytes", "limit n/8 + nnz·itemsize", "encoded / limit",
                   "ratio dense/encoded"],
                  [[f"{r.dtype} {r.sparsity:.0%} zeros", f"{r.nbytes:,}", f"{r.encoded_bytes:,}",
                    f"{r.limit_bytes:,.0f}", f"{r.encoded_bytes / r.limit_bytes:.6f}",
                    f"{r.nbytes / r.encoded_bytes:.2f}×"] for r in results], right={1, 2, 3, 4, 5}, markdown=True)
    return speed + "\n\n" + sizes


def target_lines(results: list[CaseResult], kernel: str) -> list[str]:
    """Pass/fail of the issue's targets for ``kernel`` (float32 at 50% zeros)."""
    out = []
    for r in results:
        if r.dtype != "float32" or r.sparsity != 0.5:
            continue
        for op in OPERATIONS:
            s = r.seconds[kernel][_OP_KEYS[op]]
            ratio = r.baseline(op) / s
            goal, against = ((TARGET_OUT_VS_COPY, "copy into existing memory") if op.endswith("out=")
                             else (TARGET_NEW_VS_ALLOC_COPY, "allocating copy"))
            np_ratio = ""
            if op.endswith("new"):
                np_ratio = f", {(r.np_enc if op.startswith('encode') else r.np_dec) / s:.1f}× numpy"
            out.append(f"target float32 50% {op} ({kernel}): {ratio:.2f}× {against} (≥{goal:g}){np_ratio}: "
                       f"{'PASS' if ratio >= goal else 'FAIL'}")
    return out


def calibration_lines(itemsizes: list[int]) -> list[str]:
    codec.set_isa(codec.Isa.AUTO)
    lines = []
    for e in itemsizes:
        for op in (codec.Op.ENCODE, codec.Op.DECODE):
            cal = codec.calibration(op, e)
            speeds = ", ".join(f"{k.value} {v:.1f}" for k, v in cal.gbps.items())
            lines.append(f"auto {op.value} {e}-byte: {cal.chosen.value} "
                         f"(unit {codec._bitmap.kernel_unit(op.value, e)}; first-use measurement in cache, GB/s: {speeds})")
    return lines


@click.command()
@click.option("--size", "size_mb", default=64, show_default=True, type=click.IntRange(1, 4096),
              help="Size of each test tensor in MiB.")
@click.option("--repeat", default=5, show_default=True, type=click.IntRange(1, 1000),
              help="Runs per measurement; the best is reported.")
@click.option("--isa", "isa_name", default=None,
              type=click.Choice([codec.Isa.AUTO.value] + [i.value for i in codec.available_isas()]),
              help="Measure only these kernels (default: auto and every family this CPU runs).")
def command(size_mb: int, repeat: int, isa_name: str | None) -> None:
    """Encode/decode speed (GB/s) of every codec kernel family vs copies and numpy, and encoded sizes."""
    import torch

    previous_threads, previous_isa = torch.get_num_threads(), codec.isa()
    torch.set_num_threads(1)
    kernels = [isa_name] if isa_name else [codec.Isa.AUTO.value] + [i.value for i in codec.available_isas()]
    try:
        _run(size_mb, repeat, kernels)
    finally:
        codec.set_isa(previous_isa)
        torch.set_num_threads(previous_threads)


def _run(size_mb: int, repeat: int, kernels: list[str]) -> None:
    rng = np.random.default_rng(0)
    click.echo(f"memsim codec benchmark: {size_mb} MiB per tensor, best of {repeat}, one thread, "
               f"kernels {', '.join(kernels)} (available: {', '.join(i.value for i in codec.available_isas())}; "
               f"default auto), {platform.machine()} {_cpu_name()}")
    click.echo("GB/s = uncompressed bytes / time; out= reuses buffers, new allocates; ×copy = copy time / codec "
               "time, against np.copyto into existing memory for out= and an allocating x.copy() for new")
    click.echo("")
    results = [measure_case(dt, sp, size_mb << 20, repeat, rng, kernels) for dt, sp in DEFAULT_CASES]
    click.echo(format_tables(results))
    click.echo("")
    if codec.Isa.AUTO.value in kernels:
        for line in calibration_lines(sorted({np.dtype(dt).itemsize for dt, _ in DEFAULT_CASES})):
            click.echo(line)
        click.echo("")
    for line in target_lines(results, kernels[0]):
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
