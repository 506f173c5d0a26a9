"""Fidelity: memsim.trace's peak against the profiler-measured peak of the same real step (within 1%).

Small models that each exercise what the tracer must get right on the CPU: in-place ReLU/ReLU6, MaxPool
indices, Dropout masks, BatchNorm/GroupNorm/LayerNorm, depthwise conv (oneDNN scratch), concatenation skips,
interpolation, nn.MultiheadAttention, scaled_dot_product_attention, tied embeddings, GRU/LSTM (oneDNN LSTM
workspace, bidirectional), Conv1d with groups, views and transposes; each with SGD-momentum and Adam.
"""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import memsim
from memsim.measure.profiler import measure_step_peak


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
    """ViT's patch embedding: oneDNN computes its weight gradient with per-thread gemm scratch."""
    def __init__(s):
        super().__init__(); s.p = nn.Conv2d(3, 96, 16, stride=16); s.ln = nn.LayerNorm(96); s.fc = nn.Linear(96, 10)
    def forward(s, x):
        return s.fc(s.ln(s.p(x).flatten(2).transpose(1, 2)).mean(1))

def lm_loss(out):
    return F.cross_entropy(out.flatten(0, 1), torch.zeros(out.shape[0] * out.shape[1], dtype=torch.long, device=out.device))

CASES = {
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


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_trace_peak_matches_profiler(case, optimizer):
    make_model, make_input, loss_fn = CASES[case]
    torch.manual_seed(0)
    model, x = make_model(), make_input(4)
    predicted = memsim.trace(model, x, loss_fn=loss_fn, optimizer=optimizer).peak_bytes
    measured = measure_step_peak(model, x, loss_fn=loss_fn, optimizer=optimizer).peak_bytes
    assert abs(predicted - measured) <= 0.01 * measured, (predicted, measured)


def test_foreach_optimizer_is_traced_faithfully():
    """A user-supplied optimizer (here Adam's foreach implementation, with its list-wide temporaries)."""
    torch.manual_seed(0)
    model, x = ConvReLUInplace(), torch.randn(4, 3, 16, 16)
    opt = lambda params: torch.optim.Adam(params, lr=1e-3, foreach=True)  # noqa: E731
    predicted = memsim.trace(model, x, optimizer=opt).peak_bytes
    measured = measure_step_peak(model, x, optimizer=opt).peak_bytes
    assert abs(predicted - measured) <= 0.01 * measured, (predicted, measured)


def test_kernel_probes_matter_for_convolutions():
    """Without the probed convolution scratch the U-Net prediction would be far too low; with it, exact."""
    torch.manual_seed(0)
    tr = memsim.trace(TinyUNet(), torch.randn(4, 3, 32, 32), optimizer="momentum")
    workspaces = [t for t in tr.timeline.tensors if t.category == memsim.Category.WORKSPACE]
    assert workspaces and all(t.birth == t.death for t in workspaces)
    assert {tr.timeline.ops[t.birth].name for t in workspaces} == {"aten.convolution.default",
                                                                 "aten.convolution_backward.default"}
    peak_ws = sum(t.nbytes for t in tr.timeline.live_at(tr.timeline.peak_index)
                  if t.category == memsim.Category.WORKSPACE)
    assert peak_ws > 0.05 * tr.peak_bytes


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_batch_one_takes_the_im2col_convolution_and_is_predicted(optimizer):
    """At batch 1 on small maps ATen skips oneDNN for slow_conv2d, whose im2col buffer is a third of this peak:
    the probe runs the kernel ATen picks at that batch."""
    torch.manual_seed(0)
    model, x = ConvReLUInplace(), torch.randn(1, 3, 16, 16)
    tr = memsim.trace(model, x, optimizer=optimizer)
    fwd = [t for t in tr.timeline.tensors if t.name == "conv_fwd_scratch"]
    assert fwd and max(t.nbytes for t in fwd) >= 16 * 9 * 16 * 16 * 4   # c2's im2col columns, IC*kh*kw*OH*OW
    measured = measure_step_peak(model, x, optimizer=optimizer).peak_bytes
    assert abs(tr.peak_bytes - measured) <= 0.01 * measured, (tr.peak_bytes, measured)
