"""Fidelity: memsim.trace's peak against the profiler-measured peak of the same real step (within 1%).

Small models that each exercise what the tracer must get right on the CPU: in-place ReLU/ReLU6, MaxPool
indices, Dropout masks, BatchNorm/GroupNorm/LayerNorm, depthwise conv (oneDNN scratch), concatenation skips,
interpolation, nn.MultiheadAttention, scaled_dot_product_attention, tied embeddings, GRU/LSTM (oneDNN LSTM
workspace, bidirectional), Conv1d with groups, views and transposes; each with SGD-momentum and Adam.
"""
import pytest
import torch

import memsim
# the same small models the aarch64 emulation measures (one definition for both)
from memsim.measure.emulation.cases import (BiLSTM, Conv1dGroups, ConvReLUInplace, DepthwiseGN, Patchify,
                                            Recurrent, TinyTransformer, TinyUNet, lm_loss)
from memsim.measure.profiler import measure_step_peak



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
