"""A Report as readable terminal text: the policy table, the breakdown at the peak, the largest tensors.

Category colours come from :data:`memsim.core.categories.CATEGORY_ANSI` (the same palette as the plots);
colour is off unless asked for, so files and golden tests see plain text.

Example:
    >>> import torch, memsim
    >>> tr = memsim.trace(torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU()), torch.randn(4, 8))
    >>> text = render(memsim.simulate(tr, device="raspberry-pi-5-8gb", policy="none"))
    >>> text.splitlines()[0].split(" — ")[1]
    'Sequential, batch 4, optimizer sgd, sparsity none'
    >>> check_line(memsim.simulate(tr, device="raspberry-pi-5-8gb")).split(":")[0]
    'Sequential batch 4 (none) fits on raspberry-pi-5-8gb (aarch64)'

"""
from __future__ import annotations

from memsim.core.categories import CATEGORY_ANSI, Category
from memsim.core.names import op_name, tensor_label
from memsim.core.units import count_of, format_bytes
from memsim.output.format import format_flops, format_seconds, shape_text
from memsim.output.tables import table

_GREEN, _RED = 2, 1


def _style(text: str, ansi: int, color: bool) -> str:
    """``text`` in 256-colour ``ansi`` when ``color`` is on."""
    return f"\x1b[38;5;{ansi}m{text}\x1b[0m" if color else text


def _policy_rows(report, color: bool) -> list[list[str]]:
    total_flops = sum(o.flops for o in report.trace.timeline.ops)
    rows = []
    for r in report.results.values():
        extra = format_flops(r.extra_flops)
        if r.extra_flops and total_flops:
            extra += f" (+{r.extra_flops / total_flops:.0%})"
        rows.append([
            str(r.policy), format_bytes(r.peak_bytes), format_bytes(r.device_peak_bytes), _fits_cell(r, color),
            format_bytes(r.headroom_bytes), "-" if r.max_batch_size is None else str(r.max_batch_size),
            extra, format_seconds(r.codec_seconds), "lossy" if r.lossy else "lossless",
        ])
    return rows


def _fits_cell(result, color: bool) -> str:
    cost = result.cost
    if not result.fits:
        return _style("NO", _RED, color)
    word = "yes" if cost is None or cost.robust else "yes, narrowly"
    if cost is not None and cost.releases:
        word += f" ({cost.releases} releases)"
    return _style(word, _GREEN, color)


def _backend_line(report) -> str:
    info = report.backend_info
    kind = {"x86": "x86 CPU", "aarch64": "aarch64 CPU", "cuda": "CUDA"}.get(info["name"], info["name"])
    threads = f", {count_of(info['threads'], 'thread')}" if info["name"] != "cuda" else ""
    status = "validated" if info["validated"] else "NOT validated"
    return f"backend: {kind}{threads} — {status}: {info['validation']}"


def _plan_line(plan) -> str:
    rung = {"none": "everything dense fits", "encode": "bitmaps, masks and narrow indices where needed",
            "recompute": "encodings, then recompute of cheap ops where needed",
            "checkpoint": "encodings, recompute, and block checkpointing where still needed"}[plan.rung]
    verdict = "fits" if plan.fits else "does NOT fit even so"
    return f"plan for {plan.device} at batch {plan.batch_size}: {rung}; {verdict}"


