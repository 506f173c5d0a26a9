"""The package installs, imports lazily and its CLI answers --version."""
import subprocess
import sys

from click.testing import CliRunner

import memsim
from memsim.cli import cli


def test_version_matches_package():
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert memsim.__version__ in result.output


def test_import_does_not_import_torch():
    code = "import sys, memsim, memsim.core.trace, memsim.core.timeline; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
