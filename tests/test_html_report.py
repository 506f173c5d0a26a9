"""The HTML report is one offline file: plotly.js inline once, no network references, the policy table, the
figures and what is live at the peak."""
from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from fake_report import FakeReport, large_trace, small_trace
from memsim.output import html_report
from memsim.core.errors import InputError


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.scripts: list[dict] = []
        self.links: list[dict] = []
        self.ids: set[str] = set()
        self.rows: list[list[str]] = []
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._row: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "script":
            self.scripts.append(a)
        elif tag == "link":
            self.links.append(a)
        elif tag == "table":
            self._table = a.get("id")
        elif tag == "tr" and self._table == "policies":
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    rep = FakeReport(small_trace())
    path = html_report.write_html(rep, tmp_path_factory.mktemp("html") / "report.html")
    text = path.read_text(encoding="utf-8")
    parsed = _Collector()
    parsed.feed(text)
    return rep, text, parsed


def test_one_standalone_file_with_plotly_inline_once(written):
    _, text, parsed = written
    assert text.startswith("<!DOCTYPE html>")
    assert not [s for s in parsed.scripts if re.match(r"(https?:)?//", s.get("src", ""))]
    assert not [s for s in parsed.scripts if s.get("src")]  # nothing loaded from anywhere
    assert not [link for link in parsed.links if link.get("href")]
    assert not re.search(r"""<(script|link|img|iframe)[^>]+(src|href)=["']?https?://""", text)
    # the plotly.js bundle is inlined exactly once (its banner names the version), before the first plot
    assert len(re.findall(r"\* plotly\.js v\d+\.\d+\.\d+", text)) == 1
    assert len(text) > 1_000_000
    assert text.index("plotly.js v") < text.index("Plotly.newPlot")
    assert text.count("Plotly.newPlot(") == 3


def test_figures_and_sections_present(written):
    _, text, parsed = written
    assert {"timeline", "peak-breakdown", "graph", "policies", "by-category", "top-tensors"} <= parsed.ids
    assert "Memory over the step" in text and "Live at the peak" in text and "Autograd graph" in text


def test_policy_table_has_one_row_per_policy_with_formatted_numbers(written):
    rep, text, parsed = written
    head, *rows = parsed.rows
    assert head == ["policy", "peak live tensors", "device peak", "fits", "headroom", "max batch size",
                    "extra compute", "codec time / step", "lossy"]
    assert [r[0] for r in rows] == ["none", "bitmap"]
    none, bitmap = (dict(zip(head, r)) for r in rows)
    assert none["peak live tensors"] == "108.00 MiB" and none["fits"] == "no" and none["max batch size"] == "4"
    assert none["headroom"] == "-8.00 MiB"
    assert bitmap["peak live tensors"] == "71.50 MiB" and bitmap["fits"] == "yes"
    assert bitmap["codec time / step"] == "12.0 ms" and bitmap["extra compute"] == "1.00 MFLOP"
    assert '<tr class="chosen"><td>bitmap</td>' in text


def test_verdict_and_live_at_peak_numbers(written):
    rep, text, _ = written
    assert "<b>Fits</b> on NVIDIA Jetson Nano 4GB" in text
    assert "headroom 28.50 MiB" in text
    assert "71.50 MiB in 21 storages" in text  # the policy's sizes, not the traced ones
    assert "op 11: <span class=\"mono\">aten.relu.default</span>" in text


def test_notes_of_report_and_trace_are_listed_once(tmp_path):
    rep = FakeReport(small_trace())
    rep.notes = ["sparsity assumed <50%>"]
    rep.trace.meta["notes"] = ["no max batch size: traced at one batch size", "sparsity assumed <50%>"]
    text = html_report.write_html(rep, tmp_path / "r.html").read_text()
    assert text.count("<li>sparsity assumed &lt;50%&gt;</li>") == 1
    assert "<li>no max batch size: traced at one batch size</li>" in text


def test_a_report_that_does_not_fit_says_so(tmp_path):
    rep = FakeReport(small_trace(), tensor_budget_bytes=10 * 1024**2)
    text = html_report.write_html(rep, tmp_path / "r.html").read_text()
    assert "<b>Does not fit</b>" in text and "over by 61.50 MiB" in text


def test_bare_trace_and_large_trace(tmp_path, monkeypatch):
    text = html_report.write_html(small_trace(), tmp_path / "t.html").read_text()
    assert 'id="policies"' not in text and "Plotly.newPlot(" in text
    monkeypatch.setattr(html_report, "GRAPH_MAX_NODES", 5)
    big = FakeReport(large_trace(n_ops=100_000, n_tensors=20_000), tensor_budget_bytes=4 * 1024**3)
    big.trace.graph.add_nodes_from(range(10))
    text = html_report.write_html(big, tmp_path / "big.html").read_text()
    assert "of 100,000 ops drawn" in text and "too large to draw here" in text
    assert len(text) < 12_000_000  # downsampled: the figures stay small next to plotly.js


def test_bad_path_and_bad_object_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        html_report.write_html(small_trace(), tmp_path / "missing" / "r.html")
    with pytest.raises(InputError, match="expected a memsim Trace"):
        html_report.write_html(42, tmp_path / "r.html")
