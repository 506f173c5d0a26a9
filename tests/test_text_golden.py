"""Golden output of the text report, the check line and the JSON, from a frozen trace.

The trace (small_cnn, batch 4 with batch-2 scaling, SGD momentum) is stored in tests/golden, so the expected
text does not depend on the CPU running the tests. After an intended change of the output, regenerate with
``MEMSIM_UPDATE_GOLDEN=1 pytest tests/test_text_golden.py`` and review the diff.
"""
import json
import os
from pathlib import Path

import pytest

import memsim
from memsim.output import text

GOLDEN = Path(__file__).parent / "golden"
TRACE = GOLDEN / "small_cnn_b4_momentum.trace.json.gz"
CASES = {
    "profile_small_cnn_pi4.txt": dict(device="raspberry-pi-4-2gb", policy="all", sparsity=0.5),
    "profile_small_cnn_nano_margin.txt": dict(device="jetson-nano", policy="bitmap,none", sparsity=None, margin=0.1),
}


def _compare(name: str, actual: str) -> None:
    path = GOLDEN / name
    if os.environ.get("MEMSIM_UPDATE_GOLDEN"):
        path.write_text(actual)
    assert path.is_file(), f"missing golden file {path}; run with MEMSIM_UPDATE_GOLDEN=1"
    assert actual == path.read_text(), f"{name} changed; if intended, regenerate (see the module docstring)"


@pytest.mark.parametrize("name", sorted(CASES))
def test_text_report_matches_golden(name):
    rep = memsim.simulate(memsim.Trace.load(TRACE), **CASES[name])
    _compare(name, text.render(rep) + "\n" + text.check_line(rep) + "\n")


def test_json_report_matches_golden():
    rep = memsim.simulate(memsim.Trace.load(TRACE), device="raspberry-pi-4-2gb", policy="none,bitmap", sparsity=0.5)
    _compare("profile_small_cnn_pi4.json", json.dumps(rep.to_dict(), indent=2) + "\n")
