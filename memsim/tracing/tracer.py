"""``trace()``: follow one steady-state training step on fake CPU tensors and build a :class:`Trace`."""
from __future__ import annotations

from typing import Any, Callable

from memsim.tracing import step as step_mod
from memsim.core.categories import Category, Phase
from memsim.core.errors import InputError, MemsimError, ModelError
from memsim.core.timeline import TensorRecord, Timeline
from memsim.tracing.kernels import KernelCallRecorder
from memsim.tracing.recorder import OpFailed, Recorder, _tensors
from memsim.core.trace import Trace


def _describe_failure(e: BaseException, phase: Phase, rec) -> str:
    """One line saying where the step failed and why, for a :class:`ModelError`."""
    if isinstance(e, OpFailed):
        cause = e.error
        where = f"at {e.op} in module '{e.module or '(top level)'}'"
    else:
        cause = e
        where = f"in module '{rec.module_stack[-1] or '(top level)'}'"
        if rec.last_op:
            where += f" (last op {rec.last_op})"
    kind = type(cause).__name__
    hint = ""
    if "DynamicOutputShape" in kind or "DataDependent" in kind:
        hint = (" — the op's output shape depends on tensor values, which memsim does not have (it traces "
                "on fake tensors); see memsim.tracing 'Known limitations'")
    return f"the {phase.value} pass failed {where}: {kind}: {cause}{hint}"


def _known_optimizer_state(opt) -> bool:
    """Create the state torch's SGD/Adam/AdamW make on their first step directly (same tensors, same
    shapes and dtypes, without running a step); False for other optimizers."""
    import torch
    from torch.optim.optimizer import _get_scalar_dtype

    kind = type(opt)
    if kind is torch.optim.SGD:
        for group in opt.param_groups:
            if group["momentum"] != 0:
                for p in group["params"]:
                    if p.requires_grad:   # SGD clones the first gradient, which has the parameter's layout
                        opt.state[p]["momentum_buffer"] = torch.empty_like(p, memory_format=torch.preserve_format)
        return True
    if kind in (torch.optim.Adam, torch.optim.AdamW):
        for group in opt.param_groups:
            for p in group["params"]:
                if not p.requires_grad:
                    continue
                state = opt.state[p]
                on_device = group.get("capturable") or group.get("fused")
                state["step"] = (torch.zeros((), dtype=_get_scalar_dtype(is_fused=group.get("fused")),
                                             device=p.device) if on_device
                                 else torch.tensor(0.0, dtype=_get_scalar_dtype()))
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                if group.get("amsgrad"):
                    state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return True
    return False


def _create_optimizer_state(opt, params: list, rec) -> None:
    """Make the optimizer state a real first step would make. torch's SGD/Adam/AdamW get it directly; any
    other optimizer runs one unrecorded step with zero gradients for every trainable parameter."""
    import torch

    rec.quiet = True
    try:
        with rec:
            if _known_optimizer_state(opt):
                return
            with torch.no_grad():
                for p in params:
                    if p.requires_grad:
                        p.grad = torch.zeros_like(p)
            opt.step()
            opt.zero_grad(set_to_none=True)
    finally:
        rec.quiet = False


