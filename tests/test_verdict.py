"""A verdict a CI gate can rely on: demand vs fitting by releases, steady state, robustness, and a max batch
size such that every smaller batch fits too and that does not depend on the batch traced."""
import pytest
from click.testing import CliRunner

import memsim
from memsim.cli import cli
from memsim.simulation import devices
from memsim.simulation.verdict import EXACT_SCAN_LIMIT, device_cost, max_batch

MiB = 1 << 20


class _Events:
    """A costed step given directly as allocator events."""

    def __init__(self, events):
        self._events = events

    def allocation_events(self):
        return list(self._events)


def _gpu(tmp_path, total="100MiB", uncertainty="0"):
    path = tmp_path / "gpu.toml"
    path.write_text(f'kind = "cuda-gpu"\ntotal_memory = "{total}"\ncuda_capability = "8.6"\n'
                    f'uncertainty = "{uncertainty}"\n')
    return devices.load_file(path)


def test_demand_and_fitting_by_releasing_cached_segments_are_told_apart(tmp_path):
    # a freed 12 MiB block stays cached in its segment; the 14 MiB request needs a new one
    step = _Events([(0, 0, 12 * MiB), (1, 0, -12 * MiB), (2, 1, 14 * MiB), (3, 1, -14 * MiB)])
    roomy = device_cost(step, _gpu(tmp_path, "100MiB"), margin=0.0)
    assert roomy.fits and roomy.releases == 0 and roomy.verdict == "fits" and roomy.steady
    tight = device_cost(step, _gpu(tmp_path, "24MiB"), margin=0.0)
    assert tight.reserved_bytes == 26 * MiB                 # demand: what the step holds without a limit
    assert tight.fits and tight.releases >= 1
    assert tight.verdict.startswith("fits only by releasing cached segments")
    too_small = device_cost(step, _gpu(tmp_path, "13MiB"), margin=0.0)
    assert not too_small.fits and too_small.verdict == "does not fit"


def test_a_fit_within_the_uncertainty_band_is_not_robust_and_gets_advice(tmp_path):
    # a live 3 MiB block pins its 20 MiB segment, so the 18 MiB request needs a segment of its own
    step = _Events([(0, 0, 3 * MiB), (1, 1, 18 * MiB), (2, 1, -18 * MiB), (3, 0, -3 * MiB)])
    cost = device_cost(step, _gpu(tmp_path, "40MiB", uncertainty="15MiB"), margin=0.0)
    assert cost.fits and not cost.robust and "uncertainty band" in cost.verdict
    assert cost.allocated_bytes == 21 * MiB and cost.reserved_bytes == 38 * MiB
    assert any("expandable_segments" in a for a in cost.advice)


def test_max_batch_stops_at_the_first_batch_that_fails():
    fails = {40, 41, 90}                      # a fragmentation hole below a later "fits" region

    def fits_at(b):
        return b < 100 and b not in fails

    found = max_batch(fits_at, peak_at=lambda b: b, capacity=150, monotone=False)
    assert found.size == 39 and found.method == "every batch from 1 checked"
    monotone = max_batch(lambda b: b <= 77, peak_at=lambda b: b, capacity=150, monotone=True)
    assert monotone.size == 77 and "bisection" in monotone.method
    big = max_batch(lambda b: b <= 5000, peak_at=lambda b: b, capacity=10_000, monotone=False)
    assert big.size == 5000 and str(EXACT_SCAN_LIMIT) in big.method
    assert max_batch(lambda b: False, lambda b: b, 100, monotone=False).size == 0


CASES = [  # model, input shape, device, policy: one CUDA case with every batch checked, one CPU bisection
    pytest.param("resnet18", "3,64,64", "jetson-nano-2gb", "bitmap+mask+indices", id="resnet18-nano"),
    pytest.param("mobilenet_v2", "3,64,64", "raspberry-pi-4-2gb", "none", id="mobilenet_v2-pi4"),
    pytest.param("squeezenet1_1", "3,96,96", "jetson-orin-nano-4gb", "none", id="squeezenet-orin",
                 marks=pytest.mark.slow),
    pytest.param("small_cnn", None, "jetson-nano-2gb", "bitmap", id="small_cnn-nano", marks=pytest.mark.slow),
]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("MEMSIM_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "verdict-cache"))


@pytest.mark.slow
@pytest.mark.parametrize("model, shape, device, policy", CASES)
def test_max_batch_is_the_same_whatever_batch_was_asked(model, shape, device, policy):
    sizes = {memsim.profile(model, device=device, batch_size=b, policy=policy, input_shape=shape).max_batch_size
             for b in (2, 8)}
    assert len(sizes) == 1 and sizes.pop() > 8


@pytest.mark.slow
@pytest.mark.parametrize("model, shape, device, policy", CASES[:2])
def test_check_passes_up_to_the_max_batch_and_fails_right_after(model, shape, device, policy):
    top = memsim.profile(model, device=device, batch_size=4, policy=policy, input_shape=shape).max_batch_size
    runner = CliRunner()
    for b, code in ((1, 0), (top // 2, 0), (top, 0), (top + 1, 1)):
        args = ["check", model, "--device", device, "-b", str(b), "--policy", policy]
        result = runner.invoke(cli, args + (["--input-shape", shape] if shape else []))
        assert result.exit_code == code, (b, result.output)


def test_report_says_which_backend_and_how_validated(tmp_path):
    import torch

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(16 * 14 * 14, 10), torch.nn.Dropout(0.5))
    tr = memsim.trace(model, torch.randn(4, 3, 16, 16), optimizer="adam")
    host_ws = sum(t.nbytes for t in tr.timeline.tensors if t.category == memsim.Category.WORKSPACE)
    assert host_ws > 0

    pi = memsim.simulate(tr, device="raspberry-pi-5-8gb")
    assert pi.backend == "aarch64" and pi.threads == 4 and pi.to_dict()["backend"]["name"] == "aarch64"
    cuda = memsim.simulate(tr, device="jetson-orin-nano-8gb")
    info = cuda.to_dict()["backend"]
    assert info["name"] == "cuda" and not info["validated"] and "not validated on a GPU" in info["validation"]
    names = {t.name for t in cuda.trace.timeline.tensors}
    assert {"cuBLAS workspace (forward thread)", "cuBLAS workspace (backward thread)"} <= names
    assert "foreach Adam sqrt(exp_avg_sq) list" in names
    # no host-only scratch in another backend's prediction: CUDA's conv workspaces are its own (0, a lower bound)
    conv_ws = [t for t in cuda.trace.timeline.tensors if t.name in ("conv_fwd_scratch", "conv_bwd_scratch")]
    assert conv_ws and all(t.nbytes == 0 for t in conv_ws)
    assert "NOT validated" in memsim.output.text.render(cuda)
    host = memsim.simulate(tr, device="laptop-16gb")
    assert host.backend == "x86" and host.backend_info["validated"]
    cpu_side = memsim.simulate(tr, device="jetson-orin-nano-8gb", backend="cpu")
    assert cpu_side.backend == "aarch64" and str(cpu_side.device.allocator) == "cpu"
    with pytest.raises(memsim.MemsimError, match="does not run backend 'x86'"):
        memsim.simulate(tr, device="jetson-orin-nano-8gb", backend="x86")


def test_html_report_states_the_backend():
    import torch

    from memsim.output import html_report

    tr = memsim.trace(torch.nn.Linear(32, 32), torch.randn(4, 32))
    page = html_report.render_html(memsim.simulate(tr, device="jetson-nano"), include_graph=False)
    assert 'id="backend"' in page and "<b>cuda</b> backend" in page and "not validated" in page
