"""models_zoo: exact parameter counts of torchvision/Hugging Face originals, module structure, API errors."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

import models_zoo
from memsim.core.errors import InputError

# Parameter counts of torchvision's models (weights=None) and Hugging Face GPT2LMHeadModel (tied head).
KNOWN_PARAMETER_COUNTS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "mobilenet_v2": 3_504_872,
    "mobilenet_v3_small": 2_542_856,
    "mobilenet_v3_large": 5_483_032,
    "vgg11": 132_863_336,
    "vgg16": 138_357_544,
    "vgg16_bn": 138_365_992,
    "efficientnet_b0": 5_288_548,
    "densenet121": 7_978_856,
    "squeezenet1_1": 1_235_496,
    "vit_b_16": 86_567_656,
    "vit_tiny": 5_717_416,  # timm vit_tiny_patch16_224
    "gpt2": 124_439_808,
    "gpt2_medium": 354_823_168,
    "gpt2_large": 774_030_080,
    "gpt2_xl": 1_557_611_200,
}
LANGUAGE_MODELS = ["gpt2", "gpt2_medium", "gpt2_large", "gpt2_xl"]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(KNOWN_PARAMETER_COUNTS))
def test_parameter_count_matches_original(name):
    model = models_zoo.create(name, device="meta")
    assert count_parameters(model) == KNOWN_PARAMETER_COUNTS[name]


def test_names_sorted_and_complete():
    names = models_zoo.names()
    assert names == sorted(names)
    assert names == sorted([*KNOWN_PARAMETER_COUNTS, "small_cnn"])


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
    assert "'resnet5'" in message and "resnet50" in message and "did you mean" in message
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
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA"):
            models_zoo.create("small_cnn", device="cuda")


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


@pytest.mark.parametrize("name", sorted(set(KNOWN_PARAMETER_COUNTS) - set(LANGUAGE_MODELS)))
def test_image_models_map_default_inputs_to_logits_on_meta(name):
    spec = models_zoo.spec(name)
    assert spec.input_shape == (3, 224, 224) and spec.input_dtype == torch.float32
    model = models_zoo.create(name, device="meta")
    out = model(spec.example_inputs(2, device="meta"))
    assert out.shape == (2, 1000) and out.is_meta
    assert spec.loss_fn(out).shape == ()


@pytest.mark.parametrize("name", LANGUAGE_MODELS)
def test_gpt2_spec_and_meta_forward(name):
    spec = models_zoo.spec(name)
    assert spec.input_shape == (1024,) and spec.input_dtype == torch.int64
    assert spec.vocab_size == 50257 and spec.max_seq_len == 1024
    assert models_zoo.spec(name, seq_len=64).input_shape == (64,)
    model = models_zoo.create(name, device="meta")
    x = spec.example_inputs(1, device="meta", seq_len=8)
    assert x.dtype == torch.int64 and x.shape == (1, 8)
    assert model(x).shape == (1, 8, 50257)


def _module_types(model: nn.Module) -> set[type]:
    return {type(m) for m in model.modules()}


def test_activation_layers_follow_torchvision():
    v2 = dict(models_zoo.create("mobilenet_v2", device="meta").named_modules())
    assert isinstance(v2["features.0.2"], nn.ReLU6) and v2["features.0.2"].inplace
    assert isinstance(v2["features.2.conv.1.0"], nn.Conv2d) and v2["features.2.conv.1.0"].groups == 96
    assert isinstance(v2["classifier.0"], nn.Dropout)

    v3 = models_zoo.create("mobilenet_v3_large", device="meta")
    assert {nn.Hardswish, nn.Hardsigmoid, nn.ReLU} <= _module_types(v3)
    v3_modules = dict(v3.named_modules())
    assert v3_modules["features.0.2"].inplace and isinstance(v3_modules["features.0.1"], nn.BatchNorm2d)
    assert v3_modules["features.0.1"].eps == 0.001

    eff = dict(models_zoo.create("efficientnet_b0", device="meta").named_modules())
    assert isinstance(eff["features.0.2"], nn.SiLU) and eff["features.0.2"].inplace
    assert type(eff["features.2.0.block.2"]).__name__ == "SqueezeExcitation"
    assert eff["features.2.1.stochastic_depth"].p == pytest.approx(0.2 * 2 / 16)

    dense = dict(models_zoo.create("densenet121", device="meta").named_modules())
    assert isinstance(dense["features.denseblock1.denselayer1.conv1"], nn.Conv2d)
    assert isinstance(dense["features.transition1.pool"], nn.AvgPool2d)

    vit = dict(models_zoo.create("vit_b_16", device="meta").named_modules())
    assert isinstance(vit["encoder.layers.encoder_layer_0.self_attention"], nn.MultiheadAttention)
    assert isinstance(vit["encoder.layers.encoder_layer_11.mlp.1"], nn.GELU)

    gpt = dict(models_zoo.create("gpt2", device="meta").named_modules())
    assert isinstance(gpt["transformer.h.0.mlp.act"], nn.GELU) and gpt["transformer.h.0.mlp.act"].approximate == "tanh"
    assert isinstance(gpt["transformer.h.11.ln_2"], nn.LayerNorm)


def test_gpt2_head_is_tied_and_counted_once():
    model = models_zoo.create("gpt2", device="meta")
    assert model.lm_head.weight is model.transformer.wte.weight
    untied = sum(p.numel() for p in model.parameters()) + model.lm_head.weight.numel()
    assert untied == 124_439_808 + 50257 * 768


def test_gpt2_is_causal_and_trains():
    model = models_zoo.create("gpt2", n_layer=2, vocab_size=100, n_positions=32, seed=0).eval()
    spec = models_zoo.spec("gpt2", vocab_size=100, n_positions=32, seq_len=16)
    x = spec.example_inputs(2, seed=0)
    assert int(x.max()) < 100
    changed = x.clone()
    changed[:, 10] = (changed[:, 10] + 1) % 100
    with torch.no_grad():
        a, b = model(x), model(changed)
    assert torch.allclose(a[:, :10], b[:, :10], atol=1e-5)  # earlier positions never see later tokens
    assert not torch.allclose(a[:, 10:], b[:, 10:], atol=1e-5)
    model.train()
    loss = spec.loss_fn(model(x))
    loss.backward()
    assert model.transformer.wte.weight.grad is not None


def test_language_model_loss_targets_zeros_over_flattened_tokens():
    spec = models_zoo.spec("gpt2")
    logits = torch.randn(2, 3, 7)
    expected = torch.nn.functional.cross_entropy(logits.reshape(6, 7), torch.zeros(6, dtype=torch.int64))
    assert torch.allclose(spec.loss_fn(logits), expected)


def test_seq_len_is_validated():
    with pytest.raises(InputError, match="2048"):
        models_zoo.spec("gpt2", seq_len=2048)
    with pytest.raises(InputError, match="language models"):
        models_zoo.spec("resnet18", seq_len=16)
    with pytest.raises(InputError, match="longer"):
        models_zoo.spec("gpt2").example_inputs(1, seq_len=4096)


def test_bad_override_value_is_input_error():
    with pytest.raises(InputError, match="n_head"):
        models_zoo.create("gpt2", n_head=7, device="meta")
    with pytest.raises(InputError, match="n_layer"):
        models_zoo.create("gpt2", n_layer=0, device="meta")


def test_hf_causal_mask_buffers_in_checkpoints_are_ignored(tmp_path):
    model = models_zoo.create("gpt2", n_layer=1, vocab_size=50, n_positions=8, seed=0)
    state = model.state_dict()
    state["transformer.h.0.attn.bias"] = torch.ones(1, 1, 8, 8, dtype=torch.bool)
    torch.save(state, tmp_path / "hf.pt")
    loaded = models_zoo.create("gpt2", n_layer=1, vocab_size=50, n_positions=8, weights=str(tmp_path / "hf.pt"))
    assert torch.equal(loaded.transformer.wte.weight, model.transformer.wte.weight)
    assert loaded.lm_head.weight is loaded.transformer.wte.weight


@pytest.mark.slow
def test_vit_tiny_trains_on_real_tensors():
    model = models_zoo.create("vit_tiny", num_classes=10, image_size=32, seed=0)
    spec = models_zoo.spec("vit_tiny", num_classes=10, image_size=32)
    assert spec.input_shape == (3, 32, 32)
    out = model(spec.example_inputs(2, seed=0))
    assert out.shape == (2, 10)
    spec.loss_fn(out).backward()
    assert model.conv_proj.weight.grad is not None


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mobilenet_v3_small", "efficientnet_b0", "squeezenet1_1"])
def test_cnn_backward_on_real_tensors(name):
    model = models_zoo.create(name, num_classes=10, seed=0)
    spec = models_zoo.spec(name)
    x = spec.example_inputs(2, seed=0)[:, :, :32, :32].contiguous()  # small images keep the test fast
    loss = spec.loss_fn(model(x))
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None for g in grads) and torch.isfinite(loss)
