"""The command line: exit codes, one-line errors without tracebacks, JSON schema, check from a saved trace."""
import json

import pytest
from click.testing import CliRunner

import memsim
from memsim.cli import cli

FACTORY = '''
import torch
from torch import nn

def make():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 16 * 16, 10))

def make_with_inputs():
    return make(), torch.randn(2, 3, 16, 16)

def boom():
    raise RuntimeError("no weights here")

def broken():
    return nn.Sequential(nn.Linear(5, 3)), torch.randn(2, 7)
'''


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def factory_file(tmp_path):
    p = tmp_path / "mymodel.py"
    p.write_text(FACTORY)
    return p


def run(runner, *args):
    return runner.invoke(cli, list(map(str, args)))


@pytest.mark.parametrize("args, message", [
    (["profile", "resnt50"], "did you mean 'resnet50'"),
    (["profile", "small_cnn", "--device", "jetsn-nano"], "did you mean 'jetson-nano'"),
    (["check", "small_cnn", "--budget", "4XB"], "bad size '4XB'"),
    (["check", "small_cnn", "--device", "jetson-nano", "--batch-size", "0"], "0 is not in the range"),
    (["check", "small_cnn"], "check needs --device"),
    (["profile", "small_cnn", "--policy", "zip"], "valid choices: none, bitmap"),
    (["profile", "small_cnn", "--optimizer", "lion"], "valid choices: sgd, momentum, adam, adamw"),
    (["profile", "small_cnn", "--sparsity", "1.5"], "between 0 and 1"),
    (["profile", "small_cnn", "--input-shape", "3,a,3"], "bad input shape"),
    (["check", "missing.json", "--device", "jetson-nano"], "trace file not found"),
    (["profile", "nowhere/model.py:make"], "model file not found"),
])
def test_bad_input_exits_2_with_one_clear_line(runner, args, message):
    result = run(runner, *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_factory_errors_are_user_errors(runner, factory_file):
    r = run(runner, "profile", f"{factory_file}:boom")
    assert r.exit_code == 2 and "RuntimeError: no weights here" in r.output
    r = run(runner, "profile", f"{factory_file}:nothere")
    assert r.exit_code == 2 and "make_with_inputs" in r.output
    r = run(runner, "profile", f"{factory_file}:make")
    assert r.exit_code == 2 and "--input-shape" in r.output
    r = run(runner, "profile", f"{factory_file}:broken")
    assert r.exit_code == 2 and "Traceback" not in r.output


def test_profile_user_factory_prints_policy_table(runner, factory_file):
    r = run(runner, "profile", f"{factory_file}:make_with_inputs", "--budget", "1GiB", "--policy", "none,bitmap")
    assert r.exit_code == 0, r.output
    assert "tensor peak" in r.output and "bitmap" in r.output and "live at the peak" in r.output
    r = run(runner, "profile", f"{factory_file}:make", "--input-shape", "3,16,16", "--budget", "1GiB")
    assert r.exit_code == 0, r.output


def test_profile_json_schema(runner, tmp_path):
    out = tmp_path / "r.json"
    r = run(runner, "profile", "small_cnn", "--device", "raspberry-pi-4-2gb", "--batch-size", 8, "--json", out)
    assert r.exit_code == 0, r.output
    data = json.loads(out.read_text())
    for key in ("model", "batch_size", "device", "policy", "peak_bytes", "device_peak_bytes", "budget_bytes",
                "fits", "max_batch_size", "breakdown", "policies"):
        assert key in data
    assert data["model"] == "small_cnn" and data["batch_size"] == 8 and data["device"] == "raspberry-pi-4-2gb"
    assert data["device_peak_bytes"] > data["peak_bytes"] > 0
    assert sum(data["breakdown"].values()) == data["peak_bytes"]
    assert [p["policy"] for p in data["policies"]][0] == "none"


def test_check_exit_codes_and_saved_trace(runner, tmp_path):
    trace = tmp_path / "t.json.gz"
    r = run(runner, "profile", "small_cnn", "-b", 16, "--budget", "4GiB", "--policy", "none", "--save-trace", trace)
    assert r.exit_code == 0, r.output
    fits = run(runner, "check", trace, "--budget", "4GiB")
    assert fits.exit_code == 0 and "fits" in fits.output
    too_small = run(runner, "check", trace, "--budget", "1MiB")
    assert too_small.exit_code == 1 and "does NOT fit" in too_small.output
    # a saved trace with batch scaling can be checked at another batch size without tracing again
    big = run(runner, "check", trace, "--budget", "4GiB", "--batch-size", 100000)
    assert big.exit_code == 1
    margin = run(runner, "check", "small_cnn", "-b", 16, "--budget", "4GiB", "--margin", "10%", "--json", "-")
    assert margin.exit_code == 0
    assert json.loads(margin.stdout)["margin"] == pytest.approx(0.1)


def test_devices_lists_catalog(runner):
    r = run(runner, "devices")
    assert r.exit_code == 0
    for name in ("jetson-nano", "raspberry-pi-5-8gb", "jetson-agx-orin-64gb"):
        assert name in r.output


def test_second_profile_of_a_zoo_model_comes_from_the_trace_cache(runner, tmp_path, monkeypatch):
    monkeypatch.setenv("MEMSIM_CACHE_DIR", str(tmp_path / "cache"))
    args = ["profile", "small_cnn", "-b", 8, "--budget", "2GiB", "--json", "-"]
    first, second = run(runner, *args), run(runner, *args)
    assert first.exit_code == second.exit_code == 0
    assert "trace from cache" not in first.stderr and "trace from cache" in second.stderr
    reports = [json.loads(first.stdout), json.loads(second.stdout)]
    assert [r.pop("cache") for r in reports] == ["miss", "hit"]
    assert reports[0] == reports[1]
    third = run(runner, *args, "--no-cache")
    assert "trace from cache" not in third.stderr
    uncached = json.loads(third.stdout)
    assert uncached.pop("cache") == "off" and uncached == reports[0]


def test_profile_library_call_gives_the_cli_numbers(runner, tmp_path, monkeypatch):
    """memsim.profile is what `memsim profile --json` prints: the CLI only formats it."""
    monkeypatch.setenv("MEMSIM_CACHE_DIR", str(tmp_path / "cache"))
    r = run(runner, "profile", "small_cnn", "-b", 4, "--device", "raspberry-pi-4-2gb", "--policy", "none,bitmap",
            "--json", "-", "--no-cache")
    assert r.exit_code == 0, r.output
    rep = memsim.profile("small_cnn", batch_size=4, device="raspberry-pi-4-2gb", policy="none,bitmap", cache=False)
    assert rep.to_dict() == json.loads(r.stdout)
    assert [row["policy"] for row in rep.table_rows()] == ["none", "bitmap"]
    assert all(row["max_batch_size"] > 4 for row in rep.table_rows())
