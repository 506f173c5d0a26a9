"""Test-wide settings: traces cached by the CLI go to a per-session temporary folder, not ~/.cache."""
import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_trace_cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("MEMSIM_CACHE_DIR", str(tmp_path_factory.mktemp("memsim-cache")))
    yield
    mp.undo()
