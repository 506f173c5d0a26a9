"""Runs the standalone C++ kernel tests (native/tests/run_native_tests.sh): every kernel table compiled
with AddressSanitizer + UBSan against a plain reference with exactly-sized buffers; the AVX-512 kernels
through SIMDe emulation where libsimde-dev is installed; NEON under qemu-aarch64 where the cross compiler
and qemu-user are installed. Skipped without a C++ compiler."""
from __future__ import annotations

import platform
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "native" / "tests" / "run_native_tests.sh"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("g++") is None or platform.machine() != "x86_64", reason="needs g++ on x86-64")
def test_native_kernels_x86_under_asan():
    out = subprocess.run([str(SCRIPT), "x86"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "all passed" in out.stdout
    assert "avx2" in out.stdout


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-g++") is None or shutil.which("qemu-aarch64") is None,
                    reason="needs g++-aarch64-linux-gnu and qemu-user")
def test_native_kernels_neon_under_qemu():
    out = subprocess.run([str(SCRIPT), "arm"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "neon" in out.stdout and "all passed" in out.stdout
