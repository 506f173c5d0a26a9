"""Errors memsim raises for a user's mistake (bad model, bad device, bad size...).

The CLI turns a :class:`MemsimError` into one line on stderr and exit code 2, never a traceback.
"""
from __future__ import annotations


class MemsimError(Exception):
    """A problem with what the user asked for: the message says what was wrong and what is valid."""


class InputError(MemsimError, ValueError):
    """A bad value: unknown name, malformed size, out-of-range number, missing file."""


class ModelError(MemsimError):
    """The user's model could not be built or run (factory raised, forward failed)."""
