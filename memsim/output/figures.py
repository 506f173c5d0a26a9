"""Plotly figures of one training step: memory over the step, and what is live at the peak.

Both figures accept a :class:`memsim.core.trace.Trace` or a simulation report (anything with ``.trace`` and
``.memory_curve(policy)``, i.e. :class:`memsim.simulation.simulate.Report`). Colours come from
:mod:`memsim.core.categories`, so the plots, the HTML report and the CLI text agree.

Large traces. A GPT-2 XL step has more than 100k ops; one SVG point per op per category makes the browser
crawl. Above ``max_points`` ops, :func:`downsample_indices` keeps, for every bucket of consecutive ops, the op
with the smallest and the op with the largest total (min-max decimation, as in the M4 method for line charts),
plus the global maximum of every total curve and the first/last op of every phase. Kept points carry their
exact values (nothing is averaged), so every local extremum wider than a bucket survives and the peak is shown
at its exact op with its exact bytes.

Example:
    >>> import torch, memsim
    >>> tr = memsim.trace(torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU()), torch.randn(4, 8))
    >>> fig = timeline_figure(tr)
    >>> fig.write_html("step.html")              # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Sequence

import numpy as np

from memsim.core.categories import CATEGORY_COLORS, PHASE_COLORS, Category, Phase
from memsim.core.errors import InputError
from memsim.core.names import tensor_label
from memsim.core.units import format_bytes
from memsim.output.format import escape, is_report, shape_text

DEFAULT_MAX_POINTS = 4000
"""Most x positions a timeline figure draws (per trace) before it is downsampled."""

BASELINE_POLICY = "none"
_BORN_SHOWN = 3  # tensors listed per op in the hover, largest first

__all__ = [
    "BreakdownKind",
    "LiveItem",
    "DEFAULT_MAX_POINTS",
    "byte_unit",
    "downsample_indices",
    "live_at_peak",
    "peak_breakdown_figure",
    "timeline_figure",
]


class BreakdownKind(str, Enum):
    """How :func:`peak_breakdown_figure` draws what is live at the peak.

    Members:
        TREEMAP: nested rectangles following the module path hierarchy, one leaf per (module, category).
        BAR: one horizontal bar per module (paths truncated to ``depth``), stacked by category.
    """

    TREEMAP = "treemap"
    BAR = "bar"

    def __str__(self) -> str:
        return self.value


def byte_unit(max_bytes: float) -> tuple[int, str]:
    """The divisor and name of the binary unit that shows ``max_bytes`` with a readable axis.

    Example:
        >>> byte_unit(3 * 1024**3)
        (1073741824, 'GiB')
    """
    for divisor, name in ((1024**4, "TiB"), (1024**3, "GiB"), (1024**2, "MiB"), (1024, "KiB")):
        if max_bytes >= divisor:
            return divisor, name
    return 1, "B"


def downsample_indices(totals: Sequence[np.ndarray], max_points: int = DEFAULT_MAX_POINTS,
                       keep: Sequence[int] = ()) -> np.ndarray:
    """Sorted op indices to draw so that at most ``max_points`` positions remain and no peak is lost.

    Each curve in ``totals`` (live bytes per op, all of the same length ``n``) is cut into equal buckets of
    consecutive ops; from each bucket the index of its minimum and of its maximum are kept. The global argmax
    of every curve and the indices in ``keep`` (e.g. phase boundaries) are always kept. When ``n`` is at most
    ``max_points`` every index is kept.

    Example:
        >>> curve = np.sin(np.linspace(0, 50, 200_000))
        >>> idx = downsample_indices([curve], max_points=1000)
        >>> len(idx) <= 1000, int(np.argmax(curve)) in idx
        (True, True)
    """
    curves = [np.asarray(c) for c in totals]
    if not curves:
        raise InputError("downsample_indices needs at least one curve")
    n = len(curves[0])
    if any(len(c) != n for c in curves):
        raise InputError("downsample_indices: all curves must have the same length")
    if max_points < 8:
        raise InputError(f"max_points={max_points} is too small: use at least 8")
    if n <= max_points:
        return np.arange(n)
    forced = {0, n - 1, *(int(np.argmax(c)) for c in curves), *(int(k) for k in keep if 0 <= k < n)}
    n_buckets = max(1, (max_points - len(forced)) // (2 * len(curves)))
    size = -(-n // n_buckets)  # ceil
    n_buckets = -(-n // size)
    pad = n_buckets * size - n
    rows = np.arange(n_buckets) * size
    chosen = [np.fromiter(forced, dtype=np.int64)]
    for c in curves:
        c = c.astype(np.float64)
        hi = np.pad(c, (0, pad), constant_values=-np.inf).reshape(n_buckets, size)
        lo = np.pad(c, (0, pad), constant_values=np.inf).reshape(n_buckets, size)
        chosen.append(rows + hi.argmax(axis=1))
        chosen.append(rows + lo.argmin(axis=1))
    return np.unique(np.concatenate(chosen))


# ---------------------------------------------------------------- what is plotted (trace or report)
@dataclass
class _Step:
    """The numbers a figure needs, read once from a Trace or a Report."""

    trace: object
    policy: str | None  # None for a bare trace
    total: np.ndarray  # live bytes per op under the chosen policy
    baseline: np.ndarray | None  # live bytes per op with no policy, when a policy is chosen
    categories: dict[Category, np.ndarray]
    live_rows: object | None  # callable(op) -> [(tensor id, bytes, Category)] under the policy, if known
    budget_bytes: int | None  # live-tensor bytes that fit on the device
    device_name: str | None


def _read_step(obj) -> _Step:
    if is_report(obj):
        trace = obj.trace
        policy = str(getattr(obj, "policy", "") or BASELINE_POLICY)
        total = np.asarray(obj.memory_curve(None), dtype=np.int64)
        baseline = None
        if policy != BASELINE_POLICY:
            baseline = np.asarray(obj.memory_curve(BASELINE_POLICY), dtype=np.int64)
        if hasattr(obj, "category_curves"):
            cats = {Category(c): np.asarray(v, dtype=np.int64) for c, v in obj.category_curves(None).items()}
        else:
            cats = trace.timeline.category_curves()
        live_rows = _policy_live_rows(obj)
        budget = getattr(obj, "tensor_budget_bytes", None)
        device = getattr(obj, "device", None)
        device_name = None
        if device is not None:
            device_name = getattr(device, "display_name", None) or getattr(device, "name", None) or str(device)
        return _Step(trace, policy, total, baseline, cats, live_rows,
                     int(budget) if budget is not None else None, device_name)
    if hasattr(obj, "timeline"):
        tl = obj.timeline
        return _Step(obj, None, tl.memory_curve(), None, tl.category_curves(), None, None, None)
    raise InputError(f"cannot plot a {type(obj).__name__}: expected a memsim Trace or simulation Report")


def _policy_live_rows(report):
    """What is alive at an op under the report's policy, as ``(tensor id, bytes, Category)`` rows.

    A policy re-costs storages as intervals (a saved activation may live dense in forward, encoded until
    backward, decoded for one op), so one storage can give several rows. Read from ``report.live_at(index)``
    when the report has it, else from ``report.main.costed.live_at(index)`` (memsim.simulation.simulate.Report).
    """
    if callable(getattr(report, "live_at", None)):
        return report.live_at
    costed = getattr(getattr(report, "main", None), "costed", None)
    if callable(getattr(costed, "live_at", None)):
        return costed.live_at
    return None


def _title(step: _Step) -> str:
    meta = getattr(step.trace, "meta", {}) or {}
    parts = [str(meta.get("model") or "training step")]
    if meta.get("batch_size") is not None:
        parts.append(f"batch {meta['batch_size']}")
    if step.device_name:
        parts.append(step.device_name)
    if step.policy:
        parts.append(f"policy {step.policy}")
    return " · ".join(parts)


def _born_text(trace, kept: np.ndarray, sizes: np.ndarray) -> list[str]:
    """For each kept op, the largest storages allocated at it ("name shape dtype size")."""
    tensors = trace.timeline.tensors
    if not tensors:
        return [""] * len(kept)
    birth = np.fromiter((t.birth for t in tensors), dtype=np.int64, count=len(tensors))
    order = np.argsort(birth, kind="stable")
    sorted_birth = birth[order]
    start = np.searchsorted(sorted_birth, kept, side="left")
    stop = np.searchsorted(sorted_birth, kept, side="right")
    out = []
    for a, b in zip(start, stop):
        if a == b:
            out.append("")
            continue
        ids = order[a:b]
        ids = ids[np.argsort(-sizes[ids], kind="stable")]
        lines = []
        for tid in ids[:_BORN_SHOWN]:
            t = tensors[tid]
            lines.append(f"{escape(tensor_label(t, trace))} [{shape_text(t.shape)} {t.dtype}] "
                         f"{format_bytes(sizes[tid])}")
        if len(ids) > _BORN_SHOWN:
            lines.append(f"+{len(ids) - _BORN_SHOWN} more")
        out.append("<br>born: " + "<br>  ".join(lines))
    return out


# ---------------------------------------------------------------- the timeline
def timeline_figure(trace_or_report, max_points: int = DEFAULT_MAX_POINTS, show_phases: bool = True,
                    height: int = 520):
    """Memory over one training step as a plotly figure.

    x is the op index (forward, loss, backward, optimizer in order); y is live tensor bytes, shown in the
    binary unit (KiB/MiB/GiB) that suits the peak. Stacked areas split the chosen policy's bytes by
    :class:`~memsim.core.categories.Category`; a black line is the policy's total and, for a report whose policy is
    not ``none``, a dashed grey line is the total without any policy. Phases are shaded rectangles named
    ``phase:<name>``; the peak is an annotation named ``peak`` whose hover text gives the exact bytes; a
    report's ``tensor_budget_bytes`` (what live tensors may use on the device) is a red dashed line named
    ``budget``. Hovering shows the op, its module path and phase, the live bytes and the largest storages born
    at that op. Traces longer than ``max_points`` ops are downsampled with :func:`downsample_indices`, which
    keeps the peak exact.

    Args:
        trace_or_report: a :class:`memsim.core.trace.Trace` or a simulation report.
        max_points: most op positions drawn (at least 8).
        show_phases: shade and label the forward/loss/backward/optimizer phases.
        height: figure height in pixels.

    Example:
        >>> import torch, memsim
        >>> tr = memsim.trace(torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU()), torch.randn(4, 8))
        >>> fig = timeline_figure(memsim.simulate(tr, device="jetson-nano", policy="bitmap"))
        >>> fig.show()                                                       # doctest: +SKIP
    """
    import plotly.graph_objects as go

    step = _read_step(trace_or_report)
    tl = step.trace.timeline
    n = len(step.total)
    totals = [step.total] + ([step.baseline] if step.baseline is not None else [])
    spans = tl.phase_spans() if len(tl.ops) == n else []
    boundaries = [i for _, a, b in spans for i in (a, b)]
    if n == 0:
        kept = np.arange(0)
    else:
        kept = downsample_indices(totals, max_points, keep=boundaries)
    downsampled = len(kept) < n

    peak_index = int(np.argmax(step.total)) if n else 0
    peak_bytes = int(step.total[peak_index]) if n else 0
    top = max([peak_bytes] + [int(c.max()) for c in totals if len(c)])
    budget_on_scale = step.budget_bytes is not None and step.budget_bytes <= 1.6 * max(top, 1)
    divisor, unit = byte_unit(max(top, step.budget_bytes or 0) if budget_on_scale else top)

    ops = tl.ops if len(tl.ops) == n else None
    # storages as traced (dense): a policy changes them only after they are born
    sizes = np.fromiter((t.nbytes for t in tl.tensors), dtype=np.int64, count=len(tl.tensors))
    line_shape = "linear" if downsampled else "hv"

    fig = go.Figure()
    _add_category_areas(fig, step, kept, divisor, line_shape)
    _add_totals(fig, step, kept, divisor, line_shape, ops, sizes)
    if show_phases:
        _add_phases(fig, spans, n)
    if n:
        _add_peaks(fig, step, divisor, ops, peak_index, peak_bytes)
    # explicit range: 15% above the highest line leaves room for the peak label inside the plot
    y_top = max(top, step.budget_bytes or 0) if budget_on_scale else top
    yaxis = dict(title=f"live tensor memory ({unit})", range=[0, max(y_top, 1) * 1.15 / divisor])
    off_scale_note = _add_budget(fig, step, divisor, budget_on_scale)
    note = f" · {len(kept):,} of {n:,} ops drawn (min-max per bucket, peak exact)" if downsampled else ""
    fig.update_layout(
        title=dict(text=f"Memory over one training step — {escape(_title(step))}<br><sup>"
                        f"{n:,} ops{note}{off_scale_note}</sup>"),
        xaxis=dict(title="op index (execution order)", rangemode="tozero"),
        yaxis=yaxis, hovermode="x unified", template="plotly_white", height=height,
        legend=dict(orientation="h", yanchor="top", y=-0.15, x=0),
        margin=dict(t=95, r=30, l=70, b=40),
    )
    return fig


def _add_category_areas(fig, step: _Step, kept, divisor: float, line_shape: str) -> None:
    """Stacked areas of live bytes per category (colours from :data:`CATEGORY_COLORS`, bottom to top)."""
    import plotly.graph_objects as go

    n = len(step.total)
    for cat in CATEGORY_COLORS:
        curve = step.categories.get(cat)
        if curve is None or len(curve) != n or not curve.any():
            continue
        values = curve[kept]
        fig.add_trace(go.Scatter(
            x=kept, y=values / divisor, name=str(cat), legendgroup=str(cat), stackgroup="live",
            mode="lines", line=dict(width=0.5, color=CATEGORY_COLORS[cat], shape=line_shape),
            fillcolor=CATEGORY_COLORS[cat], customdata=[format_bytes(v) for v in values],
            hovertemplate=f"{cat}: %{{customdata}}<extra></extra>",
        ))


def _add_totals(fig, step: _Step, kept, divisor: float, line_shape: str, ops, sizes) -> None:
    """The total without policy (dashed) and the policy's total, which carries the op details on hover."""
    import plotly.graph_objects as go

    if step.baseline is not None:
        values = step.baseline[kept]
        fig.add_trace(go.Scatter(
            x=kept, y=values / divisor, name=f"total, policy {BASELINE_POLICY}", mode="lines",
            line=dict(color="#7f7f7f", dash="dash", width=1.5, shape=line_shape),
            customdata=[format_bytes(v) for v in values],
            hovertemplate="total without policy: %{customdata}<extra></extra>",
        ))
    values = step.total[kept]
    if ops is not None:
        born = _born_text(step.trace, kept, sizes)
        custom = [[format_bytes(v), escape(ops[i].name), escape(ops[i].module or "(no module)"), str(ops[i].phase),
                   born[k]] for k, (i, v) in enumerate(zip(kept, values))]
        template = ("<b>op %{x}</b> %{customdata[1]}<br>module: %{customdata[2]}<br>phase: %{customdata[3]}"
                    "<br><b>live: %{customdata[0]}</b>%{customdata[4]}<extra></extra>")
    else:
        custom = [[format_bytes(v)] for v in values]
        template = "<b>op %{x}</b><br><b>live: %{customdata[0]}</b><extra></extra>"
    total_name = "total" if step.policy in (None, BASELINE_POLICY) else f"total, policy {step.policy}"
    fig.add_trace(go.Scatter(
        x=kept, y=values / divisor, name=total_name, mode="lines",
        line=dict(color="#222222", width=1.5, shape=line_shape), customdata=custom, hovertemplate=template,
    ))


