"""One standalone HTML file per simulation: the verdict, the per-policy table, the figures and what is live at
the peak. It works offline: plotly.js is inlined once (about 4 MB) and nothing is fetched from the network.

``memsim profile MODEL --html report.html`` calls :func:`write_html`.

Example:
    >>> import torch, memsim
    >>> tr = memsim.trace(torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU()), torch.randn(4, 8))
    >>> page = render_html(memsim.simulate(tr, device="jetson-nano", policy="bitmap"))
    >>> page.startswith("<!DOCTYPE html>") and "Fits" in page
    True
    >>> write_html(memsim.simulate(tr, device="jetson-nano"), "report.html")  # doctest: +SKIP
"""
from __future__ import annotations

import datetime as _dt
from pathlib import Path

from memsim.core.categories import CATEGORY_COLORS
from memsim.core.errors import InputError
from memsim.core.names import tensor_label
from memsim.core.units import count_of, format_bytes
from memsim.output.format import escape, format_flops, format_seconds, is_report, shape_text

GRAPH_MAX_NODES = 5000
"""Autograd graphs larger than this are left out of the HTML (export them with memsim.output.graph)."""

TOP_TENSORS = 15

# Columns of the per-policy table: key in Report.table_rows(), heading, formatter.
_COLUMNS = [
    ("policy", "policy", str),
    ("peak_bytes", "peak live tensors", lambda v: format_bytes(v)),
    ("device_peak_bytes", "device peak", lambda v: format_bytes(v)),
    ("fits", "fits", lambda v: "yes" if v else "no"),
    ("headroom_bytes", "headroom", lambda v: format_bytes(v)),
    ("max_batch_size", "max batch size", lambda v: "—" if v is None else f"{v:,}"),
    ("extra_flops", "extra compute", format_flops),
    ("codec_seconds", "codec time / step", format_seconds),
    ("lossy", "lossy", lambda v: "yes" if v else "no"),
]

__all__ = ["GRAPH_MAX_NODES", "render_html", "write_html"]


_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px auto; max-width: 1280px;
       color: #222; padding: 0 16px; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.15em; margin-top: 1.8em; border-bottom: 1px solid #ddd; }
