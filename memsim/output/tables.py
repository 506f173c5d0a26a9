"""Tables for people, in one place: terminal text (ANSI colours allowed) and Markdown (README, benches).

Built on ``tabulate``, which measures cell widths without ANSI escape codes.

Example:
    >>> print(table(["model", "MiB"], [["resnet18", "294.6"], ["vgg16", "2137.5"]], right={1}))
    model        MiB
    --------  ------
    resnet18   294.6
    vgg16     2137.5
    >>> print(table(["a", "b"], [[1, 2]], right={1}, markdown=True))
    | a   |   b |
    |:----|----:|
    | 1   |   2 |
"""
from __future__ import annotations

from typing import Iterable, Sequence


def table(headers: Sequence[str], rows: Iterable[Sequence], *, right: Iterable[int] = (),
          markdown: bool = False, indent: str = "") -> str:
    """``rows`` under ``headers`` as text; columns in ``right`` are right-aligned (numbers), the others
    left-aligned. ``markdown=True`` gives a GitHub table. Cells are printed with ``str()`` as they are."""
    from tabulate import tabulate

    rows = [[str(c) for c in r] for r in rows]
    right = set(right)
    align = ["right" if i in right else "left" for i in range(len(headers))]
    text = tabulate(rows, headers=list(headers), tablefmt="github" if markdown else "simple",
                    colalign=align, disable_numparse=True)
    if markdown:
        lines = text.splitlines()
        if len(lines) > 1:   # tabulate's github format does not mark the alignment: add it
            cells = lines[1].strip("|").split("|")
            lines[1] = "|" + "|".join((":" + c[1:] if a == "left" else c[:-1] + ":")
                                      for c, a in zip(cells, align)) + "|"
        text = "\n".join(lines)
    else:
        text = "\n".join(line.rstrip() for line in text.splitlines())
    return "\n".join(indent + line for line in text.splitlines())
