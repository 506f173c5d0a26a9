"""Figures: the timeline and the peak breakdown show the right traces and numbers; large traces are
downsampled without losing the peak; the graph exports are readable by other tools."""
from __future__ import annotations

import re

import networkx as nx
import numpy as np
import pytest

from fake_report import MiB, FakeReport, large_trace, small_trace
from memsim.output import graph as graph_export
from memsim.output import figures as viz
from memsim.core.categories import CATEGORY_COLORS, Category, Phase
from memsim.core.errors import InputError


@pytest.fixture(scope="module")
def trace():
    return small_trace()


@pytest.fixture(scope="module")
def report(trace):
    return FakeReport(trace)


@pytest.fixture(scope="module")
def big():
    return large_trace()


def _traces_by_name(fig):
    return {t.name: t for t in fig.data}


def _divisor(fig) -> int:
    unit = re.search(r"\((\w+)\)", fig.layout.yaxis.title.text).group(1)
    return {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4}[unit]


def _peak_annotation(fig):
    found = [a for a in fig.layout.annotations if a.name == "peak"]
    assert len(found) == 1
    return found[0]


# ---------------------------------------------------------------- timeline of a trace
def test_trace_timeline_has_one_area_per_category_present(trace):
    fig = viz.timeline_figure(trace)
    present = [c for c, curve in trace.timeline.category_curves().items() if curve.any()]
    areas = [t for t in fig.data if t.stackgroup == "live"]
    assert [t.name for t in areas] == [str(c) for c in CATEGORY_COLORS if c in present]
    assert Category.BUFFER not in present and "buffer" not in _traces_by_name(fig)
    for t in areas:
        assert t.fillcolor == CATEGORY_COLORS[Category(t.name)]


def test_stacked_areas_sum_to_the_total_line(trace):
    fig = viz.timeline_figure(trace)
    areas = [np.asarray(t.y) for t in fig.data if t.stackgroup == "live"]
    total = np.asarray(_traces_by_name(fig)["total"].y)
    np.testing.assert_allclose(np.sum(areas, axis=0), total)
    np.testing.assert_allclose(total * _divisor(fig), trace.timeline.memory_curve())


def test_phases_are_shaded_in_order(trace):
    fig = viz.timeline_figure(trace)
    phases = [s for s in fig.layout.shapes if (s.name or "").startswith("phase:")]
    assert [s.name for s in phases] == ["phase:forward", "phase:loss", "phase:backward", "phase:optimizer"]
    spans = trace.timeline.phase_spans()
    for shape, (phase, a, b) in zip(phases, spans):
        assert (shape.x0, shape.x1) == (a - 0.5, b + 0.5)
        assert shape.fillcolor
    # a bare trace has no device, so no budget line
    assert not [s for s in fig.layout.shapes if s.name == "budget"]


def test_peak_annotation_is_at_the_peak_with_its_bytes(trace):
    fig = viz.timeline_figure(trace)
    ann = _peak_annotation(fig)
    assert ann.x == trace.timeline.peak_index == 14
    assert ann.y * _divisor(fig) == pytest.approx(trace.peak_bytes, rel=1e-12)
    assert f"{trace.peak_bytes:,} bytes" in ann.hovertext
    assert ann.text == "peak 108.00 MiB"


def test_hover_names_op_module_phase_and_born_tensors(trace):
    fig = viz.timeline_figure(trace)
    total = _traces_by_name(fig)["total"]
    row = total.customdata[4]  # op 4: the first conv of features.conv2 (forward)
    assert row[1] == "aten.convolution.default" and row[2] == "features.conv2" and row[3] == "forward"
    assert row[0] == "41.50 MiB"  # 24 params+state, 2 input, 1+..+5 activations, 0.5 temporary
    assert "5×512×512 float32] 5.00 MiB" in row[4] and "born:" in row[4]
    for key in ("customdata[1]", "customdata[2]", "customdata[3]", "customdata[0]"):
        assert key in total.hovertemplate


# ---------------------------------------------------------------- timeline of a report
def test_report_timeline_overlays_policy_on_baseline_and_draws_budget(report):
    fig = viz.timeline_figure(report)
    by_name = _traces_by_name(fig)
    div = _divisor(fig)
    baseline = np.asarray(by_name["total, policy none"].y) * div
    chosen = np.asarray(by_name["total, policy bitmap"].y) * div
    np.testing.assert_allclose(baseline, report.memory_curve("none"))
    np.testing.assert_allclose(chosen, report.memory_curve())
    assert chosen.max() < baseline.max()  # bitmap halves activations
    budget = [s for s in fig.layout.shapes if s.name == "budget"]
    assert len(budget) == 1 and budget[0].y0 * div == pytest.approx(report.tensor_budget_bytes)
    ann = _peak_annotation(fig)
    # bitmap keeps the newest activation dense at the op that makes it, so the peak moves to the end of forward
    assert ann.x == 11 and ann.y * div == pytest.approx(report.peak_bytes) and ann.text == "peak 71.50 MiB"
    assert [a for a in fig.layout.annotations if a.name == "baseline peak"][0].text == "none: 108.00 MiB"
    # the activation area is the policy's: halved except the newest one
    act = np.asarray(by_name["activation"].y) * div
    assert act[11] == pytest.approx((1 + 2 + 3 + 4 + 5 + 6 + 7 + 8 + 9 + 10 + 11) * MiB / 2 + 12 * MiB)


