"""On a GPU: memsim's CUDA prediction against torch.cuda's peak statistics (skips without a CUDA device)."""
import pytest
import torch

import memsim
import models_zoo

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.mark.parametrize("name,batch", [("small_cnn", 8), ("resnet18", 4)])
def test_allocated_and_reserved_peaks_match_torch_cuda(name, batch):
    from memsim.measure.cuda import gpu_device, measure_cuda_step

    spec = models_zoo.spec(name)
    tr = memsim.trace(models_zoo.create(name, device="meta"), spec.example_inputs(batch, device="meta"),
                      loss_fn=spec.loss_fn, optimizer="momentum")
    rep = memsim.simulate(tr, device=gpu_device(), policy="none", max_batch=False)
    m = measure_cuda_step(models_zoo.create(name, seed=0), spec.example_inputs(batch, seed=0),
                          loss_fn=spec.loss_fn, optimizer="momentum")
    assert abs(rep.main.allocated_bytes - m.max_allocated_bytes) <= 0.01 * m.max_allocated_bytes
    assert abs(rep.main.reserved_bytes - m.max_reserved_bytes) <= 0.05 * m.max_reserved_bytes
