"""Construct a zoo model: validate the request, build on the asked device, optionally load a checkpoint."""
from __future__ import annotations

import contextlib
import os
from typing import Any

import torch
from torch import nn

from memsim.core.errors import InputError
from models_zoo.registry import check_overrides, lookup
from models_zoo.model_spec import _parse_device


def build(name: str, *, device: Any, weights: Any, seed: int | None, overrides: dict[str, Any]) -> nn.Module:
    """Implementation of :func:`models_zoo.create` (see there)."""
    entry = lookup(name)
    check_overrides(entry, overrides)
    target = _parse_device(device)
    if target.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {str(device)!r} asked for, but this torch build sees no CUDA device; "
                         "use 'cpu' or 'meta'")
    if weights is not None and target.type == "meta":
        raise InputError("weights cannot be loaded on the meta device; build on 'cpu' or 'cuda' instead")
    with _seeded(seed, target), _no_init_on_meta(target), target:
        try:
            model = entry.factory()(**overrides)
        except (TypeError, ValueError, ZeroDivisionError) as exc:
            shown = ", ".join(f"{k}={v!r}" for k, v in overrides.items()) or "defaults"
            raise InputError(f"cannot build {name!r} with {shown}: {exc}") from exc
    if weights is not None:
        _load_weights(model, weights, target)
    return model


@contextlib.contextmanager
def _no_init_on_meta(device: torch.device):
    """Meta tensors hold no values, so random initialisation is pointless there — and costly: on meta,
    ``nn.init`` goes through torch._refs, whose first use imports torch._dynamo (seconds)."""
    if device.type != "meta":
        yield
        return
    names = [n for n in dir(nn.init) if n.endswith("_") and not n.startswith("_") and callable(getattr(nn.init, n))]
    saved = {n: getattr(nn.init, n) for n in names}
    try:
        for n in names:
            setattr(nn.init, n, lambda tensor, *args, **kwargs: tensor)
        yield
    finally:
        for n, fn in saved.items():
            setattr(nn.init, n, fn)


@contextlib.contextmanager
def _seeded(seed: int | None, device: torch.device):
    if seed is None:
        yield
        return
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _load_weights(model: nn.Module, path: Any, device: torch.device) -> None:
    if not isinstance(path, (str, os.PathLike)) or not os.path.isfile(path):
        raise InputError(f"weights file {path!r} does not exist")
    try:
        state = torch.load(path, weights_only=True, map_location=device)
    except Exception as exc:  # torch raises many types for a corrupt or unsafe file
        raise InputError(f"cannot read weights {path!r} as a state_dict: {exc}") from exc
    if not isinstance(state, dict):
        raise InputError(f"weights {path!r} hold a {type(state).__name__}, expected a state_dict (dict)")
    ignored = getattr(model, "ignored_checkpoint_suffixes", ())
    state = {k: v for k, v in state.items() if not k.endswith(tuple(ignored))}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise InputError(f"weights {path!r} do not match the model: {exc}") from exc