.sub { color: #666; margin-top: 0; }
.verdict { display: inline-block; padding: 10px 16px; border-radius: 6px; font-size: 1.1em; margin: 8px 0; }
.fits { background: #e6f4ea; border: 1px solid #55A868; } .nofit { background: #fce8e6; border: 1px solid #C44E52; }
table { border-collapse: collapse; margin: 8px 0; font-size: 0.92em; }
th, td { border-bottom: 1px solid #e4e4e4; padding: 4px 10px; text-align: right; }
th { background: #f6f6f6; } td:first-child, th:first-child { text-align: left; }
tr.chosen td { font-weight: 600; background: #fffbe6; }
.swatch { display: inline-block; width: 10px; height: 10px; margin-right: 6px; border-radius: 2px; }
.note { color: #666; font-size: 0.9em; }
.mono { font-family: Menlo, Consolas, monospace; font-size: 0.9em; }
"""


def _verdict(report) -> str:
    fits = bool(getattr(report, "fits", False))
    device = getattr(report, "device", None)
    device_name = getattr(device, "display_name", None) or getattr(device, "name", None) or "the device"
    peak = getattr(report, "device_peak_bytes", None)
    budget = getattr(report, "budget_bytes", None)
    headroom = getattr(report, "headroom_bytes", None)
    parts = [f"<b>{'Fits' if fits else 'Does not fit'}</b> on {escape(device_name)}"]
    if peak is not None and budget is not None:
        parts.append(f"device peak {escape(format_bytes(peak))} of {escape(format_bytes(budget))} available")
    if headroom is not None:
        word = "headroom" if headroom >= 0 else "over by"
        parts.append(f"{word} {escape(format_bytes(abs(headroom)))}")
    box = f'<div class="verdict {"fits" if fits else "nofit"}">' + " · ".join(parts) + "</div>"
    info = getattr(report, "backend_info", None)
    if info:
        status = "validated" if info["validated"] else "<b>not validated</b>"
        box += (f'<p class="note" id="backend">Prediction for the <b>{escape(info["name"])}</b> backend'
                + (f' with {count_of(info["threads"], "thread")}' if info["name"] != "cuda" else "")
                + f" — {status}: {escape(info['validation'])}"
                + "".join(f"<br>note: {escape(n)}" for n in info["notes"]) + "</p>")
        verdict = getattr(report, "verdict", None)
        if verdict:
            box += f'<p class="note" id="verdict-detail">Verdict ({escape(report.policy)}): {escape(verdict)}</p>'
    return box


def _policy_table(report) -> str:
    rows = list(report.table_rows()) if hasattr(report, "table_rows") else []
    if not rows:
        return ""
    known = [c for c in _COLUMNS if any(c[0] in r for r in rows)]
    extra = [k for k in rows[0] if k not in {c[0] for c in _COLUMNS}]
    head = "".join(f"<th>{escape(h)}</th>" for _, h, _ in known) + "".join(f"<th>{escape(k)}</th>" for k in extra)
    body = []
    chosen = str(getattr(report, "policy", ""))
    for r in rows:
        cells = "".join(f"<td>{escape('—' if r.get(k) is None else fmt(r.get(k)))}</td>" for k, _, fmt in known)
        cells += "".join(f"<td>{escape(r.get(k, ''))}</td>" for k in extra)
        cls = ' class="chosen"' if str(r.get("policy")) == chosen else ""
        body.append(f"<tr{cls}>{cells}</tr>")
    return (f"<h2>Policies compared</h2><table id=\"policies\"><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table><p class=\"note\">The chosen policy ({escape(chosen)}) is "
            f"highlighted. Peak live tensors is the sum of live tensor bytes at the step's worst op; the device "
            f"peak adds allocator rounding, runtime context and the OS reserve.</p>")


def _live_at_peak_tables(obj) -> str:
    from memsim.output.figures import live_at_peak

    peak_index, live, exact = live_at_peak(obj)
    total = sum(it.nbytes for it in live)
    by_cat = {c: 0 for c in CATEGORY_COLORS}
    for it in live:
        by_cat[it.category] += it.nbytes
    trace = obj.trace if is_report(obj) else obj
    ops = trace.timeline.ops
    where = ""
    if 0 <= peak_index < len(ops):
        op = ops[peak_index]
        where = (f" — op {peak_index}: <span class=\"mono\">{escape(op.name)}</span> in "
                 f"<span class=\"mono\">{escape(op.module or '(no module)')}</span>, {escape(op.phase)} phase")
    rows = "".join(
        f"<tr><td><span class=\"swatch\" style=\"background:{CATEGORY_COLORS[c]}\"></span>{escape(c)}</td>"
        f"<td>{escape(format_bytes(b))}</td><td>{100 * b / max(total, 1):.1f}%</td></tr>"
        for c, b in sorted(by_cat.items(), key=lambda kv: -kv[1]) if b)
    cat_table = (f"<table id=\"by-category\"><thead><tr><th>category</th><th>bytes</th><th>share</th></tr></thead>"
                 f"<tbody>{rows}</tbody><tfoot><tr><td><b>total</b></td><td><b>{escape(format_bytes(total))}</b></td>"
                 f"<td></td></tr></tfoot></table>")
    trows = "".join(
        f"<tr><td>{escape(tensor_label(it.tensor, trace))}</td><td class=\"mono\">{escape(it.tensor.module or '—')}</td>"
        f"<td>{escape(it.category)}</td><td class=\"mono\">{escape(shape_text(it.tensor.shape))}</td>"
        f"<td>{escape(it.tensor.dtype)}</td><td>{escape(format_bytes(it.nbytes))}</td>"
        f"<td class=\"mono\">{escape(it.tensor.op or '—')}</td></tr>"
        for it in live[:TOP_TENSORS])
    tensor_table = (f"<table id=\"top-tensors\"><thead><tr><th>tensor</th><th>module</th><th>category</th>"
                    f"<th>shape</th><th>dtype</th><th>bytes</th><th>made by</th></tr></thead><tbody>{trows}</tbody>"
                    f"</table>")
    note = "" if exact else " (sizes as traced: this report does not say how its policy sizes each storage)"
    return (f"<h2>Live at the peak</h2><p>{escape(format_bytes(total))} in {len(live):,} storages{where}{note}</p>"
            f"{cat_table}<h3>Largest storages</h3>{tensor_table}")


def render_html(trace_or_report, include_graph: bool = True, title: str | None = None) -> str:
    """The report as one HTML document (a string); see :func:`write_html`."""
    from memsim.output import graph as graph_export
    from memsim.output import figures as viz
    from memsim import __version__

    if not (is_report(trace_or_report) or hasattr(trace_or_report, "timeline")):
        raise InputError(f"cannot write an HTML report for a {type(trace_or_report).__name__}: "
                         "expected a memsim Trace or simulation Report")
    a_report = is_report(trace_or_report)
    trace = trace_or_report.trace if a_report else trace_or_report
    meta = getattr(trace, "meta", {}) or {}
    model = meta.get("model") or "training step"
    heading = title or f"memsim report — {model}"
    facts = []
    if meta.get("batch_size") is not None:
        facts.append(f"batch {meta['batch_size']}")
    if meta.get("optimizer"):
        facts.append(f"optimizer {meta['optimizer']}")
    if a_report:
        device = getattr(trace_or_report, "device", None)
        if device is not None:
            facts.append(f"device {getattr(device, 'display_name', None) or getattr(device, 'name', device)}")
        facts.append(f"policy {getattr(trace_or_report, 'policy', 'none')}")
    facts.append(f"{trace.timeline.n_ops:,} ops, {len(trace.timeline.tensors):,} storages")

    plot_config = {"displaylogo": False, "responsive": True}
    figures = [
        ("Memory over the step", viz.timeline_figure(trace_or_report), "timeline"),
        ("What is live at the peak, by module", viz.peak_breakdown_figure(trace_or_report), "peak-breakdown"),
    ]
    graph_note = ""
    n_nodes = trace.graph.number_of_nodes() if getattr(trace, "graph", None) is not None else 0
    if include_graph and 0 < n_nodes <= GRAPH_MAX_NODES:
        figures.append(("Autograd graph, coloured by saved bytes", graph_export.graph_figure(trace), "graph"))
    elif include_graph and n_nodes > GRAPH_MAX_NODES:
        graph_note = (f"<p class=\"note\">The autograd graph ({n_nodes:,} nodes) is too large to draw here; export "
                      f"it with <span class=\"mono\">memsim.output.graph.to_graphml</span>.</p>")
    parts = []
    for k, (heading_text, fig, div_id) in enumerate(figures):
        # plotly.js goes inline exactly once, in the first figure; the others reuse it
        div = fig.to_html(full_html=False, include_plotlyjs=(k == 0), div_id=div_id, config=plot_config)
        parts.append(f"<h2>{escape(heading_text)}</h2>{div}")
        if div_id == "peak-breakdown":
            parts.append(_live_at_peak_tables(trace_or_report))
    body = [
        f"<h1>{escape(heading)}</h1>",
        f"<p class=\"sub\">{escape(' · '.join(facts))}</p>",
    ]
    if a_report:
        body.append(_verdict(trace_or_report))
        body.append(_policy_table(trace_or_report))
    notes = list(getattr(trace_or_report, "notes", None) or []) if a_report else []
    notes += [n for n in meta.get("notes", []) or [] if n not in notes]
    if notes:
        items = "".join(f"<li>{escape(n)}</li>" for n in notes)
        body.append(f"<h2>Notes</h2><ul id=\"notes\">{items}</ul>")
    body += parts
    body.append(graph_note)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body.append(f"<p class=\"note\">memsim {escape(__version__)} · torch {escape(meta.get('torch_version', '?'))} · "
                f"written {stamp}. Peak training memory = the largest sum of live tensor bytes during one "
                f"steady-state step (forward, loss, backward, optimizer step, zero_grad).</p>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{escape(heading)}</title>"
            f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def write_html(trace_or_report, path: str | Path, include_graph: bool = True, title: str | None = None) -> Path:
    """Write one standalone, offline HTML report for a simulation report (or a bare trace) to ``path``.

    Contents: the verdict (fits or not, device peak against the device's budget, headroom in bytes), the table
    of every evaluated policy (``Report.table_rows()``), the memory timeline, what is live at the peak (treemap
    by module, bytes per category, largest storages) and the autograd graph coloured by saved bytes (left out
    above :data:`GRAPH_MAX_NODES` nodes). Returns the path written.

    Example:
        >>> write_html(report, "report.html")   # doctest: +SKIP
        PosixPath('report.html')
    """
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise InputError(f"cannot write {path}: directory {path.parent} does not exist")
    path.write_text(render_html(trace_or_report, include_graph=include_graph, title=title), encoding="utf-8")
    return path
