"""Ground truth: the measured peak memory of one real training step on the CPU.

Method (see DESIGN.md, "How to know a prediction is right"): run the step under
``torch.profiler.profile(activities=[CPU], profile_memory=True, record_shapes=True, with_stack=True)`` and
replay ``prof._memory_profile().timeline``: PREEXISTING and CREATE add bytes, DESTROY subtracts them
(INCREMENT_VERSION only re-labels a tensor and is ignored). The largest running sum is the peak. The
profiler sees every allocation of the CPU allocator, including kernel workspaces no tensor owns.

PREEXISTING counts only the storages the step touches (parameters, buffers, optimizer state, inputs); memory
the process holds but the step never uses is not part of a training step's peak.

Example:
    >>> import torch
    >>> m = measure_step_peak(torch.nn.Linear(1000, 1000), torch.randn(8, 1000), optimizer="momentum")
    >>> m.peak_bytes > 3 * 1000 * 1000 * 4   # weights + momentum + gradient
    True
"""
from __future__ import annotations

import copy
import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable

from memsim.tracing import step as step_mod


@dataclass
class MeasuredStep:
    """What the profiler saw during one step.

    Attributes:
        peak_bytes: largest live bytes during the step (bytes), baseline included.
        baseline_bytes: bytes alive at the start of the step that the step touches (bytes).
        end_bytes: bytes alive at the end (bytes).
        events: the replayed allocator timeline as ``(time_ns, action, delta_bytes)``, in order; ``action`` is
            "preexisting", "create" or "destroy". Time is -1 for pre-existing storages.
        peak_time_ns: time of the event that reached the peak.
    """

    peak_bytes: int
    baseline_bytes: int
    end_bytes: int
    events: list = field(default_factory=list, repr=False)
    peak_time_ns: int = -1

    def curve(self) -> list[int]:
        """Running live bytes after each event of :attr:`events`."""
        out, live = [], 0
        for _, _, delta in self.events:
            live += delta
            out.append(live)
        return out


def _replay(timeline) -> MeasuredStep:
    from torch.profiler._memory_profiler import Action

    events: list[tuple[int, str, int]] = []
    live = baseline = 0
    peak, peak_time = 0, -1
    for t, action, _key, size in timeline:
        if action == Action.PREEXISTING:
            delta = size
            baseline += size
        elif action == Action.CREATE:
            delta = size
        elif action == Action.DESTROY:
            delta = -abs(size)
        else:  # INCREMENT_VERSION: same storage, new version; no bytes move
            continue
        live += delta
        events.append((t, action.name.lower(), delta))
        if live > peak:
            peak, peak_time = live, t
    return MeasuredStep(peak_bytes=peak, baseline_bytes=baseline, end_bytes=live, events=events,
                        peak_time_ns=peak_time)


@contextlib.contextmanager
def _quiet_stderr():
    """Silence file descriptor 2 (kineto prints a line to it whenever a profiler starts or stops)."""
    import os
    import sys

    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class memory_profile:  # noqa: N801 - used like torch.profiler.profile
    """``torch.profiler.profile(activities=[CPU], profile_memory=True, **kwargs)`` without kineto's start and
    stop lines on stderr; ``.prof`` is the profiler once the block has run.

    Example:
        >>> import torch
        >>> with memory_profile() as p:
        ...     x = torch.zeros(1000)
        >>> any(e.name == "aten::zeros" for e in p.prof.events())
        True
    """

    def __init__(self, **kwargs):
        from torch.profiler import ProfilerActivity, profile

        self.prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True, **kwargs)

    def __enter__(self):
        with _quiet_stderr():
            self.prof.__enter__()
        return self

    def __exit__(self, *exc):
        with _quiet_stderr():
            return self.prof.__exit__(*exc)


def event_allocations(event) -> list[int]:
    """Allocation sizes (bytes; negative = free) of the allocator events inside one profiler event tree node,
    in time order."""
    from torch._C._profiler import _EventType

    acc: list[tuple[int, int]] = []

    def walk(e):
        if e.typed[0] == _EventType.Allocation:
            acc.append((e.start_time_ns, e.typed[1].alloc_size))
            return
        for c in e.children:
            walk(c)

    walk(event)
    acc.sort()
    return [size for _, size in acc]


def peak_and_net(sizes) -> tuple[int, int]:
    """(largest running sum, final sum) of allocation sizes: the peak above an op's start and what it leaves.

    >>> peak_and_net([100, 50, -100, 10])
    (150, 60)
    """
    live = peak = 0
    for size in sizes:
        live += size
        peak = max(peak, live)
    return peak, live


def op_allocations(prof, op_name: str) -> list[tuple[int, int]]:
    """(peak above the op's start, net at its end) in bytes of the allocator events inside each call of
    ``op_name`` ("aten::convolution") in a profile, in call order."""
    out = []

    def visit(e):
        if e.name == op_name:
            out.append(peak_and_net(event_allocations(e)))
            return
        for c in e.children:
            visit(c)

    for root in prof.profiler.kineto_results.experimental_event_tree():
        visit(root)
    return out


def measure_peak(fn: Callable[[], Any], context: Callable[[], contextlib.AbstractContextManager] | None = None
                 ) -> MeasuredStep:
    """Run ``fn()`` once under the memory profiler and return its measured peak.

    ``fn`` should run exactly one steady-state step and keep no reference to its results (anything it
    returns is dropped inside the profiled region). ``context`` is a zero-argument callable returning a
    context manager entered inside the profiled region around ``fn`` (e.g.
    ``memsim.compressed_activations``), so what it allocates is measured too.

    Example:
        >>> import torch, memsim
        >>> m = measure_peak(lambda: torch.zeros(1 << 20).sum(), context=memsim.compressed_activations)
        >>> m.peak_bytes >= 4 << 20                 # the 4 MiB of zeros
        True
    """
    with memory_profile(record_shapes=True, with_stack=True) as profiled:
        with (context() if context is not None else contextlib.nullcontext()):
            fn()
    return _replay(profiled.prof._memory_profile().timeline)


def measure_step_peak(model, inputs, loss_fn: Callable | None = None, optimizer: Any = "sgd",
                      warmup_steps: int = 1,
                      context: Callable[[], contextlib.AbstractContextManager] | None = None) -> MeasuredStep:
    """Measured peak memory (bytes) of one steady-state training step of ``model`` on the CPU.

    Works on a deep copy of ``model`` (the caller's weights and optimizer-free state are untouched): builds
    the optimizer (:func:`memsim.tracing.step.make_optimizer`), runs ``warmup_steps`` steps so the optimizer state
    exists, then profiles one step (:func:`memsim.tracing.step.run_step`). ``inputs`` is a tensor or a tuple of
    tensors on the CPU; ``loss_fn(output) -> scalar`` defaults to :func:`memsim.tracing.step.default_loss`.
    ``context`` as in :func:`measure_peak` (entered for the measured step only).

    Example:
        >>> import torch
        >>> m = measure_step_peak(torch.nn.Linear(100, 100), torch.randn(4, 100), optimizer="adam")
        >>> m.baseline_bytes >= 3 * 100 * 100 * 4 and m.peak_bytes > m.baseline_bytes   # weights + 2 moments
        True
    """
    opt_spec = step_mod.validate_optimizer(optimizer)
    model = copy.deepcopy(model)
    inputs = step_mod.as_input_tuple(inputs)
    opt = step_mod.make_optimizer(opt_spec, model.parameters())
    step_mod.warm_up(model, inputs, loss_fn, opt, warmup_steps)
    return measure_peak(lambda: step_mod.run_step(model, inputs, loss_fn, opt), context=context)
