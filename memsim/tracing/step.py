"""One steady-state training step, defined once for the tracer and for the measurements.

A step is: ``output = model(*inputs)``, ``loss = loss_fn(output)``, ``loss.backward()``,
``optimizer.step()``, ``optimizer.zero_grad(set_to_none=True)``. "Steady state" means the optimizer state
(momentum buffers, Adam moments) already exists, created by an earlier step (see :func:`warm_up`).

Example:
    >>> import torch
    >>> model = torch.nn.Linear(4, 2)
    >>> opt = make_optimizer("adam", model.parameters())
    >>> run_step(model, (torch.randn(3, 4),), default_loss, opt)
"""
from __future__ import annotations

from enum import Enum
from typing import Any, Callable, Iterable

from memsim.core.choices import choose
from memsim.core.errors import InputError

#: Learning rate of the named optimizers. It does not change memory; it only keeps real runs sane.
LEARNING_RATE = 1e-3


class OptimizerName(str, Enum):
    """The optimizers memsim knows by name (all ``torch.optim``, torch's defaults otherwise).

    Members:
        SGD: ``torch.optim.SGD`` without momentum (no state).
        MOMENTUM: ``torch.optim.SGD`` with momentum 0.9 (one momentum buffer per parameter).
        ADAM: ``torch.optim.Adam`` (two moments per parameter and a step counter).
        ADAMW: ``torch.optim.AdamW`` (as Adam).
    """

    SGD = "sgd"
    MOMENTUM = "momentum"
    ADAM = "adam"
    ADAMW = "adamw"

    def __str__(self) -> str:
        return self.value


OptimizerSpec = "str | OptimizerName | Callable[[Iterable], torch.optim.Optimizer]"


def validate_optimizer(optimizer: Any) -> "OptimizerName | Callable":
    """Return ``optimizer`` as an :class:`OptimizerName` or the callable itself.

    Raises :class:`memsim.core.errors.InputError` naming the bad value and the valid names.
    """
    if callable(optimizer) and not isinstance(optimizer, (str, OptimizerName)):
        return optimizer
    return choose(OptimizerName, optimizer, "optimizer", more="or a callable(params) -> torch.optim.Optimizer")


def optimizer_label(optimizer: Any) -> str:
    """A short name for reports: the enum value, or the callable's name."""
    opt = validate_optimizer(optimizer)
    if isinstance(opt, OptimizerName):
        return opt.value
    return getattr(opt, "__name__", type(opt).__name__)


def make_optimizer(optimizer: Any, params: Iterable):
    """Build a ``torch.optim.Optimizer`` over ``params``.

    ``optimizer`` is "sgd", "momentum" (SGD with momentum 0.9), "adam", "adamw" or a callable(params) →
    Optimizer. Named optimizers use lr=1e-3 and torch's default implementation for the parameters' device
    (``foreach=None``: on the CPU torch picks the single-tensor loop; on CUDA the foreach kernels). To trace
    a specific implementation pass a callable, e.g. ``lambda p: torch.optim.Adam(p, foreach=True)``.

    Example:
        >>> import torch
        >>> make_optimizer("momentum", torch.nn.Linear(2, 2).parameters()).defaults["momentum"]
        0.9
    """
    import torch

    opt = validate_optimizer(optimizer)
    params = list(params)
    if not isinstance(opt, OptimizerName):
        made = opt(params)
        if not isinstance(made, torch.optim.Optimizer):
            raise InputError(f"the optimizer callable returned {type(made).__name__}, "
                             f"not a torch.optim.Optimizer")
        return made
    if opt is OptimizerName.SGD:
        return torch.optim.SGD(params, lr=LEARNING_RATE)
    if opt is OptimizerName.MOMENTUM:
        return torch.optim.SGD(params, lr=LEARNING_RATE, momentum=0.9)
    if opt is OptimizerName.ADAM:
        return torch.optim.Adam(params, lr=LEARNING_RATE)
    return torch.optim.AdamW(params, lr=LEARNING_RATE)


def first_tensor(output: Any):
    """The tensor a default loss is taken of: ``output`` itself, or the first tensor found in a
    tuple/list/dict output (depth first), e.g. the logits of ``(logits, hidden)``."""
    import torch

    if isinstance(output, torch.Tensor):
        return output
    items = output.values() if isinstance(output, dict) else output
    if isinstance(items, (tuple, list)) or isinstance(output, dict):
        for item in items:
            found = first_tensor(item)
            if found is not None:
                return found
    return None


def default_loss(output: Any):
    """The loss used when none is given: ``first_tensor(output).float().mean()``.

    A mean of all output elements: one scalar whose backward is a tensor of the output's size (as for
    most real losses), so the backward pass touches every output element. For a tuple/list/dict output the
    first tensor is used (``(logits, hidden)`` → ``logits``).
    """
    tensor = first_tensor(output)
    if tensor is None:
        raise InputError(f"the model returned {type(output).__name__}, which holds no tensor to take a "
                         f"loss of; pass loss_fn=callable(output) -> scalar tensor")
    return tensor.float().mean()


def as_input_tuple(inputs: Any) -> tuple:
    """The model's positional inputs as a tuple (a single tensor becomes a 1-tuple)."""
    if isinstance(inputs, tuple):
        return inputs
    if isinstance(inputs, list):
        return tuple(inputs)
    return (inputs,)


def run_step(model, inputs: tuple, loss_fn: Callable | None, optimizer) -> None:
    """Run one training step on ``model`` (forward, loss, backward, ``optimizer.step()``,
    ``zero_grad(set_to_none=True)``). Keeps no reference to the output or the loss afterwards."""
    loss = (loss_fn or default_loss)(model(*inputs))
    loss.backward()
    del loss
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def warm_up(model, inputs: tuple, loss_fn: Callable | None, optimizer, steps: int = 1) -> None:
    """Run ``steps`` training steps so that the optimizer state exists (the next step is steady)."""
    for _ in range(steps):
        run_step(model, inputs, loss_fn, optimizer)
