"""Download torch's aarch64 wheel and the closure of its dependencies for linux/aarch64/cp311 (host side).

``pip download --platform ...`` with dependency resolution evaluates environment markers for the machine pip
runs on (x86-64 here), so this resolves the closure itself: it reads each downloaded wheel's ``Requires-Dist``,
evaluates the markers for aarch64 Linux CPython 3.11 *with the extras that were asked for* (torch asks for
``cuda-toolkit[cublas,cudart,...]==13.0.3``, whose extras pin the nvidia-* versions), merges the specifiers
of every requirement of the same name, and downloads again with ``--no-deps`` until nothing new appears.
Wheels in the folder that no longer satisfy the merged specifiers (an unpinned ``nvidia-cublas`` fetched
before the pin was known) are deleted. Prints the chosen wheel files, one a line.

Usage (setup_aarch64.sh calls it): ``python wheel_deps.py WHEELS_DIR REQUIREMENT... -- PIP_TARGET_ARGS...``
Only pip (and its vendored ``packaging``) is needed, no torch.
"""
from __future__ import annotations

import glob
import os
import subprocess
import sys
import zipfile
from email.parser import Parser

from pip._vendor.packaging.requirements import Requirement
from pip._vendor.packaging.specifiers import SpecifierSet
from pip._vendor.packaging.utils import canonicalize_name, parse_wheel_filename

#: Marker environment of the emulated target (Debian bookworm's python3.11 on aarch64).
TARGET_ENV = {"platform_machine": "aarch64", "platform_system": "Linux", "sys_platform": "linux",
              "os_name": "posix", "python_version": "3.11", "python_full_version": "3.11.2",
              "implementation_name": "cpython", "platform_python_implementation": "CPython",
              "platform_release": "", "platform_version": "", "implementation_version": "3.11.2"}


def _metadata(path: str):
    with zipfile.ZipFile(path) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        return Parser().parsestr(z.read(name).decode("utf-8"))


def _wheels(folder: str) -> dict:
    """canonical name -> [(version, path)] of the wheels in ``folder``."""
    out: dict = {}
    for path in glob.glob(os.path.join(folder, "*.whl")):
        name, version, _, _ = parse_wheel_filename(os.path.basename(path))
        out.setdefault(canonicalize_name(name), []).append((version, path))
    return out


def _chosen(reqs: dict, have: dict) -> dict:
    """canonical name -> path of the newest wheel satisfying every specifier of that name."""
    out = {}
    for name, (_extras, spec, _display) in reqs.items():
        ok = [(v, p) for v, p in have.get(name, []) if spec.contains(v, prereleases=True)]
        if ok:
            out[name] = max(ok)[1]
    return out


def resolve(folder: str, roots: list[str], pip_args: list[str], python: str = sys.executable) -> list[str]:
    reqs: dict = {}          # canonical name -> (extras set, SpecifierSet, display name)

    def add(req: Requirement) -> bool:
        name = canonicalize_name(req.name)
        extras, spec, display = reqs.get(name, (set(), SpecifierSet(), req.name))
        new_extras = extras | set(req.extras)
        new_spec = spec & req.specifier
        changed = name not in reqs or new_extras != extras or str(new_spec) != str(spec)
        reqs[name] = (new_extras, new_spec, display)
        return changed

    for r in roots:
        add(Requirement(r))
    os.makedirs(folder, exist_ok=True)
    for _round in range(10):
        have = _wheels(folder)
        chosen = _chosen(reqs, have)
        missing = [f"{display}{spec}" for name, (_e, spec, display) in reqs.items() if name not in chosen]
        if missing:
            subprocess.run([python, "-m", "pip", "download", "-q", "--no-deps", "-d", folder, *pip_args, *missing],
                           check=True)
            have = _wheels(folder)
            chosen = _chosen(reqs, have)
            still = [m for m in missing if canonicalize_name(Requirement(m).name) not in chosen]
            if still:
                raise SystemExit(f"no aarch64 wheel found for {still}")
        changed = False
        for name, path in list(chosen.items()):
            extras = reqs[name][0]
            for line in _metadata(path).get_all("Requires-Dist") or []:
                req = Requirement(line)
                if req.marker is not None and not any(
                        req.marker.evaluate({**TARGET_ENV, "extra": e}) for e in ({""} | extras)):
                    continue
                changed |= add(req)
        if not changed:
            break
    have = _wheels(folder)
    chosen = _chosen(reqs, have)
    keep = set(chosen.values())
    for versions in have.values():
        for _v, p in versions:
            if p not in keep:
                os.remove(p)
    return sorted(keep)


def main(argv: list[str]) -> int:
    if "--" in argv:
        i = argv.index("--")
        head, pip_args = argv[:i], argv[i + 1:]
    else:
        head, pip_args = argv, []
    folder, roots = head[0], head[1:]
    for path in resolve(folder, roots, pip_args):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
