"""Fake copies of the user's model and inputs: same shapes, dtypes, structure and hooks, no data.

The copy lives on FakeTensorMode's fake **CPU** tensors (so CPU-specific code paths are taken) and takes no
memory proportional to weights or activations. The user's model is never touched: parameters and buffers are
swapped for fake ones through ``copy.deepcopy``'s memo, so the real tensors are never copied.
"""
from __future__ import annotations

import copy
from typing import Any


def fake_like(t, fake_mode):
    """A fake CPU tensor with ``t``'s shape, strides, dtype and requires_grad (``t`` may be real, meta or
    fake). Parameters stay parameters (marked the way ``nn.Parameter`` marks tensor subclasses)."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensor

    if isinstance(t, FakeTensor) and t.fake_mode is fake_mode and t.device.type == "cpu":
        return t
    meta = torch.empty_strided(tuple(t.shape), tuple(t.stride()), dtype=t.dtype, device="meta")
    try:
        # Wrapping a meta tensor directly costs ~10x less than a factory call under the fake mode.
        f = FakeTensor(fake_mode, meta, torch.device("cpu"))
    except Exception:  # noqa: BLE001 - private constructor changed: take the public road
        with fake_mode:
            f = torch.empty_strided(tuple(t.shape), tuple(t.stride()), dtype=t.dtype, device="cpu")
    if t.requires_grad:
        f.requires_grad_(True)
    if isinstance(t, torch.nn.Parameter):
        f._is_param = True     # what nn.Parameter(f) does for a tensor subclass, without a detach op
    return f


def fake_model(model, fake_mode):
    """Deep copy of ``model`` whose parameters and buffers are fake CPU tensors (ties preserved)."""
    memo: dict[int, Any] = {}
    tensors = list(model.parameters(recurse=True)) + list(model.buffers(recurse=True))
    # Parameters can hide behind tied modules listed twice; named_* with remove_duplicate=False sees all.
    tensors += [t for _, t in model.named_parameters(remove_duplicate=False)]
    for t in tensors:
        if id(t) not in memo:
            memo[id(t)] = fake_like(t, fake_mode)
    return copy.deepcopy(model, memo)


def fake_inputs(inputs: tuple, fake_mode) -> tuple:
    """The positional inputs with every tensor (also inside lists/tuples/dicts) replaced by a fake one."""
    import torch
    from torch.utils._pytree import tree_map

    return tree_map(lambda x: fake_like(x, fake_mode) if isinstance(x, torch.Tensor) else x, inputs)
