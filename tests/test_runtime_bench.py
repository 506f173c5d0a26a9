"""`memsim bench runtime`: the table runs end to end on a tiny model, and bad options exit 2."""
from __future__ import annotations

import re

from click.testing import CliRunner

from memsim.cli import cli


def test_bench_runtime_prints_measured_and_predicted_rows():
    result = CliRunner().invoke(cli, ["bench", "runtime", "--models", "small_cnn", "--batches", "4",
                                      "--image-size", "32", "--repeats", "1",
                                      "--policies", "bitmap,bitmap+mask"])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if re.match(r"small_cnn\s+4\s", line)]
    assert len(rows) == 2
    bitmap, mask = rows
    # peak without > peak with, a measured reduction and a prediction for both policies
    for row in (bitmap, mask):
        numbers = re.findall(r"-?\d+\.\d+", row)
        assert float(numbers[0]) > float(numbers[1])
        assert "n/a" not in row
    assert "skipped" in result.output and "saved tensors by producing op" in result.output


def test_bench_runtime_rejects_bad_options():
    runner = CliRunner()
    for args, needle in ((["--models", "gpt2"], "unknown image model"), (["--batches", "0"], "bad batch size"),
                         (["--policies", "zip"], "valid choices")):
        result = runner.invoke(cli, ["bench", "runtime", *args])
        assert result.exit_code == 2 and needle in result.output, result.output
