"""`memsim bench fidelity` / `memsim bench trace`: the commands run, print their tables and reject bad input."""
import json

from click.testing import CliRunner

from memsim.cli import cli


def test_bench_fidelity_prints_a_row_and_writes_json(tmp_path):
    out = tmp_path / "rows.json"
    res = CliRunner().invoke(cli, ["bench", "fidelity", "--models", "small_cnn", "--batches", "2",
                                   "--optimizers", "momentum", "--no-memtracker", "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "small_cnn" in res.output and "1 within 1%" in res.output
    (row,) = json.loads(out.read_text())
    assert row["model"] == "small_cnn" and row["batch"] == 2 and row["optimizer"] == "momentum"
    assert abs(row["error_pct"]) <= 1.0


def test_bench_fidelity_rejects_unknown_names():
    res = CliRunner().invoke(cli, ["bench", "fidelity", "--models", "resnet9000"])
    assert res.exit_code == 2 and "resnet9000" in res.output and "resnet50" in res.output
    res = CliRunner().invoke(cli, ["bench", "fidelity", "--models", "small_cnn", "--optimizers", "lamb"])
    assert res.exit_code == 2 and "momentum" in res.output
    res = CliRunner().invoke(cli, ["bench", "fidelity", "--models", "small_cnn", "--batches", "two"])
    assert res.exit_code == 2 and "--batches" in res.output


def test_bench_fidelity_skips_measuring_above_the_limit():
    res = CliRunner().invoke(cli, ["bench", "fidelity", "--models", "small_cnn", "--batches", "2",
                                   "--optimizers", "sgd", "--no-memtracker", "--max-measure", "1KiB"])
    assert res.exit_code == 0, res.output
    assert "not measured" in res.output


def test_other_backends_say_what_they_need(tmp_path):
    import torch

    runner = CliRunner()
    if not torch.cuda.is_available():
        r = runner.invoke(cli, ["bench", "fidelity", "--backend", "cuda", "--models", "small_cnn"])
        assert r.exit_code == 2 and "no CUDA device" in r.output
    r = runner.invoke(cli, ["bench", "fidelity", "--backend", "aarch64-emulated", "--threads", "1",
                            "--emulation-root", str(tmp_path / "nowhere")])
    assert r.exit_code == 2 and "setup_aarch64.sh" in r.output
    r = runner.invoke(cli, ["bench", "fidelity", "--backend", "tpu"])
    assert r.exit_code == 2 and "aarch64-emulated" in r.output
