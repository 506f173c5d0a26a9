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
    fake). Parameters stay parameters."""
    import torch

    with fake_mode:
        f = torch.empty_strided(tuple(t.shape), tuple(t.stride()), dtype=t.dtype, device="cpu")
    if isinstance(t, torch.nn.Parameter):
        return torch.nn.Parameter(f, requires_grad=t.requires_grad)
    if t.requires_grad:
        f.requires_grad_(True)
    return f


def fake_model(model, fake_mode):
    """Deep copy of ``model`` whose parameters and buffers are fake CPU tensors (ties preserved)."""
    memo: dict[int, Any] = {}
    for t in list(model.parameters(recurse=True)) + list(model.buffers(recurse=True)):
        if id(t) not in memo:
            memo[id(t)] = fake_like(t, fake_mode)
    # Parameters can hide behind tied modules listed twice; named_* with remove_duplicate=False sees all.
    for _, t in model.named_parameters(remove_duplicate=False):
        if id(t) not in memo:
            memo[id(t)] = fake_like(t, fake_mode)
    return copy.deepcopy(model, memo)


def fake_inputs(inputs: tuple, fake_mode) -> tuple:
    """The positional inputs with every tensor (also inside lists/tuples/dicts) replaced by a fake one."""
    import torch
    from torch.utils._pytree import tree_map

    return tree_map(lambda x: fake_like(x, fake_mode) if isinstance(x, torch.Tensor) else x, inputs)
