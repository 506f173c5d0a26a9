"""Backend targets: which rules describe what a backend's kernels allocate beyond their outputs."""
from __future__ import annotations

from enum import Enum

from memsim.errors import InputError


class Target(str, Enum):
    """The backend whose kernels a trace predicts.

    Members:
        CPU: the host's CPU kernels (ATen native + oneDNN), measured by :mod:`memsim.backends.host`.
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
    """The rule object for ``target``: ``on_op(recorder, op_index, func, args, kwargs, out)`` records the
    kernel calls whose hidden allocations the host's kernels are then probed for."""
    if target is Target.CPU:
        from memsim.tracing.kernels import KernelCallRecorder

        return KernelCallRecorder()
    raise InputError(f"no rules for target {target}")  # pragma: no cover - enum is exhaustive
