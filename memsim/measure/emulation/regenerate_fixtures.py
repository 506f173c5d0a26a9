"""Regenerate ``tests/fixtures/aarch64/*.json`` by measuring under qemu-user (host side; takes ~1 hour).

Steps (each emulated run is one process per thread count, see :mod:`memsim.measure.emulation.measure_cases`):

1. whole-step peaks of every case of :mod:`memsim.measure.emulation.cases` with SGD-momentum and Adam at 1, 2 and 4
   threads (``steps``; ~5 min per thread count on 2 x86 cores, mostly resnet18/mobilenet_v2);
2. the convolution grid at 1, 2 and 4 threads (``convs``; ~5 min each), at 1 and 4 threads again with
   ``ONEDNN_VERBOSE=1`` to record which implementation oneDNN picked;
3. the other-op survey (``ops``) at 1 and 4 threads;
4. the same step peaks measured natively on this (x86) machine, for reference.

Then :func:`build_fixtures` writes ``step_peaks.json`` and ``conv_kernels.json`` from the JSON-lines files.

Usage::

    bash memsim/measure/emulation/setup_aarch64.sh ROOT          # once
    python -m memsim.measure.emulation.regenerate_fixtures --root ROOT --work DIR [--only steps,convs,ops,x86]
    python -m memsim.measure.emulation.regenerate_fixtures --work DIR --build-only   # rebuild the JSON from DIR
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from memsim.measure.emulation import runner

REPO = runner.REPO_ROOT
FIXTURES = REPO / "tests" / "fixtures" / "aarch64"
THREADS = (1, 2, 4)
CPU = "cortex-a76"


def _log(msg: str) -> None:
    print(f"[regenerate] {time.strftime('%H:%M:%S')} {msg}", flush=True)


def _emulate(mode: str, threads: int, out: Path, root, verbose: bool = False) -> float:
    t0 = time.time()
    env = {"ONEDNN_VERBOSE": "1"} if verbose else None
    r = runner.run_python("memsim/measure/emulation/measure_cases.py", [mode, "--out", str(out)], threads=threads,
                          cpu=CPU, root=root, timeout=None, env=env, cwd=str(out.parent))
    if verbose:
        out.with_suffix(".verbose.txt").write_text(r.stdout)
    if r.returncode != 0:
        raise SystemExit(f"{mode} at {threads} threads failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return time.time() - t0


def measure(work: Path, root, only: set) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    timings = {}
    for t in THREADS:
        if "steps" in only:
            out = work / f"steps_t{t}.jsonl"
            out.unlink(missing_ok=True)
            timings[f"steps_t{t}"] = _emulate("steps", t, out, root)
            _log(f"steps at {t} threads: {timings[f'steps_t{t}']:.0f} s")
        if "convs" in only:
            out = work / f"convs_t{t}.jsonl"
            out.unlink(missing_ok=True)
            timings[f"convs_t{t}"] = _emulate("convs", t, out, root, verbose=t in (1, 4))
            _log(f"convs at {t} threads: {timings[f'convs_t{t}']:.0f} s")
        for mode in ("ops", "matmuls"):
            if mode in only and t in (1, 4):
                out = work / f"{mode}_t{t}.jsonl"
                out.unlink(missing_ok=True)
                timings[f"{mode}_t{t}"] = _emulate(mode, t, out, root)
    if "x86" in only:
        for t in (1,):
            out = work / f"x86_steps_t{t}.jsonl"
            out.unlink(missing_ok=True)
            env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
            subprocess.run([sys.executable, "-m", "memsim.measure.emulation.measure_cases", "steps", "--out", str(out),
                            "--threads", str(t)], check=True, env=env, cwd=str(work))
    (work / "timings.json").write_text(json.dumps(timings, indent=1))
    return timings


# ---- building the fixtures ----

def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _impls(verbose: Path) -> list[str]:
    """oneDNN's implementation of each measured conv call, in call order (None where oneDNN did not run)."""
    out: list = []
    waiting = False
    for line in verbose.read_text().splitlines() if verbose.exists() else []:
        if line.startswith("@@ "):
            out.append(None)
            waiting = True
        elif waiting and line.startswith("onednn_verbose") and ",exec,cpu,convolution," in line:
            out[-1] = line.split(",")[6]
            waiting = False
    return out


def _aten_kernel(children: list) -> str:
    """Which ATen kernel a measured call ran, from the ops it called (oneDNN's backward calls none)."""
    for name, label in (("mkldnn_convolution", "mkldnn"), ("_slow_conv2d", "slow2d"),
                        ("slow_conv_dilated", "dilated2d"), ("nnpack", "nnpack")):
        if any(name in c for c in children):
            return label
    if any(c.endswith("::convolution") for c in children):
        return "grouped"
    return "mkldnn"


