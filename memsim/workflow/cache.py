"""On-disk cache of traced zoo-model steps, so a repeated ``memsim profile``/``check`` skips tracing.

A trace depends only on the model's code, the batch size, input shape, optimizer and the torch and memsim
code that traced it, so the key hashes exactly those (source files by size and modification time). Only
zoo models are cached: a user's factory can change without memsim knowing. The directory is
``$MEMSIM_CACHE_DIR``, else ``$XDG_CACHE_HOME/memsim``, else ``~/.cache/memsim``; set
``MEMSIM_CACHE_DIR=off`` (or pass ``--no-cache``) to disable it.

Example:
    >>> key = cache_key(model="resnet50", batch_size=8, input_shape=None, optimizer="momentum")
    >>> load(key) is None or isinstance(load(key)[0], Trace)
    True
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
from importlib import metadata
from pathlib import Path

from memsim.core.trace import Trace

_PACKAGE_ROOT = Path(__file__).resolve().parent.parent
# what a trace is made by: the tracer, the kernel probes, the trace format and the zoo's model code
_SOURCES = [_PACKAGE_ROOT / "tracing", _PACKAGE_ROOT / "backends", _PACKAGE_ROOT / "core",
            _PACKAGE_ROOT.parent / "models_zoo"]


def cache_dir() -> Path | None:
    """Where traces are cached, or None when caching is off."""
    env = os.environ.get("MEMSIM_CACHE_DIR")
    if env is not None:
        return None if env.strip().lower() in ("", "off", "0", "none") else Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "memsim"


def _code_fingerprint() -> str:
    h = hashlib.sha256()
    for root in _SOURCES:
        files = sorted(root.rglob("*.py")) if root.is_dir() else [root]
        for f in files:
            try:
                st = f.stat()
            except OSError:
                continue
            h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    try:
        h.update(metadata.version("torch").encode())
    except metadata.PackageNotFoundError:
        pass
    return h.hexdigest()


def cache_key(**fields) -> str:
    """A file name for a trace of ``fields`` (model, batch size, input shape, optimizer) with this code."""
    # CPU workspace rules depend on the thread count (torch's default: the cores it sees).
    threads = [os.cpu_count(), os.environ.get("OMP_NUM_THREADS"), os.environ.get("MKL_NUM_THREADS")]
    text = json.dumps({**fields, "threads": threads}, sort_keys=True, default=str) + _code_fingerprint()
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def load(key: str) -> tuple[Trace, Trace | None] | None:
    """The cached (trace, scaling trace or None), or None when absent or unreadable."""
    d = cache_dir()
    path = d / f"{key}.json.gz" if d else None
    if path is None or not path.is_file():
        return None
    try:
        data = json.loads(gzip.decompress(path.read_bytes()))
        tr = Trace.from_dict(data["trace"])
        scaled = data.get("scaled")
        return tr, (tr if scaled == "self" else Trace.from_dict(scaled) if scaled else None)
    except Exception:  # a damaged cache entry is simply traced again
        return None


def store(key: str, trace: Trace, scaled: Trace | None) -> None:
    """Cache a trace (best effort: a read-only or full disk only costs the next run a trace)."""
    d = cache_dir()
    if d is None:
        return
    data = {"trace": trace.to_dict(),
            "scaled": "self" if scaled is trace else scaled.to_dict() if scaled is not None else None}
    try:
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f"{key}.tmp{os.getpid()}"
        tmp.write_bytes(gzip.compress(json.dumps(data, separators=(",", ":")).encode(), compresslevel=1))
        tmp.replace(d / f"{key}.json.gz")
    except OSError:
        pass
