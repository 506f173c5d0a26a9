"""The training steps whose aarch64 peaks are measured under emulation and predicted from x86 traces.

torch-only (no memsim import beyond ``models_zoo``), so the same definitions run inside the emulated aarch64
python (:mod:`memsim.measure.emulation.measure_cases`) and in the native tests (``tests/test_aarch64_fixtures.py``).
The small models are also the ones ``tests/test_tracing_fidelity.py`` checks on the host (imported from here), plus
the conv-BN-ReLU net of issue 9 and a few zoo models at small sizes.

Each case is ``Case(name, make_model, make_input(batch), loss_fn, batch)``; :func:`build` returns the model
(seeded) and its input.

Example:
    >>> model, x, loss_fn = build("conv_bn_relu3")           # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F


class ConvReLUInplace(nn.Module):
    def __init__(s):
        super().__init__(); s.c1 = nn.Conv2d(3, 16, 3, padding=1); s.bn = nn.BatchNorm2d(16); s.r = nn.ReLU(inplace=True)
        s.c2 = nn.Conv2d(16, 16, 3, padding=1); s.r6 = nn.ReLU6(inplace=True); s.pool = nn.MaxPool2d(2); s.fc = nn.Linear(16*8*8, 10)
    def forward(s, x):
        x = s.r(s.bn(s.c1(x))); x = s.r6(s.c2(x)); x = s.pool(x); return s.fc(x.flatten(1))


class DepthwiseGN(nn.Module):
    def __init__(s):
        super().__init__(); s.c1 = nn.Conv2d(3, 32, 3, padding=1); s.gn = nn.GroupNorm(4, 32)
        s.dw = nn.Conv2d(32, 32, 3, padding=1, groups=32); s.pw = nn.Conv2d(32, 16, 1); s.drop = nn.Dropout(0.2); s.fc = nn.Linear(16, 10)
    def forward(s, x):
        x = F.silu(s.gn(s.c1(x))); x = F.hardswish(s.dw(x)); x = s.drop(s.pw(x)); return s.fc(x.mean((2, 3)))


class TinyUNet(nn.Module):
    def __init__(s):
        super().__init__(); s.e1 = nn.Conv2d(3, 16, 3, padding=1); s.e2 = nn.Conv2d(16, 32, 3, padding=1)
        s.d1 = nn.Conv2d(48, 16, 3, padding=1); s.out = nn.Conv2d(16, 2, 1)
    def forward(s, x):
        a = F.relu(s.e1(x)); b = F.relu(s.e2(F.max_pool2d(a, 2)))
        u = F.interpolate(b, scale_factor=2, mode="bilinear", align_corners=False)
        return s.out(F.relu(s.d1(torch.cat([a, u], 1))))


class TinyTransformer(nn.Module):
    def __init__(s, vocab=100, d=64, heads=4):
        super().__init__(); s.emb = nn.Embedding(vocab, d); s.ln1 = nn.LayerNorm(d); s.mha = nn.MultiheadAttention(d, heads, batch_first=True)
        s.ln2 = nn.LayerNorm(d); s.qkv = nn.Linear(d, 3 * d); s.proj = nn.Linear(d, d); s.ff = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d), nn.Dropout(0.1))
        s.head = nn.Linear(d, vocab, bias=False); s.head.weight = s.emb.weight; s.h = heads
    def forward(s, idx):
        x = s.emb(idx); y = s.ln1(x); x = x + s.mha(y, y, y, need_weights=False)[0]
        B, T, C = x.shape
        q, k, v = s.qkv(s.ln2(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, s.h, C // s.h).transpose(1, 2) for t in (q, k, v))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).contiguous().view(B, T, C)
        x = x + s.proj(a); x = x + s.ff(x)
        return s.head(x)


class Recurrent(nn.Module):
    def __init__(s, kind):
        super().__init__(); s.rnn = getattr(nn, kind)(32, 64, num_layers=2, batch_first=True); s.fc = nn.Linear(64, 5)
    def forward(s, x):
        return s.fc(s.rnn(x)[0][:, -1])


class Conv1dGroups(nn.Module):
    def __init__(s):
        super().__init__(); s.c = nn.Conv1d(8, 32, 5, padding=2); s.bn = nn.BatchNorm1d(32); s.c2 = nn.Conv1d(32, 32, 3, groups=4)
    def forward(s, x):
        return s.c2(F.gelu(s.bn(s.c(x))))


class BiLSTM(nn.Module):
    def __init__(s):
        super().__init__(); s.e = nn.Embedding(50, 16); s.r = nn.LSTM(16, 32, bidirectional=True); s.fc = nn.Linear(64, 4)
    def forward(s, x):
        return s.fc(s.r(s.e(x))[0])


class Patchify(nn.Module):
    """ViT's patch embedding (a 16x16, stride-16 conv on 3 channels)."""
    def __init__(s):
        super().__init__(); s.p = nn.Conv2d(3, 96, 16, stride=16); s.ln = nn.LayerNorm(96); s.fc = nn.Linear(96, 10)
    def forward(s, x):
        return s.fc(s.ln(s.p(x).flatten(2).transpose(1, 2)).mean(1))


