"""Backend targets: which rules describe what a backend's kernels allocate beyond their outputs."""
from __future__ import annotations

from enum import Enum

from memsim.errors import InputError


class Target(str, Enum):
    """The backend whose kernels a trace predicts.

    Members:
        CPU: PyTorch's CPU kernels (ATen native + oneDNN), rules in :mod:`memsim.tracing.cpu`.
    """

    CPU = "cpu"

    def __str__(self) -> str:
        return self.value


def validate_target(target) -> Target:
    try:
        return Target(str(target).lower())
    except ValueError:
        raise InputError(f"unknown target {target!r}; valid choices: "
                         f"{', '.join(t.value for t in Target)}") from None


def rules_for(target: Target):
    """The rule object for ``target``: ``on_op(recorder, op_index, func, args, kwargs, out)`` adds the
    allocations the real kernels make that the fake kernels do not show."""
    if target is Target.CPU:
        from memsim.tracing.cpu import CpuRules

        return CpuRules()
    raise InputError(f"no rules for target {target}")  # pragma: no cover - enum is exhaustive