def render(report, *, color: bool = False, top: int = 8) -> str:
    """The text ``memsim profile`` prints for ``report`` (sizes in binary units)."""
    meta = report.trace.meta
    dev = report.device
    lines = [
        f"memsim {meta.get('memsim_version', '')} — {meta.get('model', '?')}, batch {report.batch_size}, "
        f"optimizer {meta.get('optimizer', '?')}, sparsity {report.sparsity}",
        f"device: {dev.display_name} ({dev.name}): {format_bytes(dev.total_bytes)} total, "
        f"OS {format_bytes(dev.os_reserved_bytes)}, runtime {format_bytes(dev.runtime_bytes)}, "
        f"allocator {getattr(dev.allocator, 'value', dev.allocator)}"
        + (f", margin {report.margin:.0%}" if report.margin else ""),
        _backend_line(report),
        *(f"  note: {n}" for n in report.notes),
        "",
        table(["policy", "tensor peak", "device peak", "fits", "headroom", "max batch", "extra compute",
               "codec time", "accuracy"], _policy_rows(report, color), right={1, 2, 4, 5}),
    ]
    none = report.results.get("none")
    if none is not None and len(report.results) > 1:
        best = min(report.results.values(), key=lambda r: r.peak_bytes)
        if best.peak_bytes < none.peak_bytes:
            lines.append(f"best: {best.policy} saves {1 - best.peak_bytes / none.peak_bytes:.1%} of the tensor peak")
    main = report.main
    if main.cost is not None:
        lines.append(f"verdict ({report.policy}): {main.cost.verdict}")
        lines += [f"  advice: {a}" for a in main.cost.advice]
    if main.max_batch_method:
        lines.append(f"max batch ({report.policy}): {main.max_batch_size}, {main.max_batch_method}")
    plan = next((r.plan for r in report.results.values() if r.plan is not None), None)
    if plan is not None:
        lines += ["", _plan_line(plan)]
        if plan.entries:
            rows = [[r["kind"], r["tensors"], format_bytes(r["dense_bytes"]), format_bytes(r["stored_bytes"])]
                    for r in plan.summary()]
            lines.append(table(["storage", "tensors", "dense", "stored"], rows, right={1, 2, 3}, indent="  "))
        if plan.checkpoint_blocks:
            lines.append(f"  checkpointed blocks ({len(plan.checkpoint_blocks)}): {', '.join(plan.checkpoint_blocks)}")
    bd = report.breakdown
    lines += ["", f"live at the peak ({report.policy}, op {bd.index} of {report.trace.timeline.n_ops}: "
              f"{_op_label(report, bd.index)}):"]
    cat_rows = [[_style(str(c), CATEGORY_ANSI[c], color), format_bytes(b), f"{b / max(bd.total_bytes, 1):.1%}"]
                for c in Category if (b := bd.by_category.get(c, 0))]
    lines.append(table(["category", "bytes", "share"], cat_rows, right={1, 2}, indent="  "))
    lines += ["", "largest modules at the peak:",
              table(["module", "bytes"], [[m, format_bytes(b)] for m, b in bd.top_modules[:top]], right={1},
                    indent="  ")]
    trows = [[tensor_label(t, report.trace), str(t.category),
              "-" if t.category == Category.WORKSPACE else shape_text(t.shape), format_bytes(t.nbytes)]
             for t in bd.top_tensors[:top]]
    lines += ["", "largest tensors at the peak:",
              table(["tensor", "category", "shape", "bytes"], trows, right={3}, indent="  ")]
    return "\n".join(lines)


def _op_label(report, index: int) -> str:
    ops = report.trace.timeline.ops
    if not 0 <= index < len(ops):
        return "-"
    op = ops[index]
    return f"{op.phase} {op_name(op.name)}" + (f" in {op.module}" if op.module else "")


def check_line(report) -> str:
    """The one line ``memsim check`` prints."""
    verdict = report.verdict if report.fits else "does NOT fit"
    mb = "" if report.max_batch_size is None else f", max batch {report.max_batch_size}"
    cost = report.main.cost
    need = "needs" if cost is None or not cost.releases else "without releasing cached segments it needs"
    return (f"{report.trace.meta.get('model', '?')} batch {report.batch_size} ({report.policy}) {verdict} on "
            f"{report.device.name} ({report.backend}): {need} {format_bytes(report.device_peak_bytes)} of "
            f"{format_bytes(report.usable_bytes)} usable (headroom {format_bytes(report.headroom_bytes)}{mb})")
