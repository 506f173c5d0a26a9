"""The autograd graph of a traced step, for other tools and for the eye: GraphML, DOT and a plotly view.

Nodes are backward functions (``ConvolutionBackward0``...); an edge ``a → b`` means the gradient computed by
``a`` flows into ``b``. Each node's *saved bytes* is the sum of the storages it keeps for backward; a storage
saved by several nodes (a ReLU output that the next convolution also saves) counts for each of them, so the
node values add up to more than the step's unique saved bytes.

No graphviz is needed: DOT is written here, and the plotly view uses a layered layout computed with networkx
(layer = distance from the graph's roots along topological generations).

Example:
    >>> import torch, memsim
    >>> tr = memsim.trace(torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU()), torch.randn(4, 8))
    >>> to_dot(tr).splitlines()[0]
    'digraph autograd {'
    >>> graph_figure(tr).show()                                       # doctest: +SKIP
"""
from __future__ import annotations

from pathlib import Path

import networkx as nx
import numpy as np

from memsim.core.errors import InputError
from memsim.core.units import format_bytes
from memsim.output.format import escape

# DOT fill colours from light (saves nothing) to dark (saves the most): a light-yellow → orange → red ramp.
_RAMP = [(255, 247, 236), (253, 187, 132), (239, 101, 72), (153, 0, 0)]

__all__ = ["annotated_graph", "graph_figure", "to_dot", "to_graphml"]


def _graph_of(trace) -> nx.DiGraph:
    graph = getattr(trace, "graph", None)
    if graph is None and hasattr(trace, "trace"):  # a simulation report
        graph = trace.trace.graph
    if not isinstance(graph, nx.DiGraph):
        raise InputError(f"cannot export the graph of a {type(trace).__name__}: expected a memsim Trace or Report")
    return graph


def _tensors_of(trace) -> list:
    tr = trace.trace if hasattr(trace, "trace") and not hasattr(trace, "timeline") else trace
    return tr.timeline.tensors


def annotated_graph(trace) -> nx.DiGraph:
    """A copy of the autograd graph whose attributes are plain scalars (GraphML allows nothing else).

    Node attributes: ``name``, ``module`` (str), ``saved`` (comma-separated storage ids), ``n_saved`` (int),
    ``saved_bytes`` (int, bytes). Other scalar attributes are kept; others are written as strings.
    """
    graph = _graph_of(trace)
    tensors = _tensors_of(trace)
    out = nx.DiGraph()
    for node, attrs in graph.nodes(data=True):
        saved = [int(t) for t in attrs.get("saved", ()) or ()]
        saved_bytes = sum(tensors[t].nbytes for t in saved if 0 <= t < len(tensors))
        row = {k: _scalar(v) for k, v in attrs.items() if k != "saved"}
        row.update(name=str(attrs.get("name", node)), module=str(attrs.get("module", "") or ""),
                   saved=",".join(str(t) for t in saved), n_saved=len(saved), saved_bytes=int(saved_bytes))
        out.add_node(node, **row)
    for a, b, attrs in graph.edges(data=True):
        out.add_edge(a, b, **{k: _scalar(v) for k, v in attrs.items()})
    return out


def _scalar(value):
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def to_graphml(trace, path: str | Path) -> Path:
    """Write the autograd graph as GraphML (readable by networkx, Gephi, yEd, Cytoscape); returns the path.

    Example:
        >>> import os, tempfile, torch, memsim
        >>> tr = memsim.trace(torch.nn.Linear(8, 8), torch.randn(4, 8))
        >>> path = to_graphml(tr, os.path.join(tempfile.mkdtemp(), "step.graphml"))
        >>> nx.read_graphml(path).number_of_nodes() == tr.graph.number_of_nodes()
        True
    """
    path = Path(path)
    nx.write_graphml(annotated_graph(trace), path)
    return path


def _dot_string(text: str) -> str:
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _ramp_colour(fraction: float) -> str:
    fraction = min(max(fraction, 0.0), 1.0) * (len(_RAMP) - 1)
    k = min(int(fraction), len(_RAMP) - 2)
    t = fraction - k
    rgb = [round(a + (b - a) * t) for a, b in zip(_RAMP[k], _RAMP[k + 1])]
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def to_dot(trace, path: str | Path | None = None) -> str:
    """The autograd graph in Graphviz DOT, nodes filled by saved bytes; written to ``path`` when given.

    Node ids are ``n0, n1, ...`` (the original ids are in the ``tooltip``), labels give the backward function,
    its module and its saved bytes. Render with ``dot -Tsvg step.dot -o step.svg`` if graphviz is installed.

    Example:
        >>> import torch, memsim
        >>> print(to_dot(memsim.trace(torch.nn.Linear(8, 8), torch.randn(4, 8)))[:18])
        digraph autograd {
    """
    graph = annotated_graph(trace)
    ids = {node: f"n{k}" for k, node in enumerate(graph.nodes)}
    most = max([d["saved_bytes"] for _, d in graph.nodes(data=True)] + [1])
    lines = [
        "digraph autograd {",
        "  rankdir=LR;",
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];',
        '  edge [color="#888888"];',
    ]
    for node, d in graph.nodes(data=True):
        label = d["name"] + (f"\n{d['module']}" if d["module"] else "")
        if d["saved_bytes"]:
            label += f"\nsaves {format_bytes(d['saved_bytes'])}"
        fill = _ramp_colour((d["saved_bytes"] / most) ** 0.5)  # sqrt: small savers stay distinguishable
        font = "white" if d["saved_bytes"] / most > 0.45 else "black"
        tooltip = _dot_string(f"node {node}: saves storages [{d['saved']}]")
        lines.append(f"  {ids[node]} [label={_dot_string(label)}, fillcolor={_dot_string(fill)}, "
                     f"fontcolor={font}, tooltip={tooltip}];")
    for a, b in graph.edges:
        lines.append(f"  {ids[a]} -> {ids[b]};")
    lines.append("}")
    text = "\n".join(lines) + "\n"
    if path is not None:
        Path(path).write_text(text)
    return text


