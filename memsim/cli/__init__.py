"""The ``memsim`` command line (click).

Subcommands live in their own modules and are imported only when run, so ``memsim --version`` and
``memsim devices`` do not pay for importing torch.

Exit codes: 0 success (``check``: fits), 1 does not fit (``check``), 2 usage or input error (one line on
stderr, no traceback).
"""
from __future__ import annotations

import importlib

import click

from memsim import __version__
from memsim.core.errors import MemsimError


class LazyGroup(click.Group):
    """A click group whose subcommands are ``"module:attribute"`` strings imported on first use."""

    def __init__(self, *args, lazy_commands: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy_commands = lazy_commands or {}

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self.lazy_commands))

    def get_command(self, ctx, name):
        if name in self.lazy_commands:
            module, attr = self.lazy_commands[name].split(":")
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)

    def invoke(self, ctx):
        # A user's mistake anywhere below becomes a usage error: one line, exit 2, no traceback.
        try:
            return super().invoke(ctx)
        except MemsimError as e:
            raise UserError(str(e)) from None


class UserError(click.ClickException):
    """Exit code 2 with ``Error: <message>``, as click does for usage errors."""

    exit_code = 2


@click.group(
    cls=LazyGroup,
    lazy_commands={
        "profile": "memsim.cli.commands:profile",
        "check": "memsim.cli.commands:check",
        "devices": "memsim.cli.commands:devices",
    },
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, prog_name="memsim")
def cli():
    """memsim: will one training step of this model fit on this device, and what would make it fit?"""


@cli.group(
    cls=LazyGroup,
    lazy_commands={
        "codec": "memsim.cli.bench.codec:command",
        "fidelity": "memsim.cli.bench.fidelity:command",
        "trace": "memsim.cli.bench.trace_speed:command",
        "runtime": "memsim.cli.bench.runtime:command",
    },
)
def bench():
    """Benchmarks that print tables (speed of the codec and tracer, accuracy against measurements)."""


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``memsim`` console script."""
    cli.main(args=argv, prog_name="memsim")


if __name__ == "__main__":
    main()
