"""PyTorch's own estimator for comparison: ``torch.distributed._tools.mem_tracker.MemTracker`` under
FakeTensorMode, used as its documentation shows (model and optimizer built under the fake mode, one warm-up
step so the optimizer state exists, then one tracked step)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable


@dataclass
class MemTrackerResult:
    peak_bytes: int       # MemTracker's peak of the tracked step (bytes)
    seconds: float        # wall time of the tracked step only (s)
    cpu_seconds: float    # CPU time of this process during the tracked step (s)


def memtracker_peak(make_model: Callable, make_inputs: Callable, loss_fn: Callable | None,
                    optimizer) -> MemTrackerResult:
    """Run MemTracker on one steady-state step of ``make_model()`` moved onto FakeTensorMode's fake tensors
    (``make_model`` may build on the meta device; its parameters become fake CPU tensors)."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.distributed._tools.mem_tracker import MemTracker

    from memsim.tracing import step as step_mod
    from memsim.tracing.fake import fake_inputs, fake_model

    fake_mode = FakeTensorMode(allow_non_fake_inputs=True)
    model = fake_model(make_model(), fake_mode)
    inputs = fake_inputs(step_mod.as_input_tuple(make_inputs()), fake_mode)
    with fake_mode:
        opt = step_mod.make_optimizer(optimizer, model.parameters())
        step_mod.warm_up(model, inputs, loss_fn, opt, 1)
        tracker = MemTracker()
        tracker.track_external(model, opt, *[t for t in inputs if isinstance(t, torch.Tensor)])
        start, cpu_start = time.perf_counter(), time.process_time()
        with tracker:
            step_mod.run_step(model, inputs, loss_fn, opt)
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        snap = tracker.get_tracker_snapshot("peak")
    peak = max((v.get("Total", 0) for v in snap.values()), default=0)
    return MemTrackerResult(int(peak), seconds, cpu_seconds)