def _add_phases(fig, spans, n: int) -> None:
    """Shade each phase; labels sit above the plot, centred, so they never cover the curve or the peak label;
    a phase too narrow to hold its name (the loss of a big model) is shaded only, and the hover names it."""
    width = max(n, 1)
    for phase, a, b in spans:
        label = dict(annotation_text=str(phase), annotation_position="outside top",
                     annotation_font=dict(size=11, color="#555555")) if (b - a + 1) / width >= 0.03 else {}
        fig.add_vrect(x0=a - 0.5, x1=b + 0.5, fillcolor=PHASE_COLORS[Phase(phase)], line_width=0,
                      layer="below", name=f"phase:{phase}", **label)


def _add_peaks(fig, step: _Step, divisor: float, ops, peak_index: int, peak_bytes: int) -> None:
    """The peak annotation (exact bytes on hover) and, under a policy, the peak without it."""
    where = ""
    if ops is not None:
        where = f" at op {peak_index} ({escape(ops[peak_index].name)}"
        where += f", {escape(ops[peak_index].module)})" if ops[peak_index].module else ")"
    fig.add_annotation(
        x=peak_index, y=peak_bytes / divisor, name="peak", text=f"peak {format_bytes(peak_bytes)}",
        hovertext=f"peak {peak_bytes:,} bytes{where}", showarrow=True, arrowhead=2, ax=0, ay=-30,
        font=dict(size=12, color="#222222"), bgcolor="rgba(255,255,255,0.8)",
    )
    if step.baseline is not None and len(step.baseline):
        b_index = int(np.argmax(step.baseline))
        b_bytes = int(step.baseline[b_index])
        if b_bytes != peak_bytes:
            fig.add_annotation(
                x=b_index, y=b_bytes / divisor, name="baseline peak",
                text=f"{BASELINE_POLICY}: {format_bytes(b_bytes)}",
                hovertext=f"peak without policy {b_bytes:,} bytes at op {b_index}", showarrow=True,
                arrowhead=2, ax=40, ay=-20, font=dict(size=11, color="#7f7f7f"),
            )