def trace(model, inputs, loss_fn: Callable | None = None, optimizer: Any = "sgd") -> Trace:
    """Trace one steady-state training step of ``model`` on ``inputs`` without running it.

    The step is forward, ``loss_fn(output)``, ``backward()``, ``optimizer.step()``,
    ``zero_grad(set_to_none=True)`` with the optimizer state already created (see :mod:`memsim.tracing.step`). It
    runs on FakeTensorMode's fake CPU tensors: no memory proportional to weights or activations is
    allocated, and the user's ``model`` (real CPU or meta device) is not modified.

    Args:
        model: a ``torch.nn.Module``.
        inputs: a tensor or tuple of positional inputs (real, meta or fake; integer token ids work); dim 0
            of the first tensor is the batch.
        loss_fn: ``callable(output) -> scalar tensor``; default :func:`memsim.tracing.step.default_loss` (mean of the
            first output tensor).
        optimizer: "sgd", "momentum", "adam", "adamw" or ``callable(params) -> torch.optim.Optimizer``.

    Returns:
        A :class:`memsim.core.trace.Trace`; ``trace(...).peak_bytes`` is the predicted peak in bytes.

    Raises:
        InputError: a bad argument (unknown optimizer, not a module).
        ModelError: the step failed; the message names the phase, module path and op.

    Example:
        >>> import torch
        >>> tr = trace(torch.nn.Linear(1000, 1000), torch.randn(8, 1000), optimizer="momentum")
        >>> tr.peak_bytes > 3 * 1000 * 1000 * 4     # weights, momentum and gradient
        True
    """
    import torch
    from memsim.tracing.fake import fake_inputs, fake_model

    if not isinstance(model, torch.nn.Module):
        raise InputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    opt_spec = step_mod.validate_optimizer(optimizer)
    inputs = step_mod.as_input_tuple(inputs)

    rec = Recorder(KernelCallRecorder())      # the fake mode that also records, and notes kernel calls
    fmodel = fake_model(model, rec)
    finputs = fake_inputs(inputs, rec)
    names = _Names(fmodel)
    rec.param_module = {pid: n.rpartition(".")[0] for pid, n in names.params.items()}
    params = list(fmodel.parameters())
    try:
        opt = step_mod.make_optimizer(opt_spec, params)
        _create_optimizer_state(opt, params, rec)
    except MemsimError:
        raise
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"creating the optimizer state failed: {type(e).__name__}: {e}") from None

    state_entries = _register_pre_existing(rec, fmodel, finputs, opt, names)
    step = _run_step(rec, fmodel, finputs, loss_fn or step_mod.default_loss, opt, names)
    dropped = {idx for idx, pid in state_entries if pid not in step.got_grad}
    calls = list(rec.rules.calls)
    _size_kernel_calls(rec, calls)
    timeline, remap = _build_timeline(rec, step.grad_entries, step.output_entries, dropped, rec.param_module)
    for call in calls:
        call.workspace = remap.get(call.workspace, -1)
        call.outputs = tuple(remap.get(i, -1) if i >= 0 else -1 for i in call.outputs)
    del opt, fmodel, finputs, params
    for nid in step.graph.nodes:
        data = step.graph.nodes[nid]
        data["saved"] = [remap[i] for i in data["saved"] if i in remap]
    return Trace(timeline=timeline, graph=step.graph, meta=_meta(model, inputs, opt_spec), kernel_calls=calls)


class _Names:
    """Dotted names of a model's parameters, buffers and modules, by ``id()`` (first name wins for ties)."""

    def __init__(self, fmodel):
        self.params: dict[int, str] = {}
        for name, p in fmodel.named_parameters(remove_duplicate=False):
            self.params.setdefault(id(p), name)
        self.buffers: dict[int, str] = {}
        for name, b in fmodel.named_buffers(remove_duplicate=False):
            self.buffers.setdefault(id(b), name)
        self.modules: dict[int, str] = {}
        for name, m in fmodel.named_modules(remove_duplicate=False):
            self.modules.setdefault(id(m), name)


def _register_pre_existing(rec, fmodel, finputs, opt, names: _Names) -> list[tuple[int, int]]:
    """Register the storages alive before the step (parameters, buffers, inputs, optimizer state); returns
    ``(entry index, id(param))`` of every optimizer-state tensor."""
    import torch

    for p in fmodel.parameters():
        rec.register(p, 0, Category.PARAMETER, rec.param_module[id(p)], "", names.params[id(p)])
    for b in fmodel.buffers():
        name = names.buffers[id(b)]
        rec.register(b, 0, Category.BUFFER, name.rpartition(".")[0], "", name)
    for i, t in enumerate(_tensors(finputs, [])):
        rec.register(t, 0, Category.INPUT, "", "", f"input[{i}]")
    state_entries = []
    for p, state in opt.state.items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                idx = rec.register(value, 0, Category.OPTIMIZER_STATE, rec.param_module.get(id(p), ""), "",
                                   f"{key}:{names.params.get(id(p), '?')}")
                state_entries.append((idx, id(p)))
    return state_entries


class _StepResult:
    """What the recorded step left: the autograd graph, which parameters got gradients, the gradient and
    output entries."""

    def __init__(self):
        self.graph = None
        self.got_grad: set[int] = set()
        self.grad_entries: dict[int, str] = {}
        self.output_entries: set = set()


def _check_loss(loss) -> None:
    import torch

    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise ModelError(f"loss_fn must return a scalar tensor, got "
                         f"{type(loss).__name__}{tuple(getattr(loss, 'shape', ()))}")
    if loss.grad_fn is None:
        raise ModelError("the loss does not require grad: no parameter or input requires "
                         "grad, or the forward ran under torch.no_grad()")


