"""Check the aarch64 kernel model against the peaks measured under emulation (host side, no emulation).

For each measured case (``tests/fixtures/aarch64/step_peaks.json``), the step is traced on this machine with
memsim's tracer and re-costed for the aarch64 backend at the measured thread count exactly as
:func:`memsim.simulate` does for a Raspberry Pi (:func:`memsim.backends.views.for_backend`); the peak of the
re-costed trace is the aarch64 prediction.

Usage::

    python -m memsim.measure.emulation.validate [--fixtures tests/fixtures/aarch64/step_peaks.json] [--json OUT]

prints the table case, optimizer, threads, predicted, measured, error.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "aarch64"


def predict(case: str, optimizer: str, threads_list=(1, 2, 4)) -> dict[int, int]:
    """{threads: predicted aarch64 peak bytes} of one case of :mod:`memsim.measure.emulation.cases`."""
    import memsim
    from memsim.backends.kinds import Backend
    from memsim.backends.views import for_backend
    from memsim.measure.emulation.cases import build

    model, x, loss_fn = build(case)
    tr = memsim.trace(model, x, loss_fn=loss_fn, optimizer=optimizer)
    return {t: for_backend(tr, Backend.AARCH64, t).trace.peak_bytes for t in threads_list}


def load_steps(path=None) -> list[dict]:
    path = Path(path) if path else FIXTURES / "step_peaks.json"
    return json.loads(path.read_text())["steps"]


def compare(path=None) -> list[dict]:
    """One row per fixture step: case, optimizer, threads, predicted, measured, error (fraction)."""
    rows = []
    steps = load_steps(path)
    by_case: dict = {}
    for s in steps:
        by_case.setdefault((s["case"], s["optimizer"]), []).append(s)
    for (case, opt), group in by_case.items():
        preds = predict(case, opt, sorted({s["threads"] for s in group}))
        for s in sorted(group, key=lambda s: s["threads"]):
            p, m = preds[s["threads"]], s["peak_bytes"]
            rows.append({"case": case, "optimizer": opt, "batch": s["batch"], "threads": s["threads"],
                         "predicted": p, "measured": m, "error": (p - m) / m})
    return rows


def format_table(rows: list[dict], markdown: bool = False) -> str:
    from memsim.output.tables import table

    text = table(["case", "optimizer", "threads", "predicted B", "measured B", "error"],
                 [[r["case"], r["optimizer"], r["threads"], f"{r['predicted']:,}", f"{r['measured']:,}",
                   f"{100 * r['error']:+.3f}%"] for r in rows], right={2, 3, 4, 5}, markdown=markdown)
    worst = max((abs(r["error"]) for r in rows), default=0.0)
    exact = sum(r["predicted"] == r["measured"] for r in rows)
    return text + f"\n{len(rows)} steps, {exact} exact, worst |error| {100 * worst:.3f}%"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="aarch64 predictions against the emulated measurements")
    ap.add_argument("--fixtures", default=None, help="step_peaks.json (default: tests/fixtures/aarch64/)")
    ap.add_argument("--json", default=None, help="also write the rows here")
    a = ap.parse_args(argv)
    rows = compare(a.fixtures)
    print(format_table(rows))
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    return 0 if all(abs(r["error"]) <= 0.01 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
