"""Runs the standalone C++ codec tests (native/tests/run_native_tests.sh), one part per test:

- x86: every kernel family (and the auto mode's trampolines) under AddressSanitizer + UBSan against a plain
  reference with exactly-sized buffers; AVX-512 natively where the CPU has it, through SIMDe otherwise;
- isa: the codec object library built by native/CMakeLists.txt, disassembled unit by unit: no VBMI2 (or any
  other instruction beyond a unit's flags) outside kernels_avx512_vbmi2.cpp;
- fuzz: the decoder fuzz target under ASan + UBSan for a bounded time from the committed corpus (libFuzzer
  with clang, a g++ random-mutation driver without it);
- arm: scalar + NEON cross-compiled and run under qemu-aarch64 as Cortex-A72 (Pi 4) and Cortex-A76 (Pi 5).

Each is skipped when its tools are missing."""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "native" / "tests" / "run_native_tests.sh"
X86 = platform.machine() == "x86_64"


def run_part(part: str, timeout: int = 600, **env: str) -> str:
    out = subprocess.run([str(SCRIPT), part], capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, **env})
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    return out.stdout


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("g++") is None or not X86, reason="needs g++ on x86-64")
def test_native_kernels_x86_under_asan():
    out = run_part("x86")
    assert "all passed" in out
    for name in ("avx2", "scalar", "auto"):
        assert f"{name} " in out
    assert "codec api with auto" in out


@pytest.mark.slow
@pytest.mark.skipif(not X86 or any(shutil.which(t) is None for t in ("g++", "cmake", "objdump")),
                    reason="needs g++, cmake and objdump on x86-64")
def test_native_units_contain_only_instructions_their_flags_allow():
    out = run_part("isa")
    assert "bad units rejected" in out  # the checker's self-test: it does catch VBMI2 in the F/BW/VL unit
    for unit in ("codec.cpp.o", "kernels_scalar.cpp.o", "kernels_avx2.cpp.o", "kernels_avx512.cpp.o",
                 "kernels_avx512_vbmi2.cpp.o"):
        assert unit in out
    assert "isa: disassembly check passed" in out


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("clang++") is None and shutil.which("g++") is None, reason="needs a C++ compiler")
def test_decoder_fuzzer_under_sanitizers():
    seconds = os.environ.get("MEMSIM_FUZZ_SECONDS", "20")
    out = run_part("fuzz", timeout=int(seconds) + 300, MEMSIM_FUZZ_SECONDS=seconds)
    assert "no failure" in out


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-g++") is None or shutil.which("qemu-aarch64") is None,
                    reason="needs g++-aarch64-linux-gnu and qemu-user")
def test_native_kernels_neon_under_qemu_pi4_and_pi5_cpus():
    out = run_part("arm")
    assert "neon " in out
    for cpu in ("cortex-a72", "cortex-a76"):
        assert f"qemu-aarch64 -cpu {cpu}:" in out
    assert out.count("all passed") == 2