def _add_budget(fig, step: _Step, divisor: float, on_scale: bool) -> str:
    """The device's tensor budget as a red dashed line; returns a subtitle note when it is off the scale
    (a 4 GB budget would flatten a 50 MB step into a sliver: the step keeps its scale, the note the budget)."""
    if step.budget_bytes is None:
        return ""
    device = f" on {step.device_name}" if step.device_name else ""
    text = f"budget for tensors{device}: {format_bytes(step.budget_bytes)}"
    label = dict(annotation_text=text, annotation_position="top right",
                 annotation_font=dict(color="#C44E52")) if on_scale else {}
    fig.add_hline(y=step.budget_bytes / divisor, name="budget", line=dict(color="#C44E52", dash="dash", width=2),
                  **label)
    return "" if on_scale else f' · <span style="color:#C44E52">{text}, above the chart</span>'


# ---------------------------------------------------------------- what is live at the peak
@dataclass
class LiveItem:
    """One storage (or one interval of it under a policy) alive at an op: its record, bytes and category."""

    tensor: object  # memsim.core.timeline.TensorRecord
    nbytes: int
    category: Category


def live_at_peak(trace_or_report) -> tuple[int, list[LiveItem], bool]:
    """``(peak op, live items largest first, sized_by_policy)`` at the step's peak.

    For a report the peak and the sizes are its policy's (an encoded activation counts its encoded bytes).
    ``sized_by_policy`` is False when a report with a policy other than ``none`` does not say how its policy
    sizes each storage; the items then carry the traced sizes.
    """
    step = _read_step(trace_or_report)
    return _live_items(step)


