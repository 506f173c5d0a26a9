"""models_zoo: PyTorch models users can profile by name, with torchvision's / Hugging Face's structure.

Our own implementations (torchvision and timm are not required): the same layers, module names and
parameter counts, so traces and measurements carry over to the originals.

Example:
    >>> import models_zoo
    >>> model = models_zoo.create("resnet18", num_classes=10)
    >>> s = models_zoo.spec("resnet18")
    >>> loss = s.loss_fn(model(s.example_inputs(2)))

Importing this package constructs nothing and does not import torch; ``create`` and ``spec`` do.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from models_zoo.registry import Family, Task, names

if TYPE_CHECKING:
    from models_zoo.model_spec import ModelSpec

__all__ = ["Family", "ModelSpec", "Task", "create", "names", "spec"]


def create(name: str, *, device: Any = "cpu", weights: Any = None, seed: int | None = None,
           **overrides: Any):
    """Build zoo model ``name`` (an ``nn.Module`` in training mode) with random weights.

    Args:
        name: one of :func:`names`.
        device: where parameters are allocated; ``"meta"`` builds without allocating memory (use it to
            count or trace big models such as gpt2_xl).
        weights: path of a state_dict saved with ``torch.save``; loaded with ``weights_only=True`` and
            strict key matching.
        seed: makes the random initialisation reproducible without touching the global RNG state.
        overrides: constructor options, e.g. ``num_classes=10`` or ``n_layer=2``.

    Raises:
        memsim.core.errors.InputError: unknown name (lists close and valid names), unknown option (lists valid
            ones), bad device, unreadable or mismatching weights.

    Example:
        >>> m = create("gpt2", device="meta")
        >>> sum(p.numel() for p in m.parameters())
        124439808
    """
    from models_zoo.build import build

    return build(name, device=device, weights=weights, seed=seed, overrides=overrides)


def spec(name: str, *, seq_len: int | None = None, **overrides: Any) -> "ModelSpec":
    """Default input shape/dtype, batch size and loss of ``name``; see :class:`models_zoo.model_spec.ModelSpec`.

    Example:
        >>> spec("resnet50").input_shape
        (3, 224, 224)
    """
    from models_zoo.model_spec import spec as _spec

    return _spec(name, seq_len=seq_len, **overrides)


def __getattr__(attr: str):
    if attr == "ModelSpec":
        return importlib.import_module("models_zoo.model_spec").ModelSpec
    raise AttributeError(f"module 'models_zoo' has no attribute {attr!r}")
