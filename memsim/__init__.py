"""memsim: predict and shrink the peak memory of one PyTorch training step on small devices.

The heavy parts (torch, plotly) are imported on first use so that ``memsim --version`` and re-simulating a
saved trace stay fast.

Example:
    >>> import memsim, models_zoo
    >>> tr = memsim.trace(models_zoo.create("small_cnn"), models_zoo.spec("small_cnn").example_inputs(2))
    >>> rep = memsim.simulate(tr, device="jetson-nano", policy="bitmap", sparsity=0.5)
    >>> rep.fits
    True
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> "module:attribute", resolved lazily (PEP 562)
_LAZY = {
    "trace": "memsim.tracing:trace",
    "Trace": "memsim.traced_step:Trace",
    "Category": "memsim.categories:Category",
    "Phase": "memsim.categories:Phase",
    "measure_sparsity": "memsim.sparsity:measure_sparsity",
    "simulate": "memsim.simulate:simulate",
    "Report": "memsim.simulate:Report",
    "compressed_activations": "memsim.runtime:compressed_activations",
    "MemsimError": "memsim.errors:MemsimError",
}
_SUBMODULES = {"codec", "devices", "policies", "timeline", "viz", "runtime", "tracing", "sparsity", "simulate",
               "html_report", "graph_export", "allocator", "units", "report_text", "step", "measure"}

__all__ = sorted([*_LAZY, "codec", "__version__"])


def __getattr__(name: str):
    if name in _LAZY:
        module, attr = _LAZY[name].split(":")
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"memsim.{name}")
    raise AttributeError(f"module 'memsim' has no attribute {name!r}")


def __dir__():
    return __all__
