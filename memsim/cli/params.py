"""Click parameter types: every command-line value is validated here, once.

Each type calls the library's own validator (units, policies, devices) and turns its InputError into a
click usage error (exit code 2, one line naming the bad value and the valid choices).
"""
from __future__ import annotations

import click

from memsim.core.errors import InputError


class _Validated(click.ParamType):
    """A ParamType whose ``convert`` is a library validator raising InputError."""

    def parse(self, value):  # pragma: no cover - overridden
        raise NotImplementedError

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        try:
            return self.parse(value)
        except InputError as e:
            self.fail(str(e), param, ctx)


class SizeType(_Validated):
    """A byte size such as 4GB, 3.5GiB or 512MiB → int bytes."""

    name = "size"

    def parse(self, value):
        from memsim.core.units import parse_size

        return parse_size(value)


class FractionType(_Validated):
    """A fraction such as 10% or 0.1 → float in [0, 1)."""

    name = "fraction"

    def parse(self, value):
        from memsim.core.units import parse_fraction

        return parse_fraction(value)


class PolicyListType(_Validated):
    """A policy name, a comma-separated list, or "all" → list of Policy."""

    name = "policy"

    def parse(self, value):
        from memsim.simulation.policies import parse_policies

        return parse_policies(value)


class SparsityType(_Validated):
    """"measured", a fraction in [0, 1] (0.5 or 50%), or a saved measurement file (JSON)."""

    name = "sparsity"

    def parse(self, value):
        from pathlib import Path

        text = value.strip().lower()
        if text in ("measured", "none"):
            return text
        try:
            v = float(text[:-1]) / 100 if text.endswith("%") else float(text)
        except ValueError:
            if Path(value).is_file():
                from memsim.measure.sparsity import MeasuredSparsity

                return MeasuredSparsity.load(value)
            raise InputError(f"bad sparsity {value!r}: expected 'measured', 'none', a fraction such as 0.5 or "
                             "50%, or a file written by measure_sparsity") from None
        if not 0.0 <= v <= 1.0:
            raise InputError(f"bad sparsity {value!r}: must be between 0 and 1")
        return v


class DeviceType(_Validated):
    """A device name from the catalog (``memsim devices``) → Device."""

    name = "device"

    def parse(self, value):
        from memsim.simulation import devices

        return devices.get(value)


class ShapeType(_Validated):
    """A per-sample input shape such as 3,224,224 → tuple of ints."""

    name = "shape"

    def parse(self, value):
        from memsim.workflow.workload import parse_shape

        return parse_shape(value)


class OptimizerType(_Validated):
    name = "optimizer"

    def parse(self, value):
        from memsim.tracing.step import validate_optimizer

        return validate_optimizer(value).value


class BackendType(_Validated):
    """A backend to run the device with: x86, aarch64, cuda, or cpu (the device's CPU side)."""

    name = "backend"

    def parse(self, value):
        from memsim.backends.kinds import Backend
        from memsim.core.choices import choose

        text = value.strip().lower()
        return text if text == "cpu" else choose(Backend, text, "backend", more="cpu").value


SIZE = SizeType()
FRACTION = FractionType()
POLICIES = PolicyListType()
SPARSITY = SparsityType()
DEVICE = DeviceType()
SHAPE = ShapeType()
OPTIMIZER = OptimizerType()
BATCH = click.IntRange(min=1)
BACKEND = BackendType()
