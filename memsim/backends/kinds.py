"""The backends memsim predicts for, and how well each one's model was checked.

Example:
    >>> Backend("aarch64").is_cpu, Backend.CUDA.is_cpu
    (True, False)
    >>> host_backend({"machine": "x86_64"})
    <Backend.X86: 'x86'>
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Backend(str, Enum):
    """Which kernels run the step.

    Members:
        X86: PyTorch's x86-64 CPU kernels (ATen + oneDNN; scratch measured by probes on an x86 host).
        AARCH64: PyTorch's aarch64 CPU kernels (ACL forward convolutions, oneDNN reference gemm backward):
            Raspberry Pi boards and the CPU side of Jetsons.
        CUDA: CUDA kernels (cuDNN, cuBLAS) and PyTorch's CUDA caching allocator: Jetsons and GPUs.
    """

    X86 = "x86"
    AARCH64 = "aarch64"
    CUDA = "cuda"

    def __str__(self) -> str:
        return self.value

    @property
    def is_cpu(self) -> bool:
        return self is not Backend.CUDA


def host_backend(host: dict | None) -> Backend | None:
    """The CPU backend of the machine described by a trace's ``meta["host"]`` (None if unknown)."""
    machine = str((host or {}).get("machine", "")).lower()
    if machine in ("x86_64", "amd64", "x86-64"):
        return Backend.X86
    if machine in ("aarch64", "arm64"):
        return Backend.AARCH64
    return None


@dataclass(frozen=True)
class Validation:
    """How well a backend's model was checked against measurements.

    Attributes:
        validated: measured against ground truth (profiler, emulation or GPU) at all.
        summary: one line for reports: what was compared, the error, on which machine.
    """

    validated: bool
    summary: str

    def to_dict(self) -> dict:
        return {"validated": self.validated, "summary": self.summary}


#: What each backend's model has been held against (README "Accuracy"; re-measured with `memsim bench fidelity`).
VALIDATION = {
    Backend.X86: Validation(True, "x86 CPU kernels probed on the tracing host; zoo steps within 0.18% of the "
                                  "profiler on AMD EPYC with AVX-512 and with AVX2 (memsim bench fidelity)"),
    Backend.AARCH64: Validation(True, "aarch64 CPU rules held against PyTorch 2.13's aarch64 wheel run under "
                                      "qemu-user (Cortex-A76): 78 training steps at 1, 2 and 4 threads within "
                                      "0.15% (69 to the byte); emulated, exact for memory (tests/fixtures/aarch64)"),
    Backend.CUDA: Validation(False, "not validated on a GPU: allocator model checked against PyTorch's source; "
                                    "cuBLAS workspaces, dropout masks and foreach Adam modelled, cuDNN "
                                    "workspaces assumed 0"),
}
