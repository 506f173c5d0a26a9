"""Ground truth on a GPU: ``torch.cuda.max_memory_allocated`` / ``max_memory_reserved`` of one steady-state step.

The step runs on the GPU after ``warmup_steps`` steps (the optimizer state exists and the caching allocator's
cache is warm), with the peak statistics reset just before it, as :func:`memsim.simulate` predicts it for a
CUDA device. :func:`gpu_device` describes the GPU present as a memsim device, so the prediction is made for
exactly this GPU (its memory and compute capability).

Without a CUDA device, :func:`require_cuda` raises :class:`memsim.core.errors.InputError` (the bench says so and
exits 2); CI has no GPU, so the tests of this module skip.

Example:
    >>> m = measure_cuda_step(model, x, optimizer="adam")     # doctest: +SKIP
    >>> m.max_allocated_bytes, m.max_reserved_bytes          # doctest: +SKIP
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable

from memsim.core.errors import InputError
from memsim.tracing import step as step_mod


@dataclass
class CudaStep:
    """What ``torch.cuda`` reported for one steady-state step (bytes).

    Attributes:
        max_allocated_bytes: ``torch.cuda.max_memory_allocated()`` during the step.
        max_reserved_bytes: ``torch.cuda.max_memory_reserved()`` during the step.
        allocated_before_bytes: ``memory_allocated()`` when the step began (weights, state, workspaces).
        gpu: the device name; capability: (major, minor); torch_version, cudnn_version.
    """

    max_allocated_bytes: int
    max_reserved_bytes: int
    allocated_before_bytes: int
    gpu: str
    capability: tuple
    torch_version: str
    cudnn_version: int | None


def require_cuda() -> None:
    """InputError unless torch sees a CUDA device."""
    import torch

    if not torch.cuda.is_available():
        raise InputError("no CUDA device: the CUDA fidelity mode measures on a GPU (torch.cuda.is_available() is "
                         "False here); run it on a machine with one")


def gpu_device():
    """The GPU present as a memsim device (kind cuda-gpu, its memory and compute capability; no OS reserve,
    and the CUDA context outside the allocator is not counted: the comparison is of allocator peaks)."""
    import torch

    from memsim.simulation import devices

    require_cuda()
    props = torch.cuda.get_device_properties(0)
    return devices.Device(
        name="this-gpu", display_name=props.name, kind=devices.DeviceKind.CUDA_GPU, total_bytes=int(props.total_memory),
        os_reserved_bytes=0, runtime_bytes=0, allocator=devices.AllocatorKind.CUDA_CACHING,
        backend=devices.Backend.CUDA, threads=1, cuda_capability=(props.major, props.minor),
        sources={"total_memory": "torch.cuda.get_device_properties(0).total_memory"})


def measure_cuda_step(model, inputs, loss_fn: Callable | None = None, optimizer: Any = "momentum",
                      warmup_steps: int = 2) -> CudaStep:
    """Peak allocated and reserved bytes of one steady-state training step of a copy of ``model`` on the GPU."""
    import torch

    require_cuda()
    model = copy.deepcopy(model).to("cuda").train()
    inputs = tuple(t.to("cuda") if isinstance(t, torch.Tensor) else t for t in step_mod.as_input_tuple(inputs))
    opt = step_mod.make_optimizer(optimizer, model.parameters())
    step_mod.warm_up(model, inputs, loss_fn, opt, warmup_steps)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    step_mod.run_step(model, inputs, loss_fn, opt)
    torch.cuda.synchronize()
    props = torch.cuda.get_device_properties(0)
    result = CudaStep(int(torch.cuda.max_memory_allocated()), int(torch.cuda.max_memory_reserved()), int(before),
                      props.name, (props.major, props.minor), torch.__version__, torch.backends.cudnn.version())
    del model, opt, inputs
    torch.cuda.empty_cache()
    return result
