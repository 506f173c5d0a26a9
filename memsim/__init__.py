"""memsim: predict and shrink the peak memory of one PyTorch training step on small devices.

The heavy parts (torch, plotly) are imported on first use so that ``memsim --version`` and re-simulating a
saved trace stay fast. The packages, in the order data flows through them: ``core`` (errors, choices,
units, the timeline and :class:`Trace`), ``tracing`` (one training step on fake tensors), ``backends``
(kernel scratch per backend), ``measure`` (ground truth: profiler peaks, sparsity), ``simulation``
(policies, allocator, devices → :class:`Report`), ``runtime`` (compressed activations in real training),
``output`` (text, figures, HTML), ``workflow`` (:func:`profile`: the CLI's answer as one call) and ``cli``.

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
    "Trace": "memsim.core.trace:Trace",
    "Category": "memsim.core.categories:Category",
    "Phase": "memsim.core.categories:Phase",
    "measure_sparsity": "memsim.measure.sparsity:measure_sparsity",
    "simulate": "memsim.simulation.simulate:simulate",
    "Report": "memsim.simulation.simulate:Report",
    "profile": "memsim.workflow.profile:profile",
    "compressed_activations": "memsim.runtime.hooks:compressed_activations",
    "MemsimError": "memsim.core.errors:MemsimError",
}
# the packages, in the order data flows through them (README "Architecture")
_SUBMODULES = {"codec", "core", "tracing", "backends", "measure", "simulation", "runtime", "output", "workflow",
               "cli"}

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
