"""The ground truth itself: measure_step_peak against peaks computed by hand, and the step definition."""
import pytest
import torch

from memsim.tracing import step
from memsim.core.errors import InputError
from memsim.measure.profiler import measure_peak, measure_step_peak

N = 1000          # Linear(N, N, bias=False): weight N*N fp32
B = 8             # batch
W = N * N * 4     # weight bytes
X = B * N * 4     # input / output / grad-of-output bytes


@pytest.mark.parametrize("optimizer, state_bytes, optimizer_temps", [
    ("sgd", 0, 0),
    ("momentum", W, 0),          # one momentum buffer; the update is in place
    ("adam", 2 * W + 4, 2 * W),  # two moments + step counter; denom and its division are full-size temps
])
def test_linear_step_peak_matches_hand_count(optimizer, state_bytes, optimizer_temps):
    model = torch.nn.Linear(N, N, bias=False)
    before = model.weight.detach().clone()
    m = measure_step_peak(model, torch.randn(B, N), optimizer=optimizer)
    baseline = W + X + state_bytes
    assert m.baseline_bytes == baseline
    # backward peak: grad of the output (the output itself is freed once the loss exists) + weight grad;
    # with Adam the peak moves to the optimizer step: weight grad + its temporaries.
    expected = baseline + max(X + W, W + optimizer_temps)
    assert expected <= m.peak_bytes <= expected + 64          # a few scalar tensors of the loss
    assert m.end_bytes == baseline                          # zero_grad(set_to_none) frees the gradient
    assert torch.equal(model.weight, before)                # measured on a copy
    assert model.weight.grad is None


def test_measure_peak_with_context_counts_what_the_context_allocates():
    held = []

    class Hold:
        def __enter__(self):
            held.append(torch.empty(1 << 20, dtype=torch.uint8))

        def __exit__(self, *exc):
            held.clear()

    m = measure_peak(lambda: torch.empty(1000, dtype=torch.float32), context=Hold)
    assert m.peak_bytes == (1 << 20) + 4000
    assert m.end_bytes == 0


def test_make_optimizer_names_and_errors():
    p = [torch.nn.Parameter(torch.zeros(3))]
    assert isinstance(step.make_optimizer("sgd", p), torch.optim.SGD)
    assert step.make_optimizer("momentum", p).defaults["momentum"] == 0.9
    assert isinstance(step.make_optimizer("ADAM", p), torch.optim.Adam)
    assert isinstance(step.make_optimizer("adamw", p), torch.optim.AdamW)
    assert isinstance(step.make_optimizer(lambda ps: torch.optim.RMSprop(ps), p), torch.optim.RMSprop)
    with pytest.raises(InputError, match=r"'lamb'.*sgd, momentum, adam, adamw"):
        step.make_optimizer("lamb", p)
    with pytest.raises(InputError, match="not a torch.optim.Optimizer"):
        step.make_optimizer(lambda ps: 3, p)


def test_default_loss_takes_first_tensor_of_a_tuple():
    out = (torch.ones(2, 3, dtype=torch.float16), torch.zeros(5))
    loss = step.default_loss(out)
    assert loss.dtype == torch.float32 and loss.item() == 1.0
    with pytest.raises(InputError, match="no tensor"):
        step.default_loss({"a": 3})
