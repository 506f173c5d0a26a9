"""models_zoo: exact parameter counts of torchvision/Hugging Face originals, module structure, API errors."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

import models_zoo
from memsim.errors import InputError

# Parameter counts of torchvision's models (weights=None) and Hugging Face GPT2LMHeadModel (tied head).
KNOWN_PARAMETER_COUNTS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
}


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(KNOWN_PARAMETER_COUNTS))
def test_parameter_count_matches_original(name):
    model = models_zoo.create(name, device="meta")
    assert count_parameters(model) == KNOWN_PARAMETER_COUNTS[name]


def test_names_sorted_and_complete():
    names = models_zoo.names()
    assert names == sorted(names)
    assert set(KNOWN_PARAMETER_COUNTS) <= set(names)
    assert "small_cnn" in names


def test_import_is_lazy():
    code = "import sys, models_zoo; models_zoo.names(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_small_cnn_trains_one_step():
    model = models_zoo.create("small_cnn", seed=0)
    spec = models_zoo.spec("small_cnn")
    assert count_parameters(model) < 100_000
    assert spec.input_shape == (3, 32, 32) and spec.input_dtype == torch.float32
    x = spec.example_inputs(4, seed=0)
    out = model(x)
    assert out.shape == (4, spec.num_classes)
    loss = spec.loss_fn(out)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_resnet_module_names_follow_torchvision():
    model = models_zoo.create("resnet50", device="meta")
    modules = dict(model.named_modules())
    assert isinstance(modules["layer1.0.conv1"], nn.Conv2d)
    assert isinstance(modules["layer1.0.downsample.1"], nn.BatchNorm2d)
    assert modules["relu"].inplace and modules["layer4.2.relu"].inplace
    assert modules["fc"].in_features == 2048


def test_seed_makes_init_reproducible_without_touching_global_rng():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = models_zoo.create("small_cnn", seed=7)
    b = models_zoo.create("small_cnn", seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_meta_device_allocates_nothing():
    model = models_zoo.create("resnet18", device="meta")
    assert all(p.is_meta for p in model.parameters())
    x = models_zoo.spec("resnet18").example_inputs(2, device="meta")
    assert x.is_meta and model(x).shape == (2, 1000)


def test_overrides_reach_constructor_and_spec():
    model = models_zoo.create("resnet18", num_classes=10, device="meta")
    assert model.fc.out_features == 10
    assert models_zoo.spec("resnet18", num_classes=10).num_classes == 10


def test_unknown_name_lists_close_and_valid_names():
    with pytest.raises(InputError) as err:
        models_zoo.create("resnet5")
    message = str(err.value)
    assert "'resnet5'" in message and "resnet50" in message and "Did you mean" in message
    assert "vgg16_bn" in message  # the full list of valid names
    with pytest.raises(InputError):
        models_zoo.spec("nope")


def test_unknown_override_names_it_and_valid_ones():
    with pytest.raises(InputError) as err:
        models_zoo.create("resnet18", n_classes=10)
    assert "'n_classes'" in str(err.value) and "num_classes" in str(err.value)


def test_bad_device_and_batch_size_are_input_errors():
    with pytest.raises(InputError, match="device"):
        models_zoo.create("small_cnn", device="gpu7")
    with pytest.raises(InputError, match="batch size"):
        models_zoo.spec("small_cnn").example_inputs(0)


def test_weights_round_trip_strictly(tmp_path):
    source = models_zoo.create("small_cnn", seed=1)
    path = tmp_path / "small.pt"
    torch.save(source.state_dict(), path)
    loaded = models_zoo.create("small_cnn", weights=str(path), seed=2)
    for (name, a), b in zip(source.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "bad.pt")
    with pytest.raises(InputError, match="do not match"):
        models_zoo.create("small_cnn", weights=str(tmp_path / "bad.pt"))
    with pytest.raises(InputError, match="does not exist"):
        models_zoo.create("small_cnn", weights=str(tmp_path / "missing.pt"))
    with pytest.raises(InputError, match="meta"):
        models_zoo.create("small_cnn", weights=str(path), device="meta")


def test_classification_loss_targets_zeros():
    spec = models_zoo.spec("small_cnn")
    logits = torch.tensor([[5.0, 0.0], [0.0, 5.0]])
    expected = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 0]))
    assert torch.allclose(spec.loss_fn(logits), expected)
