"""The policies: how the tensors autograd saves for backward are stored. One enum for the simulator
(:func:`memsim.simulate`) and for real training (:func:`memsim.compressed_activations`).

Example:
    >>> Policy("bitmap+mask+indices").uses_mask, Policy.FP16.lossless, Policy.CHECKPOINT.in_runtime
    (True, False, False)
"""
from __future__ import annotations

from enum import Enum


class Policy(str, Enum):
    """How saved activations are stored.

    Members:
        NONE: as traced: every saved tensor dense.
        BITMAP: the paper: a saved tensor is stored as a bitmap of non-zeros + the packed non-zero values when
            that is smaller (lossless).
        BITMAP_MASK: BITMAP, plus 1 bit per element where the backward needs only a mask (a ReLU's own result,
            the input copy an in-place ReLU6 saves, dropout noise) (lossless).
        BITMAP_INDICES: BITMAP, plus MaxPool indices in the narrowest integer type (lossless).
        BITMAP_MASK_INDICES: BITMAP with both extras (lossless).
        FP16, BF16: saved float32 activations stored in half precision (LOSSY; simulated only).
        RECOMPUTE: the outputs of cheap ops (batch-norm apply, ReLU/ReLU6/GELU, residual add, max-pool) are
            not stored but recomputed in backward from what is kept anyway (convolution, matmul and attention
            outputs, batch statistics); the rest as BITMAP_MASK_INDICES (lossless; rules in
            :mod:`memsim.core.saved_rules`).
        PLAN: per saved tensor the cheapest choice that fits a device's budget: dense first, then bitmaps,
            masks and narrow indices, then recompute, then block checkpointing (:mod:`memsim.simulation.plan`).
        CHECKPOINT: activation checkpointing per block (√n blocks): recomputed in backward (simulated only).
    """

    NONE = "none"
    BITMAP = "bitmap"
    BITMAP_MASK = "bitmap+mask"
    BITMAP_INDICES = "bitmap+indices"
    BITMAP_MASK_INDICES = "bitmap+mask+indices"
    FP16 = "fp16"
    BF16 = "bf16"
    RECOMPUTE = "recompute"
    PLAN = "plan"
    CHECKPOINT = "checkpoint"

    def __str__(self) -> str:
        return self.value

    @property
    def lossless(self) -> bool:
        """Losses, gradients and weights stay bit-identical."""
        return self not in (Policy.FP16, Policy.BF16)

    @property
    def uses_bitmap(self) -> bool:
        return self.value.startswith("bitmap") or self in (Policy.RECOMPUTE, Policy.PLAN)

    @property
    def uses_mask(self) -> bool:
        return self in (Policy.BITMAP_MASK, Policy.BITMAP_MASK_INDICES, Policy.RECOMPUTE, Policy.PLAN)

    @property
    def uses_indices(self) -> bool:
        return self in (Policy.BITMAP_INDICES, Policy.BITMAP_MASK_INDICES, Policy.RECOMPUTE, Policy.PLAN)

    @property
    def in_runtime(self) -> bool:
        """Whether :func:`memsim.compressed_activations` applies it for real (the others are what-ifs)."""
        return self.uses_bitmap and self is not Policy.PLAN

    @property
    def description(self) -> str:
        return _DESCRIPTIONS[self]


_DESCRIPTIONS = {
    Policy.NONE: "as traced",
    Policy.BITMAP: "sparse bitmap codec on saved activations (lossless)",
    Policy.BITMAP_MASK: "bitmap + 1-bit masks for ReLU/ReLU6/Dropout (lossless)",
    Policy.BITMAP_INDICES: "bitmap + narrow MaxPool indices (lossless)",
    Policy.BITMAP_MASK_INDICES: "bitmap + 1-bit masks + narrow MaxPool indices (lossless)",
    Policy.FP16: "saved float32 activations stored as float16 (LOSSY)",
    Policy.BF16: "saved float32 activations stored as bfloat16 (LOSSY)",
    Policy.RECOMPUTE: "recompute cheap ops (BN apply, ReLU, add, max-pool) in backward, bitmaps for the rest (lossless)",
    Policy.PLAN: "per tensor, the least extra compute that fits the device (dense, bitmap, mask, recompute, checkpoint)",
    Policy.CHECKPOINT: "recompute each block's activations in backward (extra FLOPs)",
}