def layered_layout(graph: nx.DiGraph) -> dict:
    """Positions ``{node: (layer, row)}``: layer = topological generation (roots at 0), rows ordered within a
    layer by the mean row of their parents (one barycentre sweep, which untangles chains and skips), centred.

    Cycles (which an autograd graph should not have) are collapsed first, so this never fails.
    """
    if not nx.is_directed_acyclic_graph(graph):
        condensed = nx.condensation(graph)
        members = condensed.graph["mapping"]
        layers = {c: k for k, gen in enumerate(nx.topological_generations(condensed)) for c in gen}
        layer_of = {node: layers[members[node]] for node in graph.nodes}
    else:
        layer_of = {node: k for k, gen in enumerate(nx.topological_generations(graph)) for node in gen}
    by_layer: dict[int, list] = {}
    for node, k in layer_of.items():
        by_layer.setdefault(k, []).append(node)
    row: dict = {}
    for k in sorted(by_layer):
        nodes = by_layer[k]

        def barycentre(node):
            parents = [row[p] for p in graph.predecessors(node) if p in row]
            return sum(parents) / len(parents) if parents else 0.0

        nodes.sort(key=barycentre)
        offset = (len(nodes) - 1) / 2
        for i, node in enumerate(nodes):
            row[node] = i - offset
    return {node: (layer_of[node], row[node]) for node in graph.nodes}


def graph_figure(trace, height: int = 600, max_nodes: int = 20_000):
    """A plotly view of the autograd graph: layered left → right from the loss, nodes coloured and sized by
    the bytes they save for backward; hovering a node names it, its module and its saved storages.

    Graphs above ``max_nodes`` nodes raise :class:`~memsim.core.errors.InputError` (use :func:`to_graphml` and a
    graph tool for those). Uses WebGL above 2000 nodes.

    Example:
        >>> graph_figure(tr).show()     # doctest: +SKIP
    """
    import plotly.graph_objects as go

    graph = annotated_graph(trace)
    if graph.number_of_nodes() > max_nodes:
        raise InputError(f"the autograd graph has {graph.number_of_nodes():,} nodes, more than max_nodes="
                         f"{max_nodes:,}; export it with to_graphml() instead")
    pos = layered_layout(graph)
    scatter = go.Scattergl if graph.number_of_nodes() > 2000 else go.Scatter
    edge_x: list = []
    edge_y: list = []
    for a, b in graph.edges:
        edge_x += [pos[a][0], pos[b][0], None]
        edge_y += [pos[a][1], pos[b][1], None]
    nodes = list(graph.nodes)
    saved = np.array([graph.nodes[n]["saved_bytes"] for n in nodes], dtype=np.float64)
    most = saved.max() if len(saved) and saved.max() > 0 else 1.0
    hover = []
    for n in nodes:
        d = graph.nodes[n]
        module = d["module"] or "(no module)"
        hover.append(f"<b>{escape(d['name'])}</b><br>module: {escape(module)}<br>saves {format_bytes(d['saved_bytes'])}"
                     f" in {d['n_saved']} storage(s)")
    fig = go.Figure()
    fig.add_trace(scatter(x=edge_x, y=edge_y, mode="lines", name="gradient flow", hoverinfo="skip",
                          line=dict(color="#bbbbbb", width=1)))
    fig.add_trace(scatter(
        x=[pos[n][0] for n in nodes], y=[pos[n][1] for n in nodes], mode="markers", name="backward functions",
        text=hover, hovertemplate="%{text}<extra></extra>",
        marker=dict(size=6 + 14 * np.sqrt(saved / most), color=saved / 1024**2, colorscale="OrRd",
                    cmin=0, showscale=True, colorbar=dict(title="saved MiB"),
                    line=dict(width=0.5, color="#555555")),
    ))
    total = int(saved.sum())
    fig.update_layout(
        title=f"Autograd graph: {len(nodes):,} backward functions, {format_bytes(total)} saved "
              f"(shared storages counted per node)",
        xaxis=dict(title="distance from the loss (topological layer)", showgrid=False, zeroline=False),
        yaxis=dict(visible=False), showlegend=False, template="plotly_white", height=height,
        margin=dict(t=60, r=20, l=20, b=40),
    )
    return fig
