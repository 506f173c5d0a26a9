"""The zoo's catalogue: which models exist, where their constructors live and how they are fed.

Pure data and string look-ups, no torch: ``models_zoo.names()`` and error messages for unknown names stay
instant. Constructors are imported only when a model or its spec is asked for.
"""
from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable

from memsim.core.choices import unknown
from memsim.core.errors import InputError


class Family(str, Enum):
    """Architecture family of a zoo model.

    RESNET: residual CNNs (resnet18/34/50/101). MOBILENET: depthwise-separable CNNs (v2, v3 small/large).
    VGG: plain conv stacks with large Linear heads. EFFICIENTNET: MBConv + squeeze-excitation + SiLU.
    DENSENET: concatenation skips. SQUEEZENET: Fire modules. VIT: vision transformers.
    GPT2: decoder-only causal language models. SMALL_CNN: the tiny CNN used by tests.
    """

    RESNET = "resnet"
    MOBILENET = "mobilenet"
    VGG = "vgg"
    EFFICIENTNET = "efficientnet"
    DENSENET = "densenet"
    SQUEEZENET = "squeezenet"
    VIT = "vit"
    GPT2 = "gpt2"
    SMALL_CNN = "small_cnn"


class Task(str, Enum):
    """What a model's output means, which fixes its input kind and default loss.

    IMAGE_CLASSIFICATION: float images (C, H, W) in, logits (batch, num_classes) out.
    LANGUAGE_MODELING: int64 token ids (seq_len,) in, logits (batch, seq_len, vocab_size) out.
    """

    IMAGE_CLASSIFICATION = "image_classification"
    LANGUAGE_MODELING = "language_modeling"


@dataclass(frozen=True)
class Entry:
    """One catalogue line: constructor location ("module:function") and default input/output sizes."""

    name: str
    family: Family
    task: Task
    factory_path: str
    default_batch_size: int
    image_size: int = 224          # image models: H = W in pixels
    num_classes: int = 1000        # image models
    vocab_size: int = 50257        # language models
    n_positions: int = 1024        # language models: longest context in tokens

    def factory(self) -> Callable[..., Any]:
        module_name, function_name = self.factory_path.split(":")
        return getattr(importlib.import_module(module_name), function_name)

    def override_names(self) -> list[str]:
        """Keyword arguments the constructor accepts, sorted."""
        return sorted(inspect.signature(self.factory()).parameters)


def _image(name: str, family: Family, factory: str, batch: int, **sizes: int) -> Entry:
    return Entry(name, family, Task.IMAGE_CLASSIFICATION, f"models_zoo.{factory}:{name}", batch, **sizes)


def _gpt2(name: str, batch: int) -> Entry:
    return Entry(name, Family.GPT2, Task.LANGUAGE_MODELING, f"models_zoo.gpt2:{name}", batch)


_ENTRIES: dict[str, Entry] = {
    e.name: e
    for e in [
        _image("small_cnn", Family.SMALL_CNN, "small_cnn", 64, image_size=32, num_classes=10),
        _image("resnet18", Family.RESNET, "resnet", 32),
        _image("resnet34", Family.RESNET, "resnet", 32),
        _image("resnet50", Family.RESNET, "resnet", 32),
        _image("resnet101", Family.RESNET, "resnet", 16),
        _image("mobilenet_v2", Family.MOBILENET, "mobilenet", 32),
        _image("mobilenet_v3_small", Family.MOBILENET, "mobilenet", 32),
        _image("mobilenet_v3_large", Family.MOBILENET, "mobilenet", 32),
        _image("vgg11", Family.VGG, "vgg", 16),
        _image("vgg16", Family.VGG, "vgg", 16),
        _image("vgg16_bn", Family.VGG, "vgg", 16),
        _image("efficientnet_b0", Family.EFFICIENTNET, "efficientnet", 32),
        _image("densenet121", Family.DENSENET, "densenet", 32),
        _image("squeezenet1_1", Family.SQUEEZENET, "squeezenet", 32),
        _image("vit_b_16", Family.VIT, "vit", 16),
        _image("vit_tiny", Family.VIT, "vit", 32),
        _gpt2("gpt2", 4),
        _gpt2("gpt2_medium", 2),
        _gpt2("gpt2_large", 1),
        _gpt2("gpt2_xl", 1),
    ]
}


def names() -> list[str]:
    """All zoo model names, sorted."""
    return sorted(_ENTRIES)


def lookup(name: str) -> Entry:
    """The catalogue entry for ``name``; InputError with close matches and all names if unknown."""
    if not isinstance(name, str) or name not in _ENTRIES:
        raise unknown("model", name, names())
    return _ENTRIES[name]


def check_overrides(entry: Entry, overrides: dict[str, Any]) -> None:
    """InputError naming the first override the constructor of ``entry`` does not accept."""
    valid = entry.override_names()
    for key in overrides:
        if key not in valid:
            raise InputError(
                f"model {entry.name!r} has no option {key!r}. Valid options: {', '.join(valid) or '(none)'}"
            )
