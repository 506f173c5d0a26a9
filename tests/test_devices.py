"""The device catalog and device files: every catalog value loads, carries a source and agrees with the
datasheet facts in REFERENCE.md; user files are validated field by field with clear messages."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from memsim.simulation import devices
from memsim.simulation.allocator import AllocatorKind
from memsim.simulation.devices import Device, DeviceKind
from memsim.core.errors import InputError

MiB, GiB = 1 << 20, 1 << 30
EXAMPLE = Path(__file__).parent / "data" / "example_device.toml"

REQUIRED = [
    "jetson-nano", "jetson-nano-2gb", "jetson-tx2", "jetson-xavier-nx", "jetson-xavier-nx-16gb", "jetson-agx-xavier",
    "jetson-orin-nano-4gb", "jetson-orin-nano-8gb", "jetson-agx-orin-32gb", "jetson-agx-orin-64gb",
    "raspberry-pi-4-2gb", "raspberry-pi-4-4gb", "raspberry-pi-4-8gb",
    "raspberry-pi-5-4gb", "raspberry-pi-5-8gb", "raspberry-pi-5-16gb",
    "rtx-3060-12gb", "rtx-4090", "t4", "a100-40gb", "a100-80gb", "h100-80gb",
    "laptop-8gb", "laptop-16gb", "github-runner", "github-runner-small",
]


# ---- the catalog ----

def test_catalog_has_every_required_device_sorted():
    assert set(REQUIRED) <= set(devices.names())
    assert devices.names() == sorted(devices.names())


@pytest.mark.parametrize("name", devices.names())
def test_every_catalog_device_is_complete_and_sourced(name):
    d = devices.get(name)
    assert d.name == name
    assert 0 <= d.os_reserved_bytes < d.total_bytes and d.runtime_bytes > 0
    assert 0 < d.budget_bytes == d.total_bytes - d.os_reserved_bytes - d.runtime_bytes
    assert d.bandwidth_bytes_per_s and d.flops_fp32 and d.flops_fp16 >= d.flops_fp32
    for field in ("total_memory", "os_reserved", "runtime", "bandwidth", "flops", "swap", "allocator"):
        assert len(d.sources.get(field, "")) > 10, f"{name}: no source for {field}"
    assert sum(d.runtime_parts.values()) == d.runtime_bytes
    if d.kind is DeviceKind.CPU:
        assert d.allocator is AllocatorKind.CPU and set(d.runtime_parts) == {"torch_process"}
        assert d.cpu_cores
    elif d.kind is DeviceKind.JETSON:  # CPU and GPU share the memory: both parts count
        assert d.allocator is AllocatorKind.CUDA_CACHING and set(d.runtime_parts) == {"torch_process", "cuda_context"}
        assert not d.swap
    else:  # discrete GPU: host RAM is not the GPU's memory
        assert d.allocator is AllocatorKind.CUDA_CACHING and set(d.runtime_parts) == {"cuda_context"}


@pytest.mark.parametrize("name, total_gib, bandwidth_gbs", [
    ("jetson-nano", 4, 25.6), ("jetson-nano-2gb", 2, 25.6), ("jetson-tx2", 8, 59.7), ("jetson-xavier-nx", 8, 59.7),
    ("jetson-xavier-nx-16gb", 16, 59.7), ("jetson-orin-nano-4gb", 4, 34), ("jetson-orin-nano-8gb", 8, 68),
    ("jetson-agx-orin-32gb", 32, 204.8), ("jetson-agx-orin-64gb", 64, 204.8), ("raspberry-pi-4-4gb", 4, 12.8),
    ("raspberry-pi-5-8gb", 8, 17.07), ("a100-80gb", 80, 2039), ("h100-80gb", 80, 3350),
])
def test_memory_and_bandwidth_match_the_datasheets(name, total_gib, bandwidth_gbs):
    d = devices.get(name)
    assert d.total_bytes == total_gib * GiB
    assert d.bandwidth_bytes_per_s == pytest.approx(bandwidth_gbs * 1e9)


def test_reference_facts_for_the_jetson_nano():
    nano = devices.get("jetson-nano")
    assert nano.flops_fp16 == pytest.approx(472e9)  # REFERENCE.md: 472 GFLOPS fp16
    assert 300e6 <= nano.os_reserved_bytes - (4096 - 3964) * MiB <= 500e6  # headless OS 300-500 MB
    assert nano.runtime_parts["cuda_context"] == 666_632_192  # JetPack 4: no lazy loading
    assert devices.get("jetson-orin-nano-8gb").runtime_parts["cuda_context"] < nano.runtime_parts["cuda_context"]
    assert 2.5 * GiB < nano.budget_bytes < 2.8 * GiB


def test_names_are_case_insensitive_and_cached():
    assert devices.get("Jetson-Nano") is devices.get("jetson-nano")


def test_unknown_device_suggests_close_names_and_the_list_command():
    with pytest.raises(InputError) as e:
        devices.get("jetson-nao")
    assert "'jetson-nano'" in str(e.value) and "memsim devices" in str(e.value)
    with pytest.raises(InputError, match="memsim devices"):
        devices.get("zzzz")


def test_to_dict_is_json_ready():
    d = json.loads(json.dumps(devices.get("raspberry-pi-5-8gb").to_dict()))
    assert d["kind"] == "cpu" and d["allocator"] == "cpu"
    assert d["budget_bytes"] == d["total_bytes"] - d["os_reserved_bytes"] - d["runtime_bytes"]


def test_catalog_does_not_import_torch():
    code = "import sys, memsim.simulation.devices as d; d.catalog(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---- the measured baseline of a Python process with torch ----

@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_torch_process_baseline_matches_a_fresh_measurement():
    measured = devices.measure_torch_baseline_bytes()
    assert measured == pytest.approx(devices.TORCH_PROCESS_BASELINE_BYTES, rel=0.25)
    for d in devices.catalog():
        if "torch_process" in d.runtime_parts:
            assert d.runtime_parts["torch_process"] == devices.TORCH_PROCESS_BASELINE_BYTES


# ---- --budget ----

def test_budget_device_is_the_training_process_memory():
    d = devices.from_budget("3.5GiB")
    assert isinstance(d, Device)
    assert (d.total_bytes, d.os_reserved_bytes, d.allocator) == (3758096384, 0, AllocatorKind.CPU)
    assert d.runtime_bytes == devices.TORCH_PROCESS_BASELINE_BYTES
    assert d.budget_bytes == 3758096384 - devices.TORCH_PROCESS_BASELINE_BYTES
    assert devices.from_budget(4 * GiB, runtime_bytes=0).budget_bytes == 4 * GiB


def test_bad_budget_names_the_valid_units():
    with pytest.raises(InputError, match="KiB"):
        devices.from_budget("4XB")


# ---- this machine ----

@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/meminfo")
def test_host_device_reads_this_machine():
    d = devices.host()
    meminfo = dict(line.split(":") for line in Path("/proc/meminfo").read_text().splitlines())
    total = int(meminfo["MemTotal"].split()[0]) * 1024
    assert d.name == "host" and d.kind is DeviceKind.CPU and d.allocator is AllocatorKind.CPU
    assert d.total_bytes <= total and d.budget_bytes > 0
    assert 0 <= d.os_reserved_bytes < d.total_bytes  # other processes' use: it moves, so no exact check


# ---- user device files ----

def test_example_file_loads():
    d = devices.load_file(EXAMPLE)
    assert d.name == "orange-pi-5-8gb" and d.kind is DeviceKind.CPU and d.allocator is AllocatorKind.CPU
    assert d.total_bytes == 8 * GiB and d.os_reserved_bytes == 180 * MiB
    assert d.runtime_bytes == 230796 * 1024 and d.cpu_cores == 8 and d.swap
    assert d.bandwidth_bytes_per_s == 17e9


def test_template_is_a_valid_device_file(tmp_path):
    path = tmp_path / "board.toml"
    path.write_text(devices.template())
    d = devices.load_file(path)
    assert d.name == "my-board" and d.total_bytes == 4 * GiB and d.budget_bytes > 0


def test_minimal_file_takes_defaults_and_its_name_from_the_file(tmp_path):
    path = tmp_path / "my-gpu.toml"
    path.write_text('kind = "cuda-gpu"\ntotal_memory = "8GB"\n')
    d = devices.load_file(path)
    assert (d.name, d.display_name, d.allocator, d.total_bytes) == ("my-gpu", "my-gpu", AllocatorKind.CUDA_CACHING, 8e9)
    assert d.os_reserved_bytes == d.runtime_bytes == 0 and d.flops_fp32 is None


def test_missing_file():
    with pytest.raises(InputError, match="not found"):
        devices.load_file("no/such/board.toml")


@pytest.mark.parametrize("text, message", [
    ('kind = "cpu"\ntotal_memory = ', "not valid TOML"),
    ('total_memory = "4 GiB"\n', "missing field 'kind'; valid values: jetson, cuda-gpu, cpu"),
    ('kind = "tpu"\ntotal_memory = "4 GiB"\n', r"unknown kind 'tpu' \(did you mean 'cpu'\?\); valid choices: jetson, cuda-gpu, cpu"),
    ('kind = "cpu"\n', "missing field 'total_memory'"),
    ('kind = "cpu"\ntotal_memory = "4XB"\n', "total_memory: bad size '4XB'.*KiB"),
    ('kind = "cpu"\ntotal_memory = true\n', "bad total_memory True"),
    ('kind = "cpu"\ntotal_memory = "4GiB"\nos_reserved = "-1GB"\n', "os_reserved: bad size"),
    ('kind = "cpu"\ntotal_memory = "4GiB"\nram = "4GiB"\n', "unknown field 'ram'; valid fields: allocator, backend, compute"),
    ('kind = "cpu"\nallocator = "cuda-caching"\ntotal_memory = "4GiB"\n', "does not match kind 'cpu'"),
    ('kind = "jetson"\nallocator = "jemalloc"\ntotal_memory = "4GiB"\n', "unknown allocator 'jemalloc'; valid choices: cuda-caching, cpu"),
    ('kind = "cpu"\ntotal_memory = "1GiB"\nos_reserved = "1GiB"\n', "leave nothing"),
    ('kind = "cpu"\ntotal_memory = "4GiB"\n[runtime]\ncuda_context = "300MiB"\n', "cuda_context must be 0"),
    ('kind = "cpu"\ntotal_memory = "4GiB"\n[runtime]\npython = "300MiB"\n', r"unknown field runtime.'python'; valid fields in \[runtime\]"),
    ('kind = "cpu"\ntotal_memory = "4GiB"\n[compute]\nflops_fp32 = "fast"\n', "bad compute.flops_fp32 'fast'"),
    ('kind = "cpu"\ntotal_memory = "4GiB"\n[compute]\ncpu_cores = 0\n', "bad compute.cpu_cores 0"),
    ('kind = "cpu"\ntotal_memory = "4GiB"\nswap = "yes"\n', "bad swap 'yes': expected true or false"),
    ('kind = "cpu"\ntotal_memory = "4GiB"\nname = "my board"\n', "bad name 'my board'"),
    ('kind = "cpu"\ntotal_memory = "4GiB"\nruntime = 5\n', r"runtime must be a table"),
])
def test_bad_device_files_name_the_field_and_the_valid_values(tmp_path, text, message):
    path = tmp_path / "board.toml"
    path.write_text(text)
    with pytest.raises(InputError, match=message) as e:
        devices.load_file(path)
    assert "board.toml" in str(e.value)


def test_each_device_names_its_backend_and_threads():
    for d in devices.catalog():
        assert d.backend.is_cpu == (d.kind is devices.DeviceKind.CPU)
        assert d.threads >= 1
        assert (d.cuda_capability is not None) == (not d.backend.is_cpu)
    pi = devices.get("raspberry-pi-5-8gb")
    assert str(pi.backend) == "aarch64" and pi.threads == 4
    cpu = devices.get("jetson-orin-nano-8gb").cpu_side()
    assert str(cpu.backend) == "aarch64" and str(cpu.allocator) == "cpu" and "cuda_context" not in cpu.runtime_parts
    with pytest.raises(InputError, match="no CPU to train on"):
        devices.get("t4").cpu_side()


@pytest.mark.parametrize("text, message", [
    ('kind = "cpu"\ntotal_memory = "4GiB"\nbackend = "cuda"\n', "does not match kind 'cpu'"),
    ('kind = "cpu"\ntotal_memory = "4GiB"\nbackend = "risc-v"\n', "unknown backend 'risc-v'"),
    ('kind = "cpu"\ntotal_memory = "4GiB"\nthreads = 0\n', "bad threads 0"),
    ('kind = "jetson"\ntotal_memory = "4GiB"\ncuda_capability = "eight"\n', "bad cuda_capability 'eight'"),
])
def test_bad_backend_fields(tmp_path, text, message):
    path = tmp_path / "board.toml"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        devices.load_file(path)
