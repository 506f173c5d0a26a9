"""ModelSpec: how to feed a zoo model one training step (input shape and dtype, batch size, loss)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from memsim.core.errors import InputError
from models_zoo.registry import Family, Task, check_overrides, lookup


@dataclass(frozen=True)
class ModelSpec:
    """Default inputs and loss of one zoo model.

    ``input_shape`` is per sample, without the batch dimension: (3, 224, 224) for images, (seq_len,) for
    token ids. ``num_classes`` is set for image models, ``vocab_size`` and ``max_seq_len`` for language models.

    Example:
        >>> s = spec("resnet18")
        >>> x = s.example_inputs(2)
        >>> tuple(x.shape), s.input_dtype
        ((2, 3, 224, 224), torch.float32)
    """

    name: str
    family: Family
    task: Task
    input_shape: tuple[int, ...]
    input_dtype: torch.dtype
    default_batch_size: int
    num_classes: int | None = None
    vocab_size: int | None = None
    max_seq_len: int | None = None

    def loss_fn(self, output: torch.Tensor) -> torch.Tensor:
        """Scalar cross-entropy of ``output`` against all-zero int64 targets made on output's device.

        Classification: output (batch, classes). Language modelling: logits (batch, seq, vocab), flattened to
        (batch*seq, vocab). Targets are zeros so the loss needs no data and works on meta/fake tensors.
        """
        if self.task is Task.LANGUAGE_MODELING:
            logits = output.reshape(-1, output.shape[-1])
        else:
            logits = output
        target = torch.zeros(logits.shape[0], dtype=torch.int64, device=logits.device)
        return F.cross_entropy(logits, target)

    def example_inputs(self, batch_size: int | None = None, device: Any = "cpu", seq_len: int | None = None,
                       seed: int | None = None) -> torch.Tensor:
        """A random input batch: standard-normal images or uniform token ids in [0, vocab_size).

        ``batch_size`` defaults to ``default_batch_size``; ``seq_len`` (language models only) defaults to the
        spec's sequence length. ``device="meta"`` returns meta tensors (no memory). ``seed`` makes the values
        reproducible (drawn on the CPU, then moved).

        Example:
            >>> spec("gpt2").example_inputs(2, seq_len=16).shape
            torch.Size([2, 16])
        """
        batch_size = self.default_batch_size if batch_size is None else batch_size
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch size must be a positive integer, got {batch_size!r}")
        shape = self.input_shape
        if seq_len is not None:
            if self.task is not Task.LANGUAGE_MODELING:
                raise InputError(f"seq_len applies to language models only; {self.name!r} takes images")
            shape = (_check_seq_len(seq_len, self.max_seq_len),)
        device = _parse_device(device)
        full_shape = (batch_size, *shape)
        if device.type == "meta":  # no values to draw; randn on meta would import torch._dynamo (seconds)
            return torch.empty(full_shape, dtype=torch.int64 if self.task is Task.LANGUAGE_MODELING
                               else self.input_dtype, device=device)
        generator = None
        gen_device = device
        if seed is not None and device.type != "meta":
            gen_device = torch.device("cpu")
            generator = torch.Generator().manual_seed(seed)
        if self.task is Task.LANGUAGE_MODELING:
            x = torch.randint(0, self.vocab_size, full_shape, dtype=torch.int64, device=gen_device,
                              generator=generator)
        else:
            x = torch.randn(full_shape, dtype=self.input_dtype, device=gen_device, generator=generator)
        return x.to(device)


def _parse_device(device: Any) -> torch.device:
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"invalid device {device!r}: expected e.g. 'cpu', 'cuda', 'cuda:0' or 'meta'") from exc


def _check_seq_len(seq_len: Any, max_seq_len: int | None) -> int:
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
        raise InputError(f"seq_len must be a positive integer, got {seq_len!r}")
    if max_seq_len is not None and seq_len > max_seq_len:
        raise InputError(f"seq_len {seq_len} is longer than the model's context of {max_seq_len} tokens")
    return seq_len


def spec(name: str, *, seq_len: int | None = None, **overrides: Any) -> ModelSpec:
    """The :class:`ModelSpec` of zoo model ``name``.

    ``seq_len`` shortens a language model's default input (tokens). ``overrides`` are the same keyword
    arguments given to :func:`models_zoo.create` (``num_classes``, ``image_size``, ``vocab_size``,
    ``n_positions``...), so the spec's sizes match the model built with them.

    Example:
        >>> spec("gpt2", seq_len=128).input_shape
        (128,)
    """
    entry = lookup(name)
    check_overrides(entry, overrides)
    if entry.task is Task.LANGUAGE_MODELING:
        n_positions = overrides.get("n_positions", entry.n_positions)
        vocab_size = overrides.get("vocab_size", entry.vocab_size)
        length = n_positions if seq_len is None else _check_seq_len(seq_len, n_positions)
        return ModelSpec(name, entry.family, entry.task, (length,), torch.int64, entry.default_batch_size,
                         vocab_size=vocab_size, max_seq_len=n_positions)
    if seq_len is not None:
        raise InputError(f"seq_len applies to language models only; {name!r} takes images")
    size = overrides.get("image_size", entry.image_size)
    return ModelSpec(name, entry.family, entry.task, (3, size, size), torch.float32, entry.default_batch_size,
                     num_classes=overrides.get("num_classes", entry.num_classes))
