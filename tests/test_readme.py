"""README's quick start is what CI runs: the test command in README is the one .ci/run executes."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bash_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def test_ci_runs_the_readme_test_command():
    blocks = _bash_blocks((ROOT / "README.md").read_text())
    test_cmd = next(b for b in blocks if "pytest" in b)
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_cmd in ci.splitlines()
    assert "venv" in ci


def test_readme_main_job_runs_profile():
    blocks = _bash_blocks((ROOT / "README.md").read_text())
    assert any("memsim profile resnet50 --device jetson-nano" in b for b in blocks)
    assert all("torch==2.13.0" in b for b in blocks if "pip install" in b)
