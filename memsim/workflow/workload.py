"""Turn what a user names on the command line into a model, inputs at any batch size and a loss.

MODEL is a zoo name (``resnet50``), ``package.module:factory`` or ``path/to/file.py:factory``; the
factory takes no arguments and returns an ``nn.Module`` or ``(module, inputs)``. Every failure is an
:class:`memsim.core.errors.InputError` / :class:`memsim.core.errors.ModelError` with one clear line.

Example:
    >>> w = load_workload("resnet18")
    >>> w.inputs(8, "meta").shape
    torch.Size([8, 3, 224, 224])
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from memsim.core.choices import one_of
from memsim.core.errors import InputError, ModelError


@dataclass
class Workload:
    """A model with a way to make inputs at a batch size (dim 0) and its loss (None = memsim's default).

    ``build(device)`` makes a fresh model ("meta" for tracing without memory, "cpu" for real weights).
    """

    name: str
    build: Callable[[str], Any]
    make_inputs: Callable[[int, str], Any]
    loss_fn: Callable | None
    default_batch_size: int

    def inputs(self, batch_size: int, device: str = "cpu"):
        return self.make_inputs(batch_size, device)


def parse_shape(text: str | None) -> tuple[int, ...] | None:
    """A per-sample input shape from "3,224,224" or "3x224x224" (no batch dimension)."""
    if text is None:
        return None
    parts = str(text).replace("x", ",").replace(" ", "").strip("()[]").split(",")
    try:
        shape = tuple(int(p) for p in parts if p != "")
    except ValueError:
        raise InputError(f"bad input shape {text!r}: expected comma-separated positive integers such as "
                         "'3,224,224' (per sample, without the batch dimension)") from None
    if not shape or any(d <= 0 for d in shape):
        raise InputError(f"bad input shape {text!r}: every dimension must be a positive integer")
    return shape


def load_workload(model: str, *, input_shape: tuple[int, ...] | None = None, weights: str | None = None) -> Workload:
    """Resolve MODEL (zoo name, ``package.module:factory`` or ``file.py:factory``) into a :class:`Workload`."""
    if not isinstance(model, str) or not model.strip():
        raise InputError("no model given: pass a zoo name (see `python -c 'import models_zoo; "
                         "print(models_zoo.names())'`), package.module:factory or path/to/file.py:factory")
    if ":" in model:
        if weights:
            raise InputError("--weights applies to zoo models only; load them in your factory instead")
        return _factory_workload(model, input_shape)
    return _zoo_workload(model.strip(), input_shape, weights)


def _zoo_workload(name: str, input_shape, weights) -> Workload:
    import models_zoo

    one_of(name, models_zoo.names(), "model", more="package.module:factory or path/to/file.py:factory")
    if weights and not Path(weights).is_file():
        raise InputError(f"weights file not found: {weights}")
    spec = models_zoo.spec(name)

    def make_inputs(batch: int, device: str):
        import torch

        if input_shape is None:
            return spec.example_inputs(batch, device=device)
        if spec.input_dtype.is_floating_point:
            return torch.randn((batch, *input_shape), dtype=spec.input_dtype, device=device)
        hi = spec.vocab_size or 2
        return torch.randint(0, hi, (batch, *input_shape), dtype=spec.input_dtype, device=device)

    def build(device: str):
        return models_zoo.create(name, device=device, weights=weights if device != "meta" else None)

    return Workload(name, build, make_inputs, spec.loss_fn, spec.default_batch_size)


def _factory_workload(target: str, input_shape) -> Workload:
    where, _, attr = target.rpartition(":")
    if not where or not attr:
        raise InputError(f"bad model {target!r}: expected package.module:factory or path/to/file.py:factory")
    module = _import_target(where, target)
    factory = getattr(module, attr, None)
    if factory is None or not callable(factory):
        have = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))]
        raise InputError(f"{where!r} has no callable {attr!r}; callables there: {', '.join(have) or 'none'}")

    def call_factory():
        try:
            return factory()
        except Exception as e:  # the user's code failed: say so in one line
            raise ModelError(f"factory {target} raised {type(e).__name__}: {e}") from e

    import torch

    first = call_factory()
    module_obj, example = (first if isinstance(first, tuple) else (first, None))
    if not isinstance(module_obj, torch.nn.Module):
        raise InputError(f"factory {target} returned {type(module_obj).__name__}; expected an nn.Module or "
                         "(nn.Module, inputs)")
    if example is None and input_shape is None:
        raise InputError(f"factory {target} returned no inputs: give --input-shape (per sample, e.g. 3,224,224) "
                         "or return (module, inputs) from the factory")
    example_batch = _batch_of(example) if example is not None else 1

    def make_inputs(batch: int, device: str):
        if example is None:
            return torch.randn((batch, *input_shape), device=device)
        return _resize_batch(example, batch, device)

    def build(device: str):
        m = call_factory()
        m = m[0] if isinstance(m, tuple) else m
        return m if device == "cpu" else m.to(device)

    return Workload(target, build, make_inputs, None, example_batch)


def module_workload(model, inputs=None, *, loss_fn: Callable | None = None,
                    input_shape: tuple[int, ...] | None = None) -> Workload:
    """A :class:`Workload` for a user's ``nn.Module`` object: ``inputs`` (dim 0 = batch) are resized to any
    batch size, or ``input_shape`` (per sample) makes random float inputs. The module itself is used as it
    is: tracing and measuring never modify it."""
    import torch

    if not isinstance(model, torch.nn.Module):
        raise InputError(f"model must be a zoo name, 'package.module:factory', 'file.py:factory' or an "
                         f"nn.Module, got {type(model).__name__}")
    if inputs is None and input_shape is None:
        raise InputError("an nn.Module needs inputs (one example batch) or input_shape (per sample)")
    default_batch = _batch_of(inputs) if inputs is not None else 1

    def make_inputs(batch: int, device: str):
        if inputs is None:
            return torch.randn((batch, *input_shape), device=device)
        return _resize_batch(inputs, batch, device)

    return Workload(type(model).__name__, lambda device: model, make_inputs, loss_fn, default_batch)


def _import_target(where: str, target: str):
    if where.endswith(".py") or "/" in where or "\\" in where:
        path = Path(where)
        if not path.is_file():
            raise InputError(f"model file not found: {where}")
        spec = importlib.util.spec_from_file_location(f"memsim_user_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as e:
            raise ModelError(f"importing {where} failed: {type(e).__name__}: {e}") from e
        return module
    try:
        return importlib.import_module(where)
    except ModuleNotFoundError as e:
        raise InputError(f"cannot import module {where!r} for {target!r}: {e}") from None
    except Exception as e:
        raise ModelError(f"importing {where} failed: {type(e).__name__}: {e}") from e


def _batch_of(example) -> int:
    import torch

    first = example[0] if isinstance(example, (tuple, list)) else example
    if not isinstance(first, torch.Tensor) or first.dim() == 0:
        raise InputError("the factory's inputs must be a tensor or a tuple of tensors with a batch dimension")
    return int(first.shape[0])


def _resize_batch(example, batch: int, device: str):
    """The factory's example inputs with dim 0 repeated or cut to ``batch`` (values do not matter)."""
    import torch

    def one(t):
        if not isinstance(t, torch.Tensor) or t.dim() == 0:
            return t
        reps = -(-batch // t.shape[0])
        out = t.repeat(reps, *([1] * (t.dim() - 1)))[:batch]
        return out.to(device) if device != "cpu" else out

    if isinstance(example, (tuple, list)):
        return tuple(one(t) for t in example)
    return one(example)
