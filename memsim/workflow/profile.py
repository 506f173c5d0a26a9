"""``memsim.profile``: everything ``memsim profile`` computes, as one library call.

Flow: MODEL → workload (model factory, inputs at any batch, loss) → trace at the batch size and at a second
one, to learn what grows with the batch (from the on-disk cache for zoo models) → sparsity → simulate every
requested policy on the device → :class:`~memsim.simulation.simulate.Report`. The CLI only parses arguments
and formats this report, so ``memsim.profile(...).to_dict()`` is what ``memsim profile ... --json -`` prints.

Example:
    >>> rep = profile("small_cnn", device="jetson-nano", batch_size=8, policy="none,bitmap", cache=False)
    >>> rep.fits, rep.max_batch_size > 8, rep.cache
    (True, True, 'off')
"""
from __future__ import annotations

import warnings
from typing import Any, Callable

from memsim.core.errors import InputError


def _trace_pair(workload, batch: int, optimizer):
    """The trace at ``batch`` and a trace that knows how the step grows with the batch (or None, with the
    reason in the first trace's notes)."""
    import memsim

    model = workload.build("meta")

    def at(b):
        return memsim.trace(model, workload.inputs(b, "meta"), loss_fn=workload.loss_fn, optimizer=optimizer)

    tr = at(batch)
    tr.meta["model"] = workload.name
    try:
        return tr, tr.attach_scaling(at(batch + 1 if batch == 1 else max(1, batch // 2)))
    except InputError as e:
        if batch != 1:
            tr.meta.setdefault("notes", []).append(f"no max batch size: {e}")
            return tr, None
    try:  # batch 1 often takes other code paths (squeezed dims): scale from batches 2 and 3
        return tr, at(2).attach_scaling(at(3))
    except InputError as e:
        tr.meta.setdefault("notes", []).append(f"no max batch size: {e}")
        return tr, None


def trace_workload(workload, batch_size: int | None, optimizer, *, cache: bool = True, cache_fields=None):
    """``(trace, scaling trace or None, cache use)`` for a :class:`~memsim.workflow.workload.Workload`.

    ``cache_fields`` (a dict naming the workload, for zoo models only) enables the on-disk trace cache
    (:mod:`memsim.workflow.cache`); cache use is "hit", "miss" or "off".
    """
    from memsim.workflow import cache as trace_cache

    batch = batch_size or workload.default_batch_size
    key = None
    if cache and cache_fields is not None and isinstance(optimizer, str) and trace_cache.cache_dir() is not None:
        key = trace_cache.cache_key(**cache_fields, batch_size=batch, optimizer=str(optimizer), scaling=True)
        hit = trace_cache.load(key)
        if hit is not None:
            return hit[0], hit[1], "hit"
    tr, scaled = _trace_pair(workload, batch, optimizer)
    if key is not None:
        trace_cache.store(key, tr, scaled)
    return tr, scaled, "miss" if key is not None else "off"


def resolve_sparsity(sparsity, workload, batch_size: int, warn: Callable[[str], None] | None = None):
    """The sparsity to simulate with: None for "none", the value itself for a fraction, dict or measurement,
    and for "measured" a real forward pass on random data (warnings go to ``warn``, else stay warnings)."""
    if sparsity is None or (isinstance(sparsity, str) and sparsity.strip().lower() == "none"):
        return None
    if not (isinstance(sparsity, str) and sparsity.strip().lower() == "measured"):
        return sparsity
    import memsim

    model = workload.build("cpu")
    inputs = workload.inputs(min(2, batch_size), "cpu")
    if warn is None:
        return memsim.measure_sparsity(model, inputs, random_data=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        measured = memsim.measure_sparsity(model, inputs, random_data=True)
    for c in caught:
        warn(str(c.message))
    return measured


def simulate_pair(trace, scaled, **kwargs):
    """:func:`memsim.simulate` on ``trace``; when only ``scaled`` (a trace at other batch sizes) knows how the
    step grows with the batch, the max batch sizes come from it."""
    import memsim

    rep = memsim.simulate(trace, **kwargs)
    if scaled is not None and scaled is not trace:
        _take_max_batch(rep, memsim.simulate(scaled, **kwargs))
    return rep


def _take_max_batch(report, other) -> None:
    for name, res in report.results.items():
        if res.plan is not None:
            continue  # a plan is made for the report's batch; its max batch is that plan's, from its own trace
        theirs = other.results[name]
        res.set_max_batch(theirs.max_batch_size, theirs.max_batch_method, report.batch_size)


#: Re-traces at the max batch found, until it repeats (it converges in one or two).
MAX_BATCH_ROUNDS = 3


def refine_max_batch(report, workload, optimizer, *, cache: bool, cache_fields, **sim_kwargs) -> None:
    """Make the max batch sizes independent of the batch that was traced: trace again at the max batch found
    (and half of it, for the scaling), search again from there, until the answer repeats. The report's
    figures at its own batch are kept; its max batch sizes (and the gate at its batch) come from the last
    round."""
    guide = next((name for name, r in report.results.items() if r.plan is None), None)
    if guide is None:  # only a plan: its max batch is the plan's own (see _take_max_batch)
        return
    found = report.results[guide].max_batch_size
    seen = {report.trace.batch_size}
    for _ in range(MAX_BATCH_ROUNDS):
        if not found or found in seen:
            return
        seen.add(found)
        trace, scaled, _ = trace_workload(workload, max(found, 2), optimizer, cache=cache,
                                          cache_fields=cache_fields)
        if scaled is None:
            return
        other = simulate_pair(trace, scaled, **sim_kwargs)
        _take_max_batch(report, other)
        report.notes[:] = [n for n in report.notes if not n.startswith("max batch searched from traces")]
        report.notes.append(f"max batch searched from traces at batches {trace.batch_size} and "
                            f"{trace.meta.get('scaling_batch')}")
        if other.results[guide].max_batch_size == found:
            return
        found = other.results[guide].max_batch_size


def profile(model, inputs=None, *, device: Any = "jetson-nano", batch_size: int | None = None,
            policy: Any = "all", sparsity: Any = 0.5, optimizer: Any = "momentum", loss_fn: Callable | None = None,
            input_shape: tuple | str | None = None, weights: str | None = None, margin: float = 0.0,
            backend: str | None = None, cache: bool = True, warn: Callable[[str], None] | None = None):
    """Predict one training step of ``model`` on ``device``: peak, fit, max batch and price per policy.

    Args:
        model: a zoo name ("resnet50"), "package.module:factory", "path/to/file.py:factory", or an
            ``nn.Module`` (then ``inputs`` or ``input_shape`` says what one batch is).
        inputs: example inputs for an ``nn.Module`` (dim 0 is the batch; resized to ``batch_size``).
        device: catalog name, :class:`~memsim.simulation.devices.Device` or None for this host.
        batch_size: the batch to predict (default: the model's default, or the inputs' batch).
        policy: policy name, comma-separated names, a list, or "all"; the first is the report's.
        sparsity: zero fraction of ReLU/Dropout outputs (0.5), "measured" (real forward pass on random data),
            None or "none" (dense), a dict ``{module prefix: fraction}`` or a measurement.
        optimizer: "sgd", "momentum", "adam", "adamw" or a callable(params) -> Optimizer.
        loss_fn: for an ``nn.Module``: callable(output) -> scalar (default: mean of the output).
        input_shape: per-sample input shape ("3,224,224") instead of the model's default.
        weights: a state_dict file for a zoo model (used by sparsity="measured").
        margin: fraction of the budget kept free.
        backend: "cpu" to train on the device's CPU side (a Jetson's Arm cores), or a backend name; default:
            the device's own.
        cache: reuse traces of zoo models from the on-disk cache (:mod:`memsim.workflow.cache`).
        warn: where warnings go (a callable taking one line); default: Python warnings.

    Returns:
        :class:`~memsim.simulation.simulate.Report` with ``cache`` ("hit", "miss" or "off"); sizes in bytes.

    Example:
        >>> rep = profile("small_cnn", device="raspberry-pi-5-8gb", batch_size=16, policy="none", cache=False)
        >>> rep.table_rows()[0]["policy"], rep.fits
        ('none', True)
    """
    from memsim.workflow.workload import load_workload, module_workload, parse_shape

    shape = parse_shape(input_shape) if isinstance(input_shape, str) else input_shape
    if isinstance(model, str):
        if inputs is not None or loss_fn is not None:
            raise InputError("inputs and loss_fn go with an nn.Module; a named model brings its own")
        workload = load_workload(model, input_shape=shape, weights=weights)
        zoo = ":" not in model
        fields = {"model": model, "input_shape": shape} if zoo else None
    else:
        if weights is not None:
            raise InputError("weights applies to zoo models; load them into your module instead")
        workload = module_workload(model, inputs, loss_fn=loss_fn, input_shape=shape)
        fields = None
    trace, scaled, cache_use = trace_workload(workload, batch_size, optimizer, cache=cache, cache_fields=fields)
    sp = resolve_sparsity(sparsity, workload, trace.batch_size or 1, warn=warn)
    sim = dict(device=device, policy=policy, sparsity=sp, margin=margin, backend=backend)
    report = simulate_pair(trace, scaled, **sim)
    refine_max_batch(report, workload, optimizer, cache=cache, cache_fields=fields, **sim)
    report.cache = cache_use
    return report