def _run_step(rec, fmodel, finputs, loss_fn, opt, names: _Names) -> _StepResult:
    """Forward, loss, backward, ``optimizer.step()`` and ``zero_grad`` under the recorder, with module
    hooks that tell it which module runs; a failure becomes a :class:`ModelError` saying where."""
    import torch

    from memsim.tracing.graph import walk_graph

    def pre_hook(module, args):
        rec.push_module(names.modules.get(id(module), rec.module_stack[-1]))

    def post_hook(module, args, output):
        rec.pop_module()

    hooks = [torch.nn.modules.module.register_module_forward_pre_hook(pre_hook),
             torch.nn.modules.module.register_module_forward_hook(post_hook)]
    result = _StepResult()
    try:
        with rec:
            rec.phase = Phase.FORWARD
            try:
                out = fmodel(*finputs)
                rec.phase = Phase.LOSS
                result.output_entries = {rec.index_of(t) for t in _tensors(out, [])}
                loss = loss_fn(out)
                del out
                _check_loss(loss)
                result.output_entries.add(rec.index_of(loss))
                result.graph = walk_graph(loss.grad_fn, rec, names.params)
                rec.phase = Phase.BACKWARD
                loss.backward()
                del loss
                for p in fmodel.parameters():
                    if p.grad is not None:
                        result.got_grad.add(id(p))
                        result.grad_entries[rec.index_of(p.grad)] = names.params[id(p)]
                rec.phase = Phase.OPTIMIZER
                opt.step()
                opt.zero_grad(set_to_none=True)
            except MemsimError:
                raise
            except Exception as e:  # noqa: BLE001 - the user's model failed: say where
                raise ModelError(_describe_failure(e, rec.phase, rec)) from None
    finally:
        for h in hooks:
            h.remove()
    return result


def _meta(model, inputs: tuple, opt_spec) -> dict:
    """What was traced, and on which host (the probes' kernels)."""
    import torch

    from memsim import __version__
    from memsim.backends.host import host_signature

    first = next(iter(_tensors(inputs, [])), None)
    return {
        "model": type(model).__name__,
        "batch_size": int(first.shape[0]) if first is not None and first.dim() > 0 else None,
        "inputs": [{"shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", "")}
                   for t in _tensors(inputs, [])],
        "optimizer": step_mod.optimizer_label(opt_spec),
        "torch_version": torch.__version__,
        "memsim_version": __version__,
        "host": host_signature(),
    }


def _size_kernel_calls(rec, calls) -> None:
    """Probe the host's kernels for every kernel call (:mod:`memsim.backends.host`) and size the calls'
    workspaces (and backend-sized outputs) with what they measure (bytes)."""
    if not calls:
        return
    from memsim.backends.host import HostKernels

    HostKernels().cost(calls)
    for call in calls:
        workspace = rec.entries[call.workspace]
        workspace.nbytes = int(call.host.get("workspace", 0))
        workspace.shape = (workspace.nbytes,)
        for position, nbytes in call.host.get("outputs", {}).items():
            entry = call.outputs[int(position)]
            if entry >= 0:
                rec.entries[entry].nbytes = int(nbytes)


def _build_timeline(rec, grad_entries: dict, output_entries: set, dropped: set, param_module: dict):
    """Freeze the recorder's entries into a :class:`Timeline`; returns it and old→new id mapping."""
    n_ops = len(rec.ops)
    last = max(n_ops - 1, 0)
    records: list[TensorRecord] = []
    remap: dict[int, int] = {}
    for old, e in enumerate(rec.entries):
        if old in dropped:
            continue
        category = e.category
        name = e.name
        module = e.module
        if category is None:
            if old in grad_entries:
                category, name = Category.GRADIENT, f"grad:{grad_entries[old]}"
                module = grad_entries[old].rpartition(".")[0]
            elif e.saved_by:
                category = Category.ACTIVATION
            elif old in output_entries:
                category = Category.OUTPUT
            else:
                category = Category.TEMPORARY
        new = len(records)
        remap[old] = new
        death = last if e.death < 0 else e.death
        records.append(TensorRecord(new, int(e.nbytes), e.dtype, e.shape, category, min(e.birth, last), death,
                                    module, e.op, name, tuple(e.saved_by), tuple(e.uses),
                                    output_index=e.output_index, writes=tuple(e.writes)))
    return Timeline(ops=rec.ops, tensors=records), remap
