"""measure_sparsity: real forward, native codec sizes, keys that map onto a trace's activations."""
import pytest
import torch

import memsim
import models_zoo
from memsim import codec
from memsim.core.categories import Category
from memsim.core.errors import InputError


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    model = models_zoo.create("small_cnn", seed=0)
    spec = models_zoo.spec("small_cnn")
    return model, spec, spec.example_inputs(4, seed=0)


def test_measures_relu_outputs_and_codec_sizes(small):
    model, _, x = small
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sp = memsim.measure_sparsity(model, x)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN stats untouched
    relu_outs = [s for s in sp.stats if s.op == "aten.native_batch_norm.default" and s.numel > 1000]
    assert relu_outs and all(0.4 < s.sparsity < 0.6 for s in relu_outs)  # ReLU of BN output: half zeros
    for s in sp.stats:
        assert s.encoded_bytes == codec.encoded_size(s.numel, s.nnz, s.dtype)
    assert 0.2 < sp.mean_sparsity < 0.6


def test_measured_keys_cover_trace_activations(small):
    model, spec, x = small
    sp = memsim.measure_sparsity(model, x)
    tr = memsim.trace(model, spec.example_inputs(16), loss_fn=spec.loss_fn)
    acts = [t for t in tr.timeline.tensors if t.category is Category.ACTIVATION and t.module]
    big = [t for t in acts if t.nbytes > 10_000]
    assert big
    looked_up = [sp.lookup(t.module, t.op, t.dtype) for t in big]
    assert sum(v > 0.3 for v in looked_up) >= 3  # the ReLU'd BatchNorm outputs are found by key
    dense = memsim.simulate(tr, device="jetson-nano", policy=["none", "bitmap"], sparsity=None, max_batch=False)
    measured = memsim.simulate(tr, device="jetson-nano", policy=["none", "bitmap"], sparsity=sp, max_batch=False)
    assert measured.results["bitmap"].costed.codec_bytes > dense.results["bitmap"].costed.codec_bytes


def test_several_batches_and_save_load(small, tmp_path):
    model, spec, _ = small
    batches = [spec.example_inputs(2, seed=i) for i in range(3)]
    sp = memsim.measure_sparsity(model, batches, progress=False)
    assert sp.batches == 3
    sp.save(tmp_path / "sp.json")
    again = memsim.measure.sparsity.MeasuredSparsity.load(tmp_path / "sp.json")
    assert again.mean_sparsity == pytest.approx(sp.mean_sparsity)


def test_random_data_warns_and_meta_model_is_refused(small):
    model, _, x = small
    with pytest.warns(UserWarning, match="trained networks"):
        memsim.measure_sparsity(model, x, random_data=True)
    with pytest.raises(InputError, match="meta"):
        memsim.measure_sparsity(models_zoo.create("small_cnn", device="meta"), x)
