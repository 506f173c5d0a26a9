"""Policies and the simulator on a hand-built trace whose peaks are known."""
import pytest

import memsim
from memsim.core.errors import InputError
from memsim.simulation.policies import Policy, apply_policy, parse_policies
from synthetic import chain_trace

MB = 1_000_000


def test_none_policy_reproduces_trace_peak():
    tr = chain_trace(layers=8)
    # op 7: 8 params (8 MB) + 8 activations (32 MB) + one temporary (2 MB)
    assert tr.peak_bytes == 42 * MB
    assert apply_policy(tr, "none").peak_bytes == 42 * MB


def test_fp16_halves_stored_activations():
    tr = chain_trace(layers=8)
    costed = apply_policy(tr, Policy.FP16)
    # op 7: params 8 + dense act6, act7 (8) + eight half copies (16) + temporary 2
    assert costed.peak_bytes == 34 * MB
    assert costed.converted_bytes == 32 * MB


def test_bitmap_shrinks_sparse_activations_and_never_grows_dense_ones():
    tr = chain_trace(layers=8)
    dense = apply_policy(tr, "bitmap", sparsity=0.0)
    sparse = apply_policy(tr, "bitmap", sparsity=0.9)
    assert dense.peak_bytes == tr.peak_bytes  # the codec would not shrink them: left alone
    assert sparse.peak_bytes < 0.6 * tr.peak_bytes
    mask = apply_policy(tr, "bitmap+mask+indices", sparsity=0.0)  # ReLU saved only for its mask: 1 bit each
    assert mask.peak_bytes < 0.5 * tr.peak_bytes


def test_parse_policies_lists_valid_names():
    assert parse_policies("all")[0] is Policy.NONE and parse_policies("all") == [p for p in Policy if p is not Policy.PLAN]
    assert parse_policies("plan,all")[0] is Policy.PLAN  # a plan is asked for by name
    with pytest.raises(InputError, match="valid choices: none, bitmap"):
        parse_policies("zip")


def test_simulate_fits_and_max_batch_are_consistent():
    tr = chain_trace(layers=8)
    rep = memsim.simulate(tr, device="jetson-nano", policy=["none", "fp16"])
    assert rep.policy == "none" and set(rep.policies) == {"none", "fp16"}
    assert rep.peak_bytes == 42 * MB
    assert rep.device_peak_bytes > rep.peak_bytes  # runtime + OS + allocator rounding on the device
    b = rep.max_batch_size
    assert b and b > 8
    at_max = memsim.simulate(tr, device="jetson-nano", batch_size=b, max_batch=False)
    over = memsim.simulate(tr, device="jetson-nano", batch_size=b + 1, max_batch=False)
    assert at_max.fits and not over.fits
    assert rep.results["fp16"].max_batch_size > b


def test_budget_and_margin():
    tr = chain_trace(layers=8)
    rep = memsim.simulate(tr, device="jetson-nano", margin=0.5)
    assert rep.usable_bytes == rep.budget_bytes // 2
    assert rep.to_dict()["fits"] == rep.fits
    with pytest.raises(InputError, match="margin"):
        memsim.simulate(tr, device="jetson-nano", margin=1.5)


def test_saved_trace_simulates_identically(tmp_path):
    tr = chain_trace(layers=8)
    tr.save(tmp_path / "t.json.gz")
    loaded = memsim.Trace.load(tmp_path / "t.json.gz")
    a = memsim.simulate(tr, device="raspberry-pi-4-2gb", policy="all", sparsity=0.5).to_dict()
    b = memsim.simulate(loaded, device="raspberry-pi-4-2gb", policy="all", sparsity=0.5).to_dict()
    assert a == b


@pytest.mark.parametrize("name, b1, b2, b3", [("small_cnn", 4, 8, 24),
                                              pytest.param("mobilenet_v3_small", 2, 3, 7, marks=pytest.mark.slow)])
def test_batch_scaling_predicts_a_third_batch_size(name, b1, b2, b3):
    """Two traces teach which storages grow with the batch; the peak at a third batch must match a trace."""
    import models_zoo

    model = models_zoo.create(name, device="meta")
    spec = models_zoo.spec(name)

    def at(b):
        return memsim.trace(model, spec.example_inputs(b, device="meta"), loss_fn=spec.loss_fn, optimizer="adam")

    scaled = at(b2).attach_scaling(at(b1))
    predicted = apply_policy(scaled, "none", batch_size=b3).peak_bytes
    assert predicted == pytest.approx(at(b3).peak_bytes, rel=0.001)
