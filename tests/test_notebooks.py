"""Every notebook in notebooks/ is stored without outputs and runs top to bottom, drawing its figures.

The notebooks run in a fresh ipykernel started with this interpreter (the kernelspec ``python3``; jupyter_client
replaces its ``python`` command with ``sys.executable``), which the first injected cell checks.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
PLOTLY_MIME = "application/vnd.plotly.v1+json"
# figures each notebook must draw (a notebook not listed here must draw at least one)
MIN_FIGURES = {"quickstart.ipynb": 2, "own_model.ipynb": 3}


def test_the_example_notebooks_exist():
    assert {"quickstart.ipynb", "own_model.ipynb"} <= {p.name for p in NOTEBOOKS}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_with_outputs_cleared(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: clear the outputs"
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_and_draws_its_figures(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    probe = nbformat.v4.new_code_cell("import sys; print(sys.executable)")
    nb.cells.insert(0, probe)
    client = nbclient.NotebookClient(nb, timeout=240, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, naming the cell, if any cell fails
    ran_with = "".join(o.get("text", "") for o in nb.cells[0].outputs).strip()
    assert os.path.realpath(ran_with) == os.path.realpath(sys.executable)
    figures = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs
               if PLOTLY_MIME in o.get("data", {})]
    assert len(figures) >= MIN_FIGURES.get(path.name, 1)
    for fig in figures:
        assert fig["data"][PLOTLY_MIME]["data"], "an empty figure"
    errors = [o for cell in nb.cells for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
