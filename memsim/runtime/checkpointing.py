"""Block checkpointing for a plan's last rung: the named blocks of a model run under
``torch.utils.checkpoint`` (non-reentrant) while a ``compressed_activations`` block is active.

What is saved inside a checkpointed block goes to checkpoint's own saved-tensor hooks (the innermost hooks
apply) and is recomputed from the block's inputs in backward; the inputs themselves are saved through the
outer hooks, so a plan's bitmaps and recomputation still apply to them. The blocks' buffers are shielded in
the recomputation: each buffer is swapped for a copy while the block runs again, so batch norm's running
statistics (and ``num_batches_tracked``) are updated once per step, by the forward. The RNG state is
restored for the recomputation (dropout draws the same mask).

Example:
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8),
    ...                                                 torch.nn.ReLU()), torch.nn.Linear(8, 1))
    >>> with BlockCheckpointer(["0"], model):
    ...     model(torch.randn(3, 4)).sum().backward()
    >>> int(model[0][1].num_batches_tracked)
    1
"""
from __future__ import annotations

import contextlib
import functools
import threading

import torch
from torch.utils.checkpoint import checkpoint

from memsim.core.errors import InputError


class BlockCheckpointer:
    """Context manager: the modules at ``paths`` (module paths of ``model``, as ``named_modules`` gives them)
    run checkpointed inside it. Without ``model`` the root is the first module called in the block.

    Raises :class:`memsim.core.errors.InputError` when a path names no module of the model (listing a few
    that exist).
    """

    def __init__(self, paths, model: torch.nn.Module | None = None):
        self.paths = sorted(set(paths))
        self.model = model
        self.wrapped: list[tuple[torch.nn.Module, object]] = []   # (module, its own instance forward)
        self._hook = None

    def __enter__(self) -> "BlockCheckpointer":
        if self.model is not None:
            self._wrap(self.model)
        elif self.paths:
            def first_call(mod, _):
                self._hook.remove()
                self._hook = None
                self._wrap(mod)

            self._hook = torch.nn.modules.module.register_module_forward_pre_hook(first_call)
        return self

    def __exit__(self, *exc) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        for mod, previous in self.wrapped:
            if previous is None:
                mod.__dict__.pop("forward", None)
            else:
                mod.forward = previous
        self.wrapped = []

    def _wrap(self, root: torch.nn.Module) -> None:
        modules = dict(root.named_modules())
        missing = [p for p in self.paths if p not in modules]
        if missing:
            known = ", ".join(list(modules)[1:6])
            raise InputError(f"the plan checkpoints block {missing[0]!r}, which {type(root).__name__} has not "
                             f"(a plan for another model?); its modules include: {known}")
        for path in self.paths:
            mod = modules[path]
            previous = mod.__dict__.get("forward")   # a forward the user set on the instance runs as well
            if isinstance(previous, functools.partial) and previous.func is _checkpointed:
                continue  # already checkpointed by an enclosing block
            mod.forward = functools.partial(_checkpointed, mod, previous or type(mod).forward.__get__(mod))
            self.wrapped.append((mod, previous))


def _checkpointed(module: torch.nn.Module, forward, *args, **kwargs):
    if not torch.is_grad_enabled():
        return forward(*args, **kwargs)
    return checkpoint(forward, *args, use_reentrant=False, preserve_rng_state=True,
                      context_fn=functools.partial(_contexts, module), **kwargs)


class ProbeAborted(RuntimeError):
    """Raised out of a checkpointed block's recomputation started by a :func:`probing` question."""


_state = threading.local()


@contextlib.contextmanager
def probing():
    """While active, a checkpointed block's recomputation does not run: reading a saved tensor that
    checkpoint holds raises :class:`ProbeAborted` instead. The hooks ask which saved tensor is theirs by
    reading it (``_saved_by``); one held by checkpoint is not theirs, and answering must not run the block
    again in the forward pass."""
    before = getattr(_state, "probing", False)
    _state.probing = True
    try:
        yield
    finally:
        _state.probing = before


def _contexts(module: torch.nn.Module):
    return contextlib.nullcontext(), _ShieldedBuffers(module)


class _ShieldedBuffers:
    """Every buffer of ``module`` replaced by a copy while the body runs (the originals untouched, their
    version counters too, so no saved tensor of the forward sees a change). Re-entrant: a recomputation
    may run more than once."""

    def __init__(self, module: torch.nn.Module):
        self.module = module
        self.owners: list = []

    def __enter__(self):
        if getattr(_state, "probing", False):
            raise ProbeAborted("a saved tensor of a checkpointed block was read to answer a probe")
        owners = [(m, name, buf) for m in self.module.modules() for name, buf in m._buffers.items()
                  if buf is not None]
        for m, name, buf in owners:
            m._buffers[name] = buf.clone()
        self.owners.append(owners)
        return self

    def __exit__(self, *exc) -> None:
        for m, name, buf in self.owners.pop():
            m._buffers[name] = buf