def _live_items(step: _Step) -> tuple[int, list[LiveItem], bool]:
    tl = step.trace.timeline
    peak_index = int(np.argmax(step.total)) if len(step.total) else 0
    if step.live_rows is not None:
        merged: dict[tuple[int, Category], int] = {}
        for tid, nbytes, cat in step.live_rows(peak_index):
            key = (int(tid), Category(cat))
            merged[key] = merged.get(key, 0) + int(nbytes)
        items = [LiveItem(tl.tensors[tid], nb, cat) for (tid, cat), nb in merged.items() if nb > 0]
        exact = True
    else:
        items = [LiveItem(t, int(t.nbytes), Category(t.category)) for t in tl.live_at(peak_index) if t.nbytes > 0]
        exact = step.policy in (None, BASELINE_POLICY)
    items.sort(key=lambda it: -it.nbytes)
    return peak_index, items, exact


def _cut(module: str, depth: int | None) -> str:
    if not module:
        return "(no module)"
    return module if depth is None else ".".join(module.split(".")[:depth])


def peak_breakdown_figure(trace_or_report, kind: BreakdownKind | str = BreakdownKind.TREEMAP,
                          depth: int | None = 3, top: int = 20, height: int = 560):
    """What is live at the peak, by module and category, as a plotly figure.

    Module paths are cut to their first ``depth`` components (``None``: full paths), so a 48-block transformer
    shows "transformer.h.17" rather than every linear layer. ``treemap`` nests rectangles along the module
    path ("layer1" ⊃ "layer1.0" ⊃ "layer1.0.conv1"), with one leaf per (module, category) coloured by
    category; areas are bytes. ``bar`` draws the ``top`` modules as horizontal bars stacked by category. Storages owned by no module
    are grouped under "(no module)". For a report, the peak and the sizes are those under its policy (see
    :func:`live_at_peak`).

    Example:
        >>> peak_breakdown_figure(report, kind="bar", depth=1).show()   # doctest: +SKIP
    """
    import plotly.graph_objects as go

    try:
        kind = BreakdownKind(kind)
    except ValueError:
        raise InputError(f"unknown breakdown kind {kind!r}; valid kinds: "
                         f"{', '.join(k.value for k in BreakdownKind)}") from None
    step = _read_step(trace_or_report)
    peak_index, live, exact = _live_items(step)
    total = sum(it.nbytes for it in live)
    sized_note = "" if exact else " (sizes before the policy)"
    title = (f"Live at the peak: {format_bytes(total)} at op {peak_index}{sized_note} — {escape(_title(step))}")

    if kind is BreakdownKind.TREEMAP:
        ids, labels, parents, values, colors, hover = [], [], [], [], [], []
        node_bytes: dict[str, int] = {}
        leaf_bytes: dict[tuple[str, Category], int] = {}
        for it in live:
            key = (_cut(it.tensor.module, depth), it.category)
            leaf_bytes[key] = leaf_bytes.get(key, 0) + it.nbytes
        for (path, cat), nbytes in leaf_bytes.items():
            parts = path.split(".") if path != "(no module)" else [path]
            for k in range(1, len(parts) + 1):
                prefix = ".".join(parts[:k])
                node_bytes[prefix] = node_bytes.get(prefix, 0) + nbytes
        root = "all live tensors"
        ids.append(root); labels.append(root); parents.append(""); values.append(total)
        colors.append("#ffffff"); hover.append(format_bytes(total))
        for prefix, nbytes in sorted(node_bytes.items()):
            parent = prefix.rsplit(".", 1)[0] if "." in prefix and prefix != "(no module)" else root
            ids.append(prefix); labels.append(prefix.rsplit(".", 1)[-1] if prefix != "(no module)" else prefix)
            parents.append(parent); values.append(nbytes); colors.append("#e8e8e8")
            hover.append(f"{escape(prefix)}: {format_bytes(nbytes)}")
        for (path, cat), nbytes in sorted(leaf_bytes.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
            parent = path
            ids.append(f"{path}|{cat}"); labels.append(str(cat)); parents.append(parent); values.append(nbytes)
            colors.append(CATEGORY_COLORS[cat]); hover.append(f"{escape(path)} · {cat}: {format_bytes(nbytes)}")
        fig = go.Figure(go.Treemap(
            ids=ids, labels=labels, parents=parents, values=values, branchvalues="total",
            marker=dict(colors=colors, line=dict(width=1, color="#ffffff")), customdata=hover,
            hovertemplate="%{customdata}<br>%{percentRoot:.1%} of live bytes<extra></extra>",
            maxdepth=-1, texttemplate="%{label}",
        ))
    else:
        by_module: dict[str, dict[Category, int]] = {}
        for it in live:
            row = by_module.setdefault(_cut(it.tensor.module, depth), {})
            row[it.category] = row.get(it.category, 0) + it.nbytes
        ranked = sorted(by_module.items(), key=lambda kv: -sum(kv[1].values()))[:top]
        modules = [m for m, _ in ranked][::-1]  # largest at the top of a horizontal bar chart
        divisor, unit = byte_unit(max([sum(r.values()) for _, r in ranked] + [1]))
        fig = go.Figure()
        for cat in CATEGORY_COLORS:
            vals = [by_module[m].get(cat, 0) for m in modules]
            if not any(vals):
                continue
            fig.add_trace(go.Bar(
                y=[escape(m) for m in modules], x=[v / divisor for v in vals], orientation="h", name=str(cat),
                marker_color=CATEGORY_COLORS[cat], customdata=[format_bytes(v) for v in vals],
                hovertemplate=f"%{{y}} · {cat}: %{{customdata}}<extra></extra>",
            ))
        fig.update_layout(barmode="stack", xaxis_title=f"live bytes at the peak ({unit})",
                          legend=dict(orientation="h", yanchor="top", y=-0.12, x=0))
    fig.update_layout(title=dict(text=title), template="plotly_white", height=height,
                      margin=dict(t=60, r=20, l=20, b=40))
    return fig
