#!/usr/bin/env bash
# Builds memsim._bitmap with -DMEMSIM_SANITIZE=ON (AddressSanitizer + UBSan) into a scratch copy of the
# package and runs the codec's pytest files against it, without touching the installed (editable) build.
# Usage, from the repository root with the project's venv active:
#   native/tests/run_asan_python_tests.sh [pytest args...]
# (In a dedicated environment the same build is `MEMSIM_SANITIZE=ON pip install --no-build-isolation -e .`,
#  then the same LD_PRELOAD/ASAN_OPTIONS as below; rebuild without MEMSIM_SANITIZE afterwards.)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
scratch="${TMPDIR:-/tmp}/memsim-asan"
rm -rf "$scratch/memsim" "$scratch/tests"
mkdir -p "$scratch"
cmake -S "$root/native" -B "$scratch/build" -DCMAKE_BUILD_TYPE=Release -DMEMSIM_SANITIZE=ON \
  -DPython_EXECUTABLE="$(command -v python)" >/dev/null
cmake --build "$scratch/build" -j 2 >/dev/null
cp -r "$root/memsim" "$root/tests" "$root/pyproject.toml" "$scratch/"
cp "$scratch"/build/_bitmap*.so "$scratch/memsim/"
cd "$scratch"
# Python itself is not instrumented: preload the ASan runtime and ignore CPython's own "leaks".
export LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
export ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
# Drop the editable-install finder so `import memsim` finds this scratch copy with the sanitized module.
exec python - "$@" <<'PY'
import sys
sys.meta_path[:] = [f for f in sys.meta_path if not type(f).__module__.startswith("_editable_skbc_")]
sys.path.insert(0, ".")
import memsim._bitmap as b
import os
assert os.path.abspath(b.__file__).startswith(os.getcwd()), f"not the sanitized build: {b.__file__}"
import pytest
args = sys.argv[1:] or ["-q", "-p", "no:cacheprovider", "tests/test_codec.py", "tests/test_codec_fixtures.py",
                        "tests/test_codec_fuzz.py"]
print("sanitized module:", b.__file__, "ISAs:", b.available_isas())
sys.exit(pytest.main(args))
PY