def test_budget_far_above_the_step_keeps_the_step_readable(trace):
    rep = FakeReport(trace, tensor_budget_bytes=3 * 1024**3)
    fig = viz.timeline_figure(rep)
    assert fig.layout.yaxis.range[1] * _divisor(fig) < 2 * rep.memory_curve("none").max()
    assert [s for s in fig.layout.shapes if s.name == "budget"]
    assert "above the chart" in fig.layout.title.text and "3.00 GiB" in fig.layout.title.text


def test_report_with_policy_none_draws_a_single_total(trace):
    fig = viz.timeline_figure(FakeReport(trace, policy="none"))
    names = [t.name for t in fig.data if t.stackgroup != "live"]
    assert names == ["total"]
    assert not [a for a in fig.layout.annotations if a.name == "baseline peak"]


def test_figure_hook_on_trace_uses_viz(trace):
    fig = trace.figure(max_points=100)
    assert _peak_annotation(fig).x == trace.timeline.peak_index


def test_plotting_something_else_is_an_input_error():
    with pytest.raises(InputError, match="expected a memsim Trace"):
        viz.timeline_figure(object())


# ---------------------------------------------------------------- large traces
def test_downsampling_keeps_peak_exact_and_bounds_points(big):
    curve = big.timeline.memory_curve()
    fig = viz.timeline_figure(big, max_points=2000)
    total = _traces_by_name(fig)["total"]
    x = np.asarray(total.x)
    y = np.asarray(total.y) * _divisor(fig)
    assert big.timeline.n_ops == 120_000
    assert len(x) <= 2000
    assert all(len(t.x) == len(x) for t in fig.data)  # stacked areas share x
    k = int(np.argmax(y))
    assert x[k] == big.timeline.peak_index == 60_007
    assert y[k] == pytest.approx(big.peak_bytes, rel=1e-12)
    np.testing.assert_allclose(y, curve[x])  # kept points carry exact values
    ann = _peak_annotation(fig)
    assert ann.x == 60_007 and f"{big.peak_bytes:,} bytes" in ann.hovertext
    assert "2,000" not in fig.layout.title.text and "of 120,000 ops drawn" in fig.layout.title.text


def test_downsample_indices_keeps_every_curves_max_and_each_bucket_extremes():
    rng = np.random.default_rng(1)
    a = np.cumsum(rng.normal(size=50_001))
    b = np.cumsum(rng.normal(size=50_001))
    idx = viz.downsample_indices([a, b], max_points=500, keep=[123, 40_000])
    assert len(idx) <= 500 and np.all(np.diff(idx) > 0)
    assert {int(np.argmax(a)), int(np.argmax(b)), 0, 50_000, 123, 40_000} <= set(idx.tolist())
    assert a[idx].min() == a.min() and b[idx].min() == b.min()
    # small inputs are drawn whole
    np.testing.assert_array_equal(viz.downsample_indices([a[:300]], max_points=500), np.arange(300))
    with pytest.raises(InputError, match="same length"):
        viz.downsample_indices([a, b[:10]])


def test_large_report_downsamples_both_totals(big):
    rep = FakeReport(big, tensor_budget_bytes=8 * 1024**3)
    fig = viz.timeline_figure(rep, max_points=3000)
    div = _divisor(fig)
    by_name = _traces_by_name(fig)
    assert len(by_name["total, policy none"].x) <= 3000
    for name, policy in (("total, policy none", "none"), ("total, policy bitmap", "bitmap")):
        y = np.asarray(by_name[name].y) * div
        assert y.max() == pytest.approx(rep.memory_curve(policy).max(), rel=1e-12)


# ---------------------------------------------------------------- peak breakdown
def test_treemap_leaves_are_coloured_by_category_and_sum_to_the_peak(report):
    fig = viz.peak_breakdown_figure(report)
    tm = fig.data[0]
    assert tm.type == "treemap" and tm.branchvalues == "total"
    values = dict(zip(tm.ids, tm.values))
    parents = dict(zip(tm.ids, tm.parents))
    colors = dict(zip(tm.ids, tm.marker.colors))
    assert values["all live tensors"] == report.peak_bytes
    assert values["classifier.fc|activation"] == (9 + 10 + 11) * MiB // 2 + 12 * MiB  # two intervals, one dense
    assert colors["classifier.fc|activation"] == CATEGORY_COLORS[Category.ACTIVATION]
    assert parents["classifier.fc"] == "classifier" and parents["classifier"] == "all live tensors"
    for node in tm.ids:  # branchvalues="total": a parent holds exactly the sum of its children
        children = [values[c] for c in tm.ids if parents[c] == node]
        if children:
            assert sum(children) == values[node]


