"""Ground truth for aarch64 (Raspberry Pi, Jetson CPU) from an x86 machine: PyTorch's aarch64 wheel run under
qemu-user.

* ``setup_aarch64.sh [ROOT]``: the emulated Debian arm64 userland, torch's aarch64 wheel and a fake CPU
  description (one script, idempotent);
* :mod:`~memsim.measure.emulation.runner`: run a script there (``run_python``);
* :mod:`~memsim.measure.emulation.cases`: the measured training steps (torch only, imported on both sides);
* :mod:`~memsim.measure.emulation.measure_cases`: the measurements (runs under emulation);
* :mod:`~memsim.measure.emulation.regenerate_fixtures`: measure everything and write ``tests/fixtures/aarch64/``;
* :mod:`~memsim.measure.emulation.validate`: memsim's aarch64 predictions (:mod:`memsim.backends.aarch64`) against
  those fixtures.

CI never emulates: the tests compare against the fixtures.
"""