def build_fixtures(work: Path, out_dir: Path = FIXTURES, setup: dict | None = None) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    date = time.strftime("%Y-%m-%d")
    qemu = (setup or {}).get("qemu", "")
    steps = []
    for t in THREADS:
        for r in _jsonl(work / f"steps_t{t}.jsonl"):
            if "error" in r:
                continue
            steps.append({"case": r["case"], "optimizer": r["optimizer"], "batch": r["batch"],
                          "threads": r["threads"], "peak_bytes": r["peak_bytes"],
                          "baseline_bytes": r["baseline_bytes"], "seconds": r["seconds"], "torch": r["torch"],
                          "machine": r["machine"], "qemu_cpu": r["cpu"], "date": date})
    x86 = [{"case": r["case"], "optimizer": r["optimizer"], "batch": r["batch"], "threads": r["threads"],
            "peak_bytes": r["peak_bytes"], "torch": r["torch"]}
           for r in _jsonl(work / "x86_steps_t1.jsonl") if "error" not in r]
    doc = {
        "format": "memsim-aarch64-step-peaks", "version": 1,
        "method": "memsim.measure.profiler.measure_step_peak (torch.profiler memory timeline, 1 warm-up step) "
                  "run by PyPI's torch aarch64 wheel under qemu-user (memsim/measure/emulation/measure_cases.py steps)",
        "qemu": qemu, "qemu_cpu": CPU, "date": date,
        "steps": steps,
        "x86_reference": x86,
    }
    (out_dir / "step_peaks.json").write_text(json.dumps(doc, indent=0, sort_keys=False) + "\n")

    columns = ["kind", "x", "w", "bias", "stride", "padding", "dilation", "groups", "mask", "threads", "scratch",
               "peak", "net", "aten_kernel", "onednn_impl"]
    rows = []
    for t in THREADS:
        recs = _jsonl(work / f"convs_t{t}.jsonl")
        impls = _impls((work / f"convs_t{t}.jsonl").with_suffix(".verbose.txt"))
        if not impls and (work / f"verbose_t{t}.txt").exists():     # layout of the first manual runs
            impls = _impls(work / f"verbose_t{t}.txt")
        for i, r in enumerate(recs):
            kernel = _aten_kernel(r["children"])
            impl = impls[i] if i < len(impls) and kernel == "mkldnn" else None
            if r["kind"] == "conv_bwd" and kernel == "mkldnn":
                impl = "gemm:ref" if impls else None
            rows.append([r["kind"], r["x"], r["w"], r["bias"], r["stride"], r["padding"], r["dilation"],
                         r["groups"], r.get("mask"), r["threads"], r["scratch"], r["peak"], r["net"], kernel, impl])
    torch_version = next((r["torch"] for t in THREADS for r in _jsonl(work / f"convs_t{t}.jsonl")[:1]), "")
    doc = {"format": "memsim-aarch64-conv-kernels", "version": 1,
           "method": "each call on random fp32 tensors under torch.profiler(profile_memory=True): peak = largest "
                     "bytes above the op's start, net = bytes still allocated at its end, scratch = peak - net "
                     "(memsim/measure/emulation/measure_cases.py convs); onednn_impl from ONEDNN_VERBOSE (1 and 4 "
                     "threads)",
           "torch": torch_version, "qemu": qemu, "qemu_cpu": CPU, "date": date,
           "columns": columns, "rows": rows}
    text = json.dumps(doc, separators=(",", ":"))
    text = text.replace('"rows":[[', '"rows":[\n[').replace("],[\"conv", "],\n[\"conv")
    (out_dir / "conv_kernels.json").write_text(text + "\n")

    ops = {f"aarch64_t{t}": _jsonl(work / f"ops_t{t}.jsonl") for t in (1, 4)}
    ops.update({f"x86_t{t}": _jsonl(work / f"x86_ops_t{t}.jsonl") for t in (1, 4)})
    matmuls = {f"aarch64_t{t}": _jsonl(work / f"matmuls_t{t}.jsonl") for t in (1, 4)}
    matmuls.update({f"x86_t{t}": _jsonl(work / f"x86_matmuls_t{t}.jsonl") for t in (1,)})
    if any(ops.values()):
        keep = ("case", "op", "b", "m", "k", "n", "scratch", "net")
        doc = {"format": "memsim-aarch64-op-survey", "version": 1, "date": date,
               "method": "memsim/measure/emulation/measure_cases.py ops: top-level aten ops of a forward+backward with "
                         "their scratch (peak - net); matmuls: single addmm/mm/bmm calls",
               "runs": {k: [{"case": r["case"], "rows": [[x["op"], x["scratch"], x["net"]] for x in r["rows"]]}
                            for r in v] for k, v in ops.items() if v},
               "matmuls": {k: [{f: r[f] for f in keep if f in r} for r in v] for k, v in matmuls.items() if v}}
        (out_dir / "op_survey.json").write_text(json.dumps(doc, separators=(",", ":")) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=None, help="emulation environment (setup_aarch64.sh ROOT)")
    ap.add_argument("--work", required=True, help="folder for the raw JSON-lines measurements")
    ap.add_argument("--only", default="steps,convs,ops,matmuls,x86")
    ap.add_argument("--build-only", action="store_true")
    ap.add_argument("--out", default=str(FIXTURES))
    a = ap.parse_args(argv)
    work = Path(a.work).resolve()
    setup = {}
    if not a.build_only:
        emu = runner.find_emulator(a.root)
        setup = json.loads((emu.root / "setup.json").read_text())
        measure(work, a.root, set(a.only.split(",")))
    else:
        try:
            setup = json.loads((runner.find_emulator(a.root).root / "setup.json").read_text())
        except Exception:  # noqa: BLE001 - building only: the environment may be gone
            setup = {}
    build_fixtures(work, Path(a.out), setup)
    _log(f"fixtures written to {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
