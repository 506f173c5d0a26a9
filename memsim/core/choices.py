"""Every fixed set of choices is validated here, once: an enum member or a name from a list.

A bad value raises :class:`memsim.core.errors.InputError` whose message names the value, suggests the
closest valid names and lists all of them, so the CLI can print it as one line and exit 2.

Example:
    >>> from enum import Enum
    >>> class Color(str, Enum):
    ...     RED = "red"
    ...     GREEN = "green"
    >>> choose(Color, "Red", "colour")
    <Color.RED: 'red'>
    >>> choose(Color, "gren", "colour")
    Traceback (most recent call last):
    ...
    memsim.core.errors.InputError: unknown colour 'gren' (did you mean 'green'?); valid choices: red, green
"""
from __future__ import annotations

import difflib
from enum import Enum
from typing import Iterable, TypeVar

from memsim.core.errors import InputError

E = TypeVar("E", bound=Enum)


def suggest(value: str, valid: Iterable[str], n: int = 3) -> str:
    """`` (did you mean 'a' or 'b'?)`` for the names closest to ``value``, or '' when none is close."""
    close = difflib.get_close_matches(str(value).strip().lower(), [str(v) for v in valid], n=n, cutoff=0.6)
    if not close:
        return ""
    quoted = [repr(c) for c in close]
    return " (did you mean " + (", ".join(quoted[:-1]) + " or " if len(quoted) > 1 else "") + quoted[-1] + "?)"


def unknown(what: str, value, valid: Iterable[str], more: str = "") -> InputError:
    """The error for a ``value`` that is not one of ``valid`` (``more`` adds other accepted forms)."""
    valid = [str(v) for v in valid]
    listed = ", ".join(valid) + (f", {more}" if more else "")
    return InputError(f"unknown {what} {value!r}{suggest(str(value), valid)}; valid choices: {listed}")


def choose(enum_cls: type[E], value, what: str, more: str = "") -> E:
    """The member of ``enum_cls`` whose value is ``value`` (a member, or its value in any case)."""
    if isinstance(value, enum_cls):
        return value
    text = str(value.value if isinstance(value, Enum) else value).strip().lower()
    for member in enum_cls:
        if str(member.value).lower() == text:
            return member
    raise unknown(what, value, [m.value for m in enum_cls], more)


def one_of(value: str, valid: Iterable[str], what: str, more: str = "") -> str:
    """``value`` when it is one of ``valid`` (exact match), else the :func:`unknown` error."""
    valid = list(valid)
    if value in valid:
        return value
    raise unknown(what, value, valid, more)


def split_list(value: str | Iterable[str]) -> list[str]:
    """A comma-separated string (or an iterable of names) as a list of non-empty, stripped names."""
    items = value.split(",") if isinstance(value, str) else list(value)
    return [str(v).strip() for v in items if str(v).strip()]