def test_bar_breakdown_stacks_categories_per_module(trace):
    fig = viz.peak_breakdown_figure(trace, kind="bar", depth=1)
    assert {t.name for t in fig.data} == {"parameter", "optimizer_state", "input", "activation", "gradient"}
    modules = list(fig.data[0].y)
    assert modules[-1] == "classifier"  # largest at the top
    total = sum(sum(t.x) for t in fig.data) * 1024**2
    assert total == pytest.approx(trace.peak_bytes)
    with pytest.raises(InputError, match="treemap, bar"):
        viz.peak_breakdown_figure(trace, kind="pie")


# ---------------------------------------------------------------- graph export
def test_graphml_round_trips_with_networkx(trace, tmp_path):
    path = graph_export.to_graphml(trace, tmp_path / "g.graphml")
    back = nx.read_graphml(path, node_type=int)
    assert set(back.nodes) == set(trace.graph.nodes)
    assert set(back.edges) == set(trace.graph.edges)
    assert back.nodes[3]["name"] == "ReluBackward0" and back.nodes[3]["module"] == "features.conv1"
    assert back.nodes[3]["saved_bytes"] == 4 * MiB
    assert [int(s) for s in back.nodes[3]["saved"].split(",")] == trace.graph.nodes[3]["saved"]


def test_dot_declares_every_node_of_every_edge(trace, tmp_path):
    text = graph_export.to_dot(trace, tmp_path / "g.dot")
    assert (tmp_path / "g.dot").read_text() == text
    lines = text.strip().splitlines()
    assert lines[0] == "digraph autograd {" and lines[-1] == "}"
    declared = set(re.findall(r"^\s+(n\d+) \[label=", text, flags=re.M))
    edges = re.findall(r"^\s+(n\d+) -> (n\d+);$", text, flags=re.M)
    assert len(declared) == trace.graph.number_of_nodes()
    assert len(edges) == trace.graph.number_of_edges()
    assert all(a in declared and b in declared for a, b in edges)
    assert text.count("{") == text.count("}")
    assert 'saves 12.00 MiB' in text


def test_dot_escapes_quotes_in_names(tmp_path):
    tr = small_trace()
    tr.graph.nodes[0]["name"] = 'Weird"Backward\\'
    text = graph_export.to_dot(tr)
    assert 'label="Weird\\"Backward\\\\' in text


def test_graph_figure_layers_from_the_loss_and_colours_by_saved_bytes(trace):
    fig = graph_export.graph_figure(trace)
    nodes = fig.data[1]
    xs = dict(zip(trace.graph.nodes, nodes.x))
    assert xs[12] == 0  # the loss's backward node is the root
    assert all(xs[b] > xs[a] for a, b in trace.graph.edges)
    colours = dict(zip(trace.graph.nodes, nodes.marker.color))
    assert colours[11] == pytest.approx(12.0) and colours[12] == 0
    assert len(fig.data[0].x) == 3 * trace.graph.number_of_edges()


# ---------------------------------------------------------------- with the real simulator
def test_real_report_figures_agree_with_the_report(tmp_path):
    torch = pytest.importorskip("torch")
    import memsim
    from memsim.output import html_report

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(8 * 14 * 14, 10))
    tr = memsim.trace(model, torch.randn(4, 3, 16, 16), optimizer="momentum")
    rep = memsim.simulate(tr, device="jetson-nano", policy=["bitmap", "none"], sparsity=0.5, max_batch=False)
    fig = rep.figure()
    div = _divisor(fig)
    ann = _peak_annotation(fig)
    assert ann.y * div == pytest.approx(rep.peak_bytes, rel=1e-12)
    assert f"{rep.peak_bytes:,} bytes" in ann.hovertext
    budget = [s for s in fig.layout.shapes if s.name == "budget"]
    assert len(budget) == 1 and budget[0].y0 * div == pytest.approx(rep.tensor_budget_bytes)
    names = [t.name for t in fig.data]
    assert "total, policy bitmap" in names and "total, policy none" in names
    # the peak breakdown is sized by the policy, like the report's own breakdown
    peak_index, items, exact = viz.live_at_peak(rep)
    assert exact and peak_index == rep.breakdown.index
    assert sum(it.nbytes for it in items) == rep.breakdown.total_bytes == rep.peak_bytes
    tm = viz.peak_breakdown_figure(rep).data[0]
    assert dict(zip(tm.ids, tm.values))["all live tensors"] == rep.peak_bytes
    text = html_report.write_html(rep, tmp_path / "r.html").read_text()
    assert "<b>Fits</b> on" in text and text.count("Plotly.newPlot(") == 3
