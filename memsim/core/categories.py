"""The fixed sets of choices that describe a training step: tensor categories and step phases.

One place for their display colours too, so the CLI text, the plots and the HTML report agree.
"""
from __future__ import annotations

from enum import Enum


class Category(str, Enum):
    """What a tensor storage holds during one training step.

    Members:
        PARAMETER: a model parameter (weights, biases), alive for the whole step.
        BUFFER: a registered module buffer (BatchNorm running statistics), alive for the whole step.
        INPUT: the step's input batch (and targets), held by the caller for the whole step.
        ACTIVATION: a forward result that autograd saves for the backward pass.
        GRADIENT: the ``.grad`` of a parameter, from its first accumulation in backward until ``zero_grad``.
        OPTIMIZER_STATE: momentum buffers, Adam moments and step counters, alive for the whole step.
        TEMPORARY: an intermediate that is not saved for backward (forward or backward scratch tensors).
        OUTPUT: the model output and the loss.
        WORKSPACE: scratch memory a kernel allocates and frees inside one op, owned by no tensor
            (oneDNN convolution buffers on the CPU, cuDNN workspaces on CUDA).
    """

    PARAMETER = "parameter"
    BUFFER = "buffer"
    INPUT = "input"
    ACTIVATION = "activation"
    GRADIENT = "gradient"
    OPTIMIZER_STATE = "optimizer_state"
    TEMPORARY = "temporary"
    OUTPUT = "output"
    WORKSPACE = "workspace"

    def __str__(self) -> str:
        return self.value


class Phase(str, Enum):
    """Where an op runs in the step.

    Members:
        FORWARD: the model's forward pass.
        LOSS: the loss function applied to the model output.
        BACKWARD: ``loss.backward()``.
        OPTIMIZER: ``optimizer.step()`` followed by ``zero_grad(set_to_none=True)``.
    """

    FORWARD = "forward"
    LOSS = "loss"
    BACKWARD = "backward"
    OPTIMIZER = "optimizer"

    def __str__(self) -> str:
        return self.value


# Colours for plots and terminal text; one entry per category, stacking order bottom → top.
CATEGORY_COLORS: dict[Category, str] = {
    Category.PARAMETER: "#4C72B0",
    Category.BUFFER: "#8172B3",
    Category.OPTIMIZER_STATE: "#64B5CD",
    Category.INPUT: "#937860",
    Category.ACTIVATION: "#DD8452",
    Category.GRADIENT: "#55A868",
    Category.TEMPORARY: "#CCB974",
    Category.OUTPUT: "#DA8BC3",
    Category.WORKSPACE: "#C44E52",
}

# ANSI 256-colour codes closest to CATEGORY_COLORS, for the CLI table.
CATEGORY_ANSI: dict[Category, int] = {
    Category.PARAMETER: 67,
    Category.BUFFER: 97,
    Category.OPTIMIZER_STATE: 74,
    Category.INPUT: 95,
    Category.ACTIVATION: 173,
    Category.GRADIENT: 71,
    Category.TEMPORARY: 179,
    Category.OUTPUT: 175,
    Category.WORKSPACE: 167,
}

PHASE_COLORS: dict[Phase, str] = {
    Phase.FORWARD: "rgba(76,114,176,0.06)",
    Phase.LOSS: "rgba(218,139,195,0.10)",
    Phase.BACKWARD: "rgba(221,132,82,0.06)",
    Phase.OPTIMIZER: "rgba(85,168,104,0.08)",
}