class ConvBNReLU3(nn.Module):
    """Issue 9's net: conv-BN-ReLU x3 (16/32/64 channels, 3x3, padding 1, strides 1/2/2) + Linear(64*8*8), on
    3x32x32 images (x86 SGD-momentum peak at batch 8: 3,739,800 B, as the issue reports)."""
    def __init__(s, num_classes=10):
        super().__init__()
        layers, c = [], 3
        for oc, stride in ((16, 1), (32, 2), (64, 2)):
            layers += [nn.Conv2d(c, oc, 3, stride=stride, padding=1), nn.BatchNorm2d(oc), nn.ReLU(inplace=True)]
            c = oc
        s.features = nn.Sequential(*layers); s.fc = nn.Linear(64 * 8 * 8, num_classes)
    def forward(s, x):
        return s.fc(s.features(x).flatten(1))


def lm_loss(out):
    return F.cross_entropy(out.flatten(0, 1), torch.zeros(out.shape[0] * out.shape[1], dtype=torch.long, device=out.device))


def _zoo(name: str, image: int, **overrides):
    def make():
        import models_zoo
        return models_zoo.create(name, **overrides)

    def loss(out):
        import models_zoo
        return models_zoo.spec(name).loss_fn(out)

    return make, (lambda b: torch.randn(b, 3, image, image)), loss


@dataclass(frozen=True)
class Case:
    name: str
    make_model: Callable[[], nn.Module]
    make_input: Callable[[int], torch.Tensor]
    loss_fn: Optional[Callable]
    batch: int


def _cases() -> dict[str, Case]:
    small = {
        "conv_relu_inplace": (ConvReLUInplace, lambda b: torch.randn(b, 3, 16, 16), None),
        "depthwise_gn_dropout": (DepthwiseGN, lambda b: torch.randn(b, 3, 32, 32), None),
        "unet_cat_interp": (TinyUNet, lambda b: torch.randn(b, 3, 32, 32), None),
        "transformer_tied": (TinyTransformer, lambda b: torch.randint(0, 100, (b, 32)), lm_loss),
        "gru": (lambda: Recurrent("GRU"), lambda b: torch.randn(b, 6, 32), None),
        "lstm": (lambda: Recurrent("LSTM"), lambda b: torch.randn(b, 6, 32), None),
        "conv1d_groups": (Conv1dGroups, lambda b: torch.randn(b, 8, 100), None),
        "bilstm_tokens": (BiLSTM, lambda b: torch.randint(0, 50, (7, b)), None),
        "patchify": (Patchify, lambda b: torch.randn(b, 3, 64, 64), None),
    }
    out = {name: Case(name, *spec, 4) for name, spec in small.items()}
    out["conv_relu_inplace_b1"] = Case("conv_relu_inplace_b1", *small["conv_relu_inplace"], 1)
    out["conv_bn_relu3"] = Case("conv_bn_relu3", ConvBNReLU3, lambda b: torch.randn(b, 3, 32, 32), None, 8)
    out["resnet18_64px"] = Case("resnet18_64px", *_zoo("resnet18", 64, num_classes=10), 2)
    out["mobilenet_v2_64px"] = Case("mobilenet_v2_64px", *_zoo("mobilenet_v2", 64, num_classes=10), 2)
    return out


#: name -> Case, in a stable order.
CASES: dict[str, Case] = _cases()

#: Optimizers every case is measured with.
OPTIMIZERS = ("momentum", "adam")


def build(name: str, seed: int = 0):
    """(model, input, loss_fn) of case ``name``, with seeded weights and input."""
    case = CASES[name]
    torch.manual_seed(seed)
    model = case.make_model()
    x = case.make_input(case.batch)
    return model, x, case.loss_fn
