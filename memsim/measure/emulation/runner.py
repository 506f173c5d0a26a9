"""Run a Python script with PyTorch's aarch64 wheel under qemu-user (host side, no torch needed).

The emulated python is Debian bookworm's ``python3.11`` for arm64, run by ``qemu-aarch64 -L PREFIX`` where
PREFIX is the per-CPU prefix made by ``memsim/measure/emulation/setup_aarch64.sh`` (the rootfs plus a fake
``/sys/devices/system/cpu`` and ``/proc/cpuinfo``). ``PYTHONPATH`` is the installed wheels (``site/``) and this
repository's root, so ``memsim.measure``, ``memsim.measure.emulation.cases`` and ``models_zoo`` import there (they are
pure Python + torch).

Steps run 60-230x slower than natively and ``import torch`` takes 11-20 s: put many measurements in one
script run.

Example:
    >>> r = run_python("memsim/measure/emulation/measure_cases.py", ["steps"], threads=2)   # doctest: +SKIP
    >>> r.returncode                                                                          # doctest: +SKIP
    0
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

try:
    from memsim.core.errors import MemsimError
except ImportError:  # the layout before the package restructuring
    from memsim.errors import MemsimError

#: The repository root (holds memsim/ and models_zoo/).
REPO_ROOT = Path(__file__).resolve().parents[3]
SETUP_SCRIPT = REPO_ROOT / "memsim" / "emulation" / "setup_aarch64.sh"
#: CPU models setup_aarch64.sh makes a prefix for (QEMU_CPU names).
CPUS = ("cortex-a76", "cortex-a72", "cortex-a57", "cortex-a53")


class EmulationNotSetUp(MemsimError):
    """The aarch64 emulation environment is missing or incomplete; the message says how to make it."""


def default_root() -> Path:
    """``$MEMSIM_EMULATION_DIR`` or ``~/.cache/memsim/aarch64`` (setup_aarch64.sh's default)."""
    env = os.environ.get("MEMSIM_EMULATION_DIR")
    return Path(env) if env else Path.home() / ".cache" / "memsim" / "aarch64"


@dataclass(frozen=True)
class Emulator:
    """An installed emulation environment (see :func:`find_emulator`)."""

    root: Path
    python: Path
    site: Path
    prefixes: dict
    torch_version: str
    qemu: str

    def prefix(self, cpu: str) -> Path:
        if cpu not in self.prefixes:
            raise EmulationNotSetUp(f"no qemu prefix for cpu {cpu!r} under {self.root}/prefix; "
                                    f"valid: {', '.join(sorted(self.prefixes))}")
        return Path(self.prefixes[cpu])


def find_emulator(root=None) -> Emulator:
    """The environment setup_aarch64.sh made under ``root`` (default :func:`default_root`).

    Raises:
        EmulationNotSetUp: qemu-aarch64 is not installed or the setup has not been completed.
    """
    root = Path(root) if root is not None else default_root()
    hint = f"run `bash {SETUP_SCRIPT.relative_to(REPO_ROOT)} {root}` first (downloads ~2.9 GB)"
    info_path = root / "setup.json"
    if not info_path.is_file():
        raise EmulationNotSetUp(f"no aarch64 emulation environment at {root} (no setup.json): {hint}")
    if shutil.which("qemu-aarch64") is None:
        raise EmulationNotSetUp(f"qemu-aarch64 is not installed (apt-get install qemu-user): {hint}")
    info = json.loads(info_path.read_text())
    python, site = Path(info["python"]), Path(info["site"])
    if not python.exists() or not (site / "torch").is_dir():
        raise EmulationNotSetUp(f"incomplete aarch64 emulation environment at {root}: {hint}")
    return Emulator(root, python, site, dict(info["prefixes"]), info["torch_version"], info.get("qemu", ""))


def command(script_args: list[str], cpu: str = "cortex-a76", root=None, qemu_args: list[str] | None = None
            ) -> list[str]:
    """The qemu-aarch64 command line that runs ``python3.11 *script_args`` in the environment."""
    emu = find_emulator(root)
    return ["qemu-aarch64", *(qemu_args or []), "-L", str(emu.prefix(cpu)), str(emu.python), *script_args]


def environment(threads: int, cpu: str = "cortex-a76", root=None, extra: dict | None = None) -> dict:
    """Environment of the emulated process: PYTHONPATH = site + repo root, QEMU_CPU, OMP_NUM_THREADS."""
    emu = find_emulator(root)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "LD_"))}
    env.update({
        "PYTHONPATH": os.pathsep.join([str(emu.site), str(REPO_ROOT)]),
        "QEMU_CPU": cpu,
        "OMP_NUM_THREADS": str(threads),
        "MEMSIM_EMULATED_THREADS": str(threads),
        "MEMSIM_EMULATED_CPU": cpu,
        "PYTHONHASHSEED": "0",
    })
    env.update(extra or {})
    return env


def run_python(script_path, args=(), threads: int = 4, cpu: str = "cortex-a76", root=None,
               timeout: float | None = 3600, capture: bool = True, env: dict | None = None,
               qemu_args: list[str] | None = None, check: bool = False, cwd=None) -> subprocess.CompletedProcess:
    """Run ``script_path`` with the emulated aarch64 python and torch.

    Args:
        script_path: a Python file (host path; the emulated process sees the host's file system); a relative
            path that does not exist from ``cwd`` is taken from the repository root.
        args: its command-line arguments.
        threads: OMP_NUM_THREADS of the process (the script should also call ``torch.set_num_threads``;
            ``MEMSIM_EMULATED_THREADS`` carries the number).
        cpu: the QEMU_CPU model and the fake MIDR/cpuinfo prefix ("cortex-a76" = Raspberry Pi 5,
            "cortex-a72" = Pi 4, "cortex-a57" = Jetson Nano).
        root: the environment (default :func:`default_root`).
        timeout: seconds (None = no limit).
        capture: capture stdout/stderr as text (else they go to this process's).
        env: extra environment variables.
        qemu_args: extra qemu-aarch64 options (``-strace``, ``-d in_asm`` ...).
        check: raise ``subprocess.CalledProcessError`` on a non-zero exit.
        cwd: working directory of the process (default: this one's); qemu writes a target core file there
            when a crash dumps core (``ulimit -c``).

    Raises:
        EmulationNotSetUp: setup_aarch64.sh has not been run for ``root``.
    """
    script = Path(script_path)
    if not script.is_absolute() and not (Path(cwd or ".") / script).exists() and (REPO_ROOT / script).exists():
        script = REPO_ROOT / script       # "memsim/measure/emulation/measure_cases.py" from anywhere
    cmd = command([str(script), *map(str, args)], cpu=cpu, root=root, qemu_args=qemu_args)
    return subprocess.run(cmd, env=environment(threads, cpu, root, env), cwd=cwd, timeout=timeout,
                          capture_output=capture, text=True, check=check)


def run_code(code: str, threads: int = 4, cpu: str = "cortex-a76", root=None, **kwargs
             ) -> subprocess.CompletedProcess:
    """:func:`run_python` for a snippet (``python -c code``)."""
    cmd = command(["-c", code], cpu=cpu, root=root, qemu_args=kwargs.pop("qemu_args", None))
    timeout = kwargs.pop("timeout", 3600)
    capture = kwargs.pop("capture", True)
    return subprocess.run(cmd, env=environment(threads, cpu, root, kwargs.pop("env", None)), timeout=timeout,
                          capture_output=capture, text=True, **kwargs)
