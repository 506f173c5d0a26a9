"""The device catalog: one TOML file per device in this package, each value with its source.

A :class:`Device` says how much memory a machine has, what is taken before training starts and which
allocator model turns live tensors into device memory:

* ``total_bytes``: the memory training competes for (Jetson: the shared LPDDR; GPU: the card's memory;
  CPU machines: RAM);
* ``os_reserved_bytes``: what is gone before our process starts: memory the OS never sees (firmware and
  GPU carve-outs, ECC) plus a *headless* system's idle use (no desktop; a desktop takes ~1 GB more on a
  Jetson, see REFERENCE.md). Laptops are the exception: their files assume a desktop session;
* ``runtime_bytes``: what the framework holds before the first tensor: the CUDA context (GPU memory) and,
  where the CPU shares the same memory (Jetson, CPU machines), the resident size of a Python process with
  torch imported. ``runtime_parts`` keeps the two apart;
* ``budget_bytes`` (derived) = total − OS − runtime: what PyTorch allocations may use;
* ``allocator``: ``cuda-caching`` or ``cpu`` (:mod:`memsim.simulation.allocator`);
* ``backend`` and ``threads``: whose kernels run the step (:class:`memsim.backends.kinds.Backend`: x86,
  aarch64 or cuda) with how many CPU threads; CUDA devices name their ``cuda_capability`` (it decides the
  cuBLAS workspace) and Jetsons their ``cpu_backend`` for training on the CPU side (:meth:`Device.cpu_side`);
* ``uncertainty_bytes``: how far the OS and runtime estimates may be off (default: a quarter of the OS
  reserve plus a tenth of the runtime): a fit counts as robust only when it also holds with that much less.

Bandwidth and peak FLOP/s are for time estimates (codec, recomputation); they are datasheet peaks.
FP16 is the dense tensor-core rate where the GPU has tensor cores (mixed precision with FP32
accumulation), otherwise the CUDA-core or NEON rate.

API:
    >>> from memsim.simulation import devices
    >>> "jetson-nano" in devices.names()
    True
    >>> nano = devices.get("jetson-nano")
    >>> nano.budget_bytes < nano.total_bytes
    True
    >>> devices.from_budget("3.5GiB").total_bytes
    3758096384

Your own device (``memsim profile ... --device-file my_board.toml``; ``memsim devices --template`` prints
this template). Sizes are a number of bytes or a size string ("4 GiB", "512MB": KB/MB/GB are powers of
1000, KiB/MiB/GiB powers of 1024)::

    # memsim device file
    name = "my-board"                  # optional; default: the file name without .toml
    display_name = "My board 4GB"      # optional; default: name
    kind = "cpu"                       # required: "jetson" (unified memory, CUDA), "cuda-gpu" (discrete), "cpu"
    allocator = "cpu"                  # optional; default from kind: "cuda-caching" for jetson/cuda-gpu, "cpu"
    backend = "aarch64"                # optional: "x86", "aarch64" or "cuda"; default: cuda for jetson/cuda-gpu, x86
    threads = 4                        # optional: CPU threads torch uses; default: compute.cpu_cores, else 1
    # cuda_capability = "8.7"          # backend "cuda" only: compute capability (cuBLAS workspace size)
    # cpu_backend = "aarch64"          # optional, jetson: the CPU's kernels, for training on the CPU side
    uncertainty = "150 MiB"            # optional: how far os_reserved + runtime may be off (robust fit band)
    total_memory = "4 GiB"             # required: RAM (or GPU memory for a cuda-gpu)
    os_reserved = "300 MiB"            # optional, default 0: memory the OS and firmware hold before training
    swap = false                       # optional, default false: whether the OS may swap (never counted as memory)
    notes = "headless, no desktop"     # optional

    [runtime]                          # optional, default nothing: framework memory before the first tensor
    torch_process = "225 MiB"          # resident size of python + torch (CPU memory; also on Jetson)
    cuda_context = "0"                 # CUDA context (GPU memory; jetson and cuda-gpu)

    [compute]                          # optional: for time estimates
    bandwidth = "12.8 GB"              # memory bandwidth, bytes per second
    flops_fp32 = 96e9                  # peak FLOP/s
    flops_fp16 = 96e9
    cpu_cores = 4

    [sources]                          # optional: where each value comes from (free text)
    total_memory = "board datasheet"

Choice made here: ``from_budget`` (``--budget 3.5GiB``) describes the memory *the training process* may
use, as under a container or cgroup memory limit: no OS reserve, but the process's own Python + torch
baseline counts against it, and the CPU allocator model applies.
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from memsim.backends.kinds import Backend, host_backend
from memsim.simulation.allocator import AllocatorKind
from memsim.core.choices import choose, suggest
from memsim.core.errors import InputError
from memsim.core.units import format_bytes, parse_size

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10 needs the tomli backport
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = ["Device", "DeviceKind", "AllocatorKind", "names", "get", "catalog", "load_file", "from_budget",
           "template", "host", "measure_torch_baseline_bytes", "TORCH_PROCESS_BASELINE_BYTES"]

# Resident memory of `python -c "import torch"` + a tiny matmul and backward (VmHWM), torch 2.13.0+cpu,
# Python 3.11, x86-64, 2 threads, measured 2026-11-25 with measure_torch_baseline_bytes(): 230796 KiB.
TORCH_PROCESS_BASELINE_BYTES = 230796 * 1024


class DeviceKind(str, Enum):
    """What kind of machine a device is.

    Members:
        JETSON: NVIDIA Jetson: CUDA GPU and CPU share one LPDDR memory (the GPU part cannot be swapped).
        CUDA_GPU: a discrete CUDA GPU with its own memory (host RAM is not counted).
        CPU: a CPU-only machine (Raspberry Pi, laptop, CI runner): training runs in RAM.
    """

    JETSON = "jetson"
    CUDA_GPU = "cuda-gpu"
    CPU = "cpu"

    def __str__(self) -> str:
        return self.value


_DEFAULT_ALLOCATOR = {DeviceKind.JETSON: AllocatorKind.CUDA_CACHING, DeviceKind.CUDA_GPU: AllocatorKind.CUDA_CACHING,
                      DeviceKind.CPU: AllocatorKind.CPU}
_RUNTIME_PARTS = ("torch_process", "cuda_context")


@dataclass(frozen=True)
class Device:
    """One machine training may run on. Sizes in bytes, bandwidth in bytes/s, compute in FLOP/s.

    Attributes:
        name: catalog name ("jetson-nano").
        display_name: for people ("NVIDIA Jetson Nano 4GB").
        kind: :class:`DeviceKind`.
        total_bytes: memory training competes for (see the module docstring).
        os_reserved_bytes: memory gone before the training process starts (carve-outs + idle OS).
        runtime_bytes: framework memory before the first tensor (sum of ``runtime_parts``).
        allocator: the :class:`memsim.simulation.allocator.AllocatorKind` model for this device.
        bandwidth_bytes_per_s, flops_fp32, flops_fp16, cpu_cores: datasheet peaks (None when unknown).
        swap: whether the OS may swap; swap is never counted as memory.
        sources: where each value comes from, by field name.
        notes: anything a user should know.
        runtime_parts: ``{"torch_process": bytes, "cuda_context": bytes}`` as far as present.
    """

    name: str
    display_name: str
    kind: DeviceKind
    total_bytes: int
    os_reserved_bytes: int
    runtime_bytes: int
    allocator: AllocatorKind
    bandwidth_bytes_per_s: float | None = None
    flops_fp32: float | None = None
    flops_fp16: float | None = None
    cpu_cores: int | None = None
    swap: bool = False
    sources: Mapping[str, str] = field(default_factory=dict)
    notes: str = ""
    runtime_parts: Mapping[str, int] = field(default_factory=dict)
    backend: Backend = Backend.X86
    threads: int = 1
    cuda_capability: tuple | None = None
    cpu_backend: Backend | None = None
    uncertainty: int | None = None

    @property
    def uncertainty_bytes(self) -> int:
        """How far the OS and runtime estimates may be off (bytes): the file's ``uncertainty``, else a quarter
        of the OS reserve plus a tenth of the runtime."""
        if self.uncertainty is not None:
            return int(self.uncertainty)
        return int(0.25 * self.os_reserved_bytes + 0.10 * self.runtime_bytes)

    def cpu_side(self) -> "Device":
        """This device training on its CPU (a Jetson's Arm cores): its CPU backend, the CPU allocator, and no
        CUDA context. The device itself when it is a CPU device already."""
        if self.backend.is_cpu:
            return self
        if self.cpu_backend is None:
            raise InputError(f"device {self.name!r} has no CPU to train on (no cpu_backend in its file); "
                             "valid --backend for it: cuda")
        parts = {k: v for k, v in self.runtime_parts.items() if k != "cuda_context"}
        return replace(self, name=f"{self.name}-cpu", display_name=f"{self.display_name} (CPU)", kind=DeviceKind.CPU,
                       allocator=AllocatorKind.CPU, backend=self.cpu_backend, runtime_parts=parts,
                       runtime_bytes=sum(parts.values()), cuda_capability=None)

    @property
    def budget_bytes(self) -> int:
        """Memory left for PyTorch allocations: total − OS reserve − runtime (bytes)."""
        return self.total_bytes - self.os_reserved_bytes - self.runtime_bytes

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field plus ``budget_bytes`` (enums as their string values)."""
        d = asdict(self)
        d["kind"], d["allocator"], d["backend"] = str(self.kind), str(self.allocator), str(self.backend)
        d["cpu_backend"] = None if self.cpu_backend is None else str(self.cpu_backend)
        d["cuda_capability"] = None if self.cuda_capability is None else ".".join(map(str, self.cuda_capability))
        d["uncertainty_bytes"] = self.uncertainty_bytes
        d["sources"], d["runtime_parts"] = dict(self.sources), dict(self.runtime_parts)
        d["budget_bytes"] = self.budget_bytes
        return d

    def summary(self) -> str:
        """One line for people: ``jetson-nano: 4.00 GiB, OS 532 MiB, runtime ..., for tensors ...``."""
        return (f"{self.name}: {format_bytes(self.total_bytes)}, OS {format_bytes(self.os_reserved_bytes)}, "
                f"runtime {format_bytes(self.runtime_bytes)}, for tensors {format_bytes(self.budget_bytes)} "
                f"({self.allocator} allocator)")


# ---- the catalog ----

def _catalog_files() -> dict[str, Any]:
    root = resources.files(__name__)
    return {p.name[: -len(".toml")]: p for p in root.iterdir() if p.name.endswith(".toml")}


def names() -> list[str]:
    """Catalog device names, sorted.

    >>> names()[:2]
    ['a100-40gb', 'a100-80gb']
    """
    return sorted(_catalog_files())


def get(name: str) -> Device:
    """The catalog device called ``name``.

    Raises InputError for an unknown name, suggesting close names and ``memsim devices``.

    >>> get("raspberry-pi-4-4gb").allocator.value
    'cpu'
    """
    files = _catalog_files()
    key = str(name).strip().lower()
    if key not in files:
        raise InputError(f"unknown device {name!r}{suggest(key, sorted(files))}. Run `memsim devices` to list "
                         "all devices, or describe your own with --device-file (see `memsim devices --template`).")
    return _load_catalog_file(key)


@lru_cache(maxsize=None)
def _load_catalog_file(key: str) -> Device:
    text = _catalog_files()[key].read_text(encoding="utf-8")
    return _parse(text, f"catalog file {key}.toml", default_name=key)


def catalog() -> list[Device]:
    """Every catalog device, sorted by name.

    >>> all(d.budget_bytes > 0 for d in catalog())
    True
    """
    return [get(n) for n in names()]


def load_file(path: str | os.PathLike) -> Device:
    """A device described in a user's TOML file (format: the module docstring; ``memsim devices --template``).

    Raises InputError when the file is missing, is not TOML, or a field is missing or invalid; the
    message names the file, the field and the valid values.

    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "board.toml"
    >>> _ = path.write_text('kind = "cpu"\\ntotal_memory = "8 GiB"\\nos_reserved = "512 MiB"\\n')
    >>> load_file(path).budget_bytes == 8 * 2**30 - 512 * 2**20
    True
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"device file {str(path)!r} not found")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"device file {str(path)!r} cannot be read: {e}") from None
    return _parse(text, f"device file {str(path)!r}", default_name=p.stem)


def from_budget(budget: int | str, *, runtime_bytes: int | None = None) -> Device:
    """A generic CPU device for ``--budget 3.5GiB``: ``budget`` is the memory the training process may use.

    No OS reserve; the process's own Python + torch baseline (``runtime_bytes``, default
    :data:`TORCH_PROCESS_BASELINE_BYTES`) counts against the budget, as it does under a container memory
    limit. The CPU allocator model applies.

    >>> d = from_budget("3.5GiB")
    >>> d.name, d.os_reserved_bytes, d.allocator.value
    ('budget-3.50GiB', 0, 'cpu')
    """
    total = parse_size(budget)
    runtime = TORCH_PROCESS_BASELINE_BYTES if runtime_bytes is None else int(runtime_bytes)
    if runtime < 0:
        raise InputError(f"bad runtime_bytes {runtime_bytes!r}: must be zero or more")
    label = format_bytes(total).replace(" ", "")
    return Device(
        name=f"budget-{label}", display_name=f"{format_bytes(total)} budget", kind=DeviceKind.CPU,
        total_bytes=total, os_reserved_bytes=0, runtime_bytes=runtime, allocator=AllocatorKind.CPU,
        sources={"total_memory": "--budget given by the user",
                 "runtime": "memsim.simulation.devices.TORCH_PROCESS_BASELINE_BYTES (python + torch resident size, measured)"},
        notes="memory available to the training process (container or cgroup limit); no OS reserve",
        runtime_parts={"torch_process": runtime}, **_this_cpu(),
    )


def host() -> Device:
    """This machine as a CPU device, measured now (Linux; elsewhere only the total is known).

    ``total_bytes`` is the RAM, or the container's memory limit (cgroup v2 ``memory.max``) when smaller;
    ``os_reserved_bytes`` is what other processes use now (MemTotal − MemAvailable − this process's RSS);
    ``runtime_bytes`` is :data:`TORCH_PROCESS_BASELINE_BYTES`.

    >>> host().kind.value
    'cpu'
    """
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    used_by_others = 0
    sources = {"total_memory": "os.sysconf: SC_PHYS_PAGES x SC_PAGE_SIZE"}
    meminfo = _read_kib_fields("/proc/meminfo", ("MemTotal", "MemAvailable"))
    own = _read_kib_fields("/proc/self/status", ("VmRSS",)).get("VmRSS", 0)
    if "MemTotal" in meminfo and "MemAvailable" in meminfo:
        total = meminfo["MemTotal"]
        used_by_others = max(0, meminfo["MemTotal"] - meminfo["MemAvailable"] - own)
        sources = {"total_memory": "/proc/meminfo MemTotal",
                   "os_reserved": "/proc/meminfo MemTotal - MemAvailable - this process's VmRSS, at load time"}
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        limit = "max"
    if limit.isdigit() and 0 < int(limit) < total:
        total = int(limit)
        used_by_others = 0  # the limit applies to this container's processes only
        sources = {"total_memory": "cgroup v2 memory.max (container memory limit)"}
    sources["runtime"] = "memsim.simulation.devices.TORCH_PROCESS_BASELINE_BYTES (python + torch resident size, measured)"
    return Device(
        name="host", display_name=f"this machine ({os.cpu_count()} CPUs)", kind=DeviceKind.CPU, total_bytes=total,
        os_reserved_bytes=min(used_by_others, max(0, total - TORCH_PROCESS_BASELINE_BYTES - 1)), runtime_bytes=TORCH_PROCESS_BASELINE_BYTES,
        allocator=AllocatorKind.CPU, cpu_cores=os.cpu_count(), sources=sources,
        notes="measured when loaded; other programs' memory use changes",
        runtime_parts={"torch_process": TORCH_PROCESS_BASELINE_BYTES}, **_this_cpu(),
    )


def _this_cpu() -> dict:
    """Backend and threads of this machine's CPU (x86 when the architecture is not recognised)."""
    import platform

    return {"backend": host_backend({"machine": platform.machine()}) or Backend.X86,
            "threads": os.cpu_count() or 1}


def _read_kib_fields(path: str, keys: tuple[str, ...]) -> dict[str, int]:
    """``{key: bytes}`` for lines ``Key:   123 kB`` of a /proc file (missing file or keys are left out)."""
    out: dict[str, int] = {}
    try:
        for line in Path(path).read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in keys and rest.split():
                out[key] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    return out


def template() -> str:
    """The commented device-file template from this module's docstring (for ``memsim devices --template``)."""
    doc = __doc__ or ""
    start = doc.index("    # memsim device file")
    end = doc.index("\n\n", doc.index("[sources]", start))
    return "\n".join(line[4:] for line in doc[start:end].splitlines()) + "\n"


def measure_torch_baseline_bytes(python: str | None = None) -> int:
    """Resident memory (bytes, VmHWM) of a fresh Python process after ``import torch`` and a tiny matmul
    with backward: the CPU-side runtime of a training process. Linux only (reads /proc). Takes ~2 s.

    This is how :data:`TORCH_PROCESS_BASELINE_BYTES` was measured; run it on the target board to replace
    the catalog's x86 figure.

    >>> measure_torch_baseline_bytes() // 2**20  # doctest: +SKIP
    225
    """
    code = ("import torch\n"
            "x = torch.randn(64, 64, requires_grad=True); (x @ x).relu().sum().backward()\n"
            "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])\n")
    out = subprocess.run([python or sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip()) * 1024


# ---- parsing and validation (one place for every field) ----

_TOP_KEYS = {"name", "display_name", "kind", "allocator", "total_memory", "os_reserved", "swap", "notes",
             "runtime", "compute", "sources", "backend", "threads", "cuda_capability", "cpu_backend", "uncertainty"}
_DEFAULT_BACKEND = {DeviceKind.JETSON: Backend.CUDA, DeviceKind.CUDA_GPU: Backend.CUDA, DeviceKind.CPU: Backend.X86}
_COMPUTE_KEYS = {"bandwidth", "flops_fp32", "flops_fp16", "cpu_cores"}


def _parse(text: str, where: str, default_name: str) -> Device:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"{where} is not valid TOML: {e}") from None
    _check_keys(data, _TOP_KEYS, where, "")
    name = _text(data, "name", where, default_name)
    if not name or any(c.isspace() for c in name):
        raise InputError(f"{where}: bad name {name!r}: expected a non-empty name without spaces")
    kind = _choice(data, "kind", DeviceKind, where, required=True)
    allocator = _choice(data, "allocator", AllocatorKind, where, required=False) or _DEFAULT_ALLOCATOR[kind]
    if (kind is DeviceKind.CPU) != (allocator is AllocatorKind.CPU):
        raise InputError(f"{where}: allocator {allocator.value!r} does not match kind {kind.value!r}; valid: "
                         "'cpu' for kind 'cpu', 'cuda-caching' for kinds 'jetson' and 'cuda-gpu'")
    total = _size(data, "total_memory", where, required=True)
    os_reserved = _size(data, "os_reserved", where, required=False) or 0

    runtime = _table(data, "runtime", where)
    _check_keys(runtime, set(_RUNTIME_PARTS), where, "runtime.")
    parts = {k: _size(runtime, k, where, required=False, prefix="runtime.", allow_zero=True) for k in runtime}
    if kind is DeviceKind.CPU and parts.get("cuda_context"):
        raise InputError(f"{where}: runtime.cuda_context must be 0 for kind 'cpu' (no CUDA on a CPU device)")

    compute = _table(data, "compute", where)
    _check_keys(compute, _COMPUTE_KEYS, where, "compute.")
    bandwidth = _size(compute, "bandwidth", where, required=False, prefix="compute.")
    flops32 = _number(compute, "flops_fp32", where)
    flops16 = _number(compute, "flops_fp16", where)
    cores = compute.get("cpu_cores")
    if cores is not None and (not isinstance(cores, int) or isinstance(cores, bool) or cores <= 0):
        raise InputError(f"{where}: bad compute.cpu_cores {cores!r}: expected a positive integer")

    backend = _choice(data, "backend", Backend, where, required=False) or _DEFAULT_BACKEND[kind]
    if backend.is_cpu != (kind is DeviceKind.CPU):
        raise InputError(f"{where}: backend {backend.value!r} does not match kind {kind.value!r}; valid: 'x86' or "
                         "'aarch64' for kind 'cpu', 'cuda' for kinds 'jetson' and 'cuda-gpu'")
    cpu_backend = _choice(data, "cpu_backend", Backend, where, required=False)
    if cpu_backend is not None and not cpu_backend.is_cpu:
        raise InputError(f"{where}: bad cpu_backend 'cuda'; valid values: x86, aarch64")
    threads = data.get("threads", cores or 1)
    if not isinstance(threads, int) or isinstance(threads, bool) or threads <= 0:
        raise InputError(f"{where}: bad threads {threads!r}: expected a positive integer")
    capability = _capability(data, where, backend)
    uncertainty = _size(data, "uncertainty", where, required=False)
    swap = data.get("swap", False)
    if not isinstance(swap, bool):
        raise InputError(f"{where}: bad swap {swap!r}: expected true or false")
    sources = _table(data, "sources", where)
    for k, v in sources.items():
        if not isinstance(v, str):
            raise InputError(f"{where}: bad sources.{k} {v!r}: expected text")

    dev = Device(
        name=name, display_name=_text(data, "display_name", where, name), kind=kind, total_bytes=total,
        os_reserved_bytes=os_reserved, runtime_bytes=sum(parts.values()), allocator=allocator,
        bandwidth_bytes_per_s=float(bandwidth) if bandwidth is not None else None, flops_fp32=flops32,
        flops_fp16=flops16, cpu_cores=cores, swap=swap, sources=dict(sources),
        notes=_text(data, "notes", where, ""), runtime_parts=parts, backend=backend, threads=threads,
        cuda_capability=capability, cpu_backend=cpu_backend, uncertainty=uncertainty,
    )
    if dev.budget_bytes <= 0:
        raise InputError(f"{where}: os_reserved ({format_bytes(os_reserved)}) + runtime "
                         f"({format_bytes(dev.runtime_bytes)}) leave nothing of total_memory "
                         f"({format_bytes(total)}) for training")
    return dev


def _capability(data: Mapping, where: str, backend: Backend) -> tuple | None:
    value = data.get("cuda_capability")
    if value is None:
        return None
    if backend is not Backend.CUDA:
        raise InputError(f"{where}: cuda_capability applies to backend 'cuda' only")
    try:
        major, minor = (int(p) for p in str(value).split("."))
    except ValueError:
        raise InputError(f"{where}: bad cuda_capability {value!r}: expected major.minor such as '8.7'") from None
    return (major, minor)


def _check_keys(table: Mapping, valid: set[str], where: str, prefix: str) -> None:
    unknown = sorted(set(table) - valid)
    if unknown:
        raise InputError(f"{where}: unknown field {prefix}{unknown[0]!r}; valid fields"
                         f"{' in [' + prefix[:-1] + ']' if prefix else ''}: {', '.join(sorted(valid))}")


def _table(data: Mapping, key: str, where: str) -> Mapping:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        raise InputError(f"{where}: {key} must be a table ([{key}]), got {value!r}")
    return value


def _text(data: Mapping, key: str, where: str, default: str) -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        raise InputError(f"{where}: bad {key} {value!r}: expected text")
    return value.strip()


def _choice(data: Mapping, key: str, enum: type[Enum], where: str, required: bool):
    if key not in data:
        if required:
            raise InputError(f"{where}: missing field {key!r}; valid values: {', '.join(m.value for m in enum)}")
        return None
    try:
        return choose(enum, data[key], key)
    except InputError as e:
        raise InputError(f"{where}: {e}") from None


def _size(data: Mapping, key: str, where: str, required: bool, prefix: str = "", allow_zero: bool = True):
    if key not in data:
        if required:
            raise InputError(f"{where}: missing field {prefix}{key!r}: expected a size such as '4 GiB'")
        return None
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InputError(f"{where}: bad {prefix}{key} {value!r}: expected a size such as '4 GiB' or a byte count")
    if allow_zero and not required and _is_zero(value):
        return 0
    try:
        return parse_size(value)
    except InputError as e:
        raise InputError(f"{where}: {prefix}{key}: {e}") from None


def _is_zero(value) -> bool:
    """True for 0, "0", "0 B", "0 MiB"... (parse_size rejects zero; optional sizes may be zero)."""
    if isinstance(value, str):
        value = value.strip().rstrip("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ").strip()
        try:
            return float(value) == 0.0
        except ValueError:
            return False
    return value == 0


def _number(data: Mapping, key: str, where: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise InputError(f"{where}: bad compute.{key} {value!r}: expected a positive number of FLOP/s (e.g. 472e9)")
    return float(value)
