"""Sparse-bitmap codec: round trips against an independent numpy reference of the format; special values;
non-contiguous input; out= paths; size formula; kernel choice; the typed native boundary.

Every test of this file runs once for each kernel family this CPU has (the autouse ``isa`` fixture)."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import memsim.codec as codec
from memsim.core.errors import InputError

ISAS = [isa.value for isa in codec.available_isas()]

TORCH_DTYPES = {
    codec.DType.BOOL: torch.bool, codec.DType.UINT8: torch.uint8, codec.DType.INT8: torch.int8,
    codec.DType.INT16: torch.int16, codec.DType.INT32: torch.int32, codec.DType.INT64: torch.int64,
    codec.DType.FLOAT16: torch.float16, codec.DType.BFLOAT16: torch.bfloat16,
    codec.DType.FLOAT32: torch.float32, codec.DType.FLOAT64: torch.float64,
}
UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
TORCH_UINT_VIEW = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


@pytest.fixture(autouse=True, params=ISAS)
def isa(request):
    before = codec.isa()
    codec.set_isa(request.param)
    yield request.param
    codec.set_isa(before)


def bits_of(t: torch.Tensor) -> np.ndarray:
    """The raw element bits of a tensor as a flat unsigned numpy array (bit-exact comparisons)."""
    t = t.contiguous().reshape(-1)
    return t.view(TORCH_UINT_VIEW[t.element_size()]).numpy().view(UINT[t.element_size()])


def make_tensor(code: codec.DType, shape: tuple[int, ...], density: float, seed: int) -> torch.Tensor:
    """Random raw bits (NaN payloads, denormals, -0.0 ... included) with about `density` non-zeros."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    size = code.itemsize
    raw = rng.integers(0, 256, size=n * size, dtype=np.uint8).view(UINT[size])
    if code == codec.DType.BOOL:
        raw = (raw & 1).astype(np.uint8)
    raw[rng.random(n) >= density] = 0
    t = torch.from_numpy(raw.copy()).view(TORCH_UINT_VIEW[size] if size > 1 else torch.uint8)
    return t.view(TORCH_DTYPES[code]).reshape(shape)


def reference_encode(t: torch.Tensor) -> bytes:
    """The format written out independently of the native code (native/format.h)."""
    code = codec.dtype_code(t.dtype)
    bits = bits_of(t)
    nz = bits != 0
    header = bytearray(64)
    header[0:4] = b"MSBM"
    header[4] = 1
    header[5] = int(code)
    header[6] = t.dim()
    header[8:16] = int(nz.sum()).to_bytes(8, "little")
    for d, s in enumerate(t.shape):
        header[16 + 6 * d: 22 + 6 * d] = int(s).to_bytes(6, "little")
    bitmap = np.zeros(((bits.size + 63) // 64) * 8, np.uint8)
    packed = np.packbits(nz, bitorder="little")
    bitmap[: packed.size] = packed
    return bytes(header) + bitmap.tobytes() + bits[nz].tobytes()


def assert_same_bits(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.dtype == b.dtype and tuple(a.shape) == tuple(b.shape)
    np.testing.assert_array_equal(bits_of(a), bits_of(b))


# Lengths around multiples of 8 (bitmap bytes), 64 (bitmap words / blocks) and 512 (vector loops).
BOUNDARY_LENGTHS = sorted({m + d for m in (8, 64, 512, 1024) for d in (-1, 0, 1)} | {0, 1, 2, 3, 7, 100})
shapes = st.one_of(
    st.sampled_from(BOUNDARY_LENGTHS).map(lambda n: (n,)),
    st.lists(st.integers(0, 9), min_size=0, max_size=4).map(tuple),
    st.tuples(st.integers(1, 70), st.integers(1, 70)),
)
densities = st.one_of(st.sampled_from([0.0, 1.0, 0.5, 0.01, 0.99]), st.floats(0.0, 1.0))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(code=st.sampled_from(list(codec.DType)), shape=shapes, density=densities, seed=st.integers(0, 2**32 - 1))
def test_round_trip_matches_reference(isa, code, shape, density, seed):
    x = make_tensor(code, shape, density, seed)
    buf = codec.encode(x)
    assert bytes(buf) == reference_encode(x)
    assert len(buf) == codec.encoded_size(x.numel(), codec.count_nonzero(x), x.dtype)
    assert codec.count_nonzero(x) == int((bits_of(x) != 0).sum())
    y = codec.decode(buf)
    assert_same_bits(x, y)
    out = torch.full_like(x, 1) if x.dtype != torch.bool else torch.ones_like(x)
    assert codec.decode(buf, out=out) is out
    assert_same_bits(x, out)


@pytest.mark.parametrize("n", [4096 * 16 + 5, 1 << 18])
@pytest.mark.parametrize("code", [codec.DType.FLOAT32, codec.DType.FLOAT16, codec.DType.INT8, codec.DType.FLOAT64])
def test_large_round_trip_every_isa(isa, n, code):
    for density in (0.0, 0.5, 1.0):
        x = make_tensor(code, (n,), density, seed=n)
        buf = codec.encode(x)
        assert bytes(buf) == reference_encode(x)
        assert_same_bits(codec.decode(buf), x)


def test_all_isas_encode_identically():
    x = make_tensor(codec.DType.FLOAT32, (3, 1000), 0.4, seed=1)
    before = codec.isa()
    try:
        outs = set()
        for name in ISAS:
            codec.set_isa(name)
            outs.add(bytes(codec.encode(x)))
        assert len(outs) == 1
    finally:
        codec.set_isa(before)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_special_float_values_survive_bit_exact(isa, dtype):
    finfo = torch.finfo(dtype)
    values = torch.tensor([0.0, -0.0, float("inf"), float("-inf"), float("nan"), finfo.tiny, -finfo.tiny,
                           finfo.max, finfo.min, 1.0, 0.0], dtype=dtype)
    bits = bits_of(values).copy()
    # NaNs with distinct payloads and a denormal (smallest positive bit pattern).
    top = 8 * values.element_size() - 1
    nan_exp_bits = {torch.float32: 0x7F800000, torch.float64: 0x7FF0000000000000,
                    torch.float16: 0x7C00, torch.bfloat16: 0x7F80}[dtype]
    extra = np.array([nan_exp_bits | 1, nan_exp_bits | 3, (1 << top) | nan_exp_bits | 2, 1, (1 << top) | 1],
                     dtype=bits.dtype)
    all_bits = np.concatenate([bits, extra])
    x = torch.from_numpy(all_bits.view(UINT[values.element_size()]).copy()).view(
        TORCH_UINT_VIEW[values.element_size()]).view(dtype)
    y = codec.decode(codec.encode(x))
    np.testing.assert_array_equal(bits_of(y), all_bits)
    # Only the +0.0 entries are zero; -0.0 is stored.
    assert codec.count_nonzero(x) == x.numel() - 2


def test_non_contiguous_inputs(isa):
    base = torch.relu(torch.randn(40, 30))
    for x in (base.t(), base[::3, 1::2], base[:, 5], base.unsqueeze(0).expand(3, 40, 30),
              base.as_strided((10, 10), (1, 40))):
        assert not x.is_contiguous()
        assert_same_bits(codec.decode(codec.encode(x)), x.contiguous())
        assert codec.count_nonzero(x) == int((x != 0).sum()) + int(((x == 0) & x.signbit()).sum())
    arr = np.maximum(np.random.default_rng(0).standard_normal((20, 33)), 0).astype(np.float32)
    for a in (arr.T, arr[::-1], arr[:, ::4]):
        got = codec.decode(codec.encode(a))
        np.testing.assert_array_equal(got.numpy(), a)


def test_numpy_inputs_and_big_endian():
    a = np.arange(-5, 5, dtype=np.int16).reshape(2, 5)
    assert codec.decode(codec.encode(a)).tolist() == a.tolist()
    be = np.array([0.0, 1.5, -2.0], dtype=">f4")
    assert codec.decode(codec.encode(be)).tolist() == [0.0, 1.5, -2.0]
    assert codec.decode(codec.encode(np.float32(3.0))).item() == 3.0
    assert codec.decode(codec.encode(np.array([True, False, True]))).tolist() == [True, False, True]


def test_shapes_0dim_empty_and_8_dims():
    for x in (torch.tensor(2.5), torch.tensor(0.0), torch.zeros(0), torch.zeros(3, 0, 2),
              torch.ones(1, 2, 1, 2, 1, 2, 1, 3), torch.zeros((2,) * 8)):
        y = codec.decode(codec.encode(x))
        assert y.shape == x.shape and torch.equal(y, x)
    assert len(codec.encode(torch.zeros(3, 0, 2))) == 64
    assert len(codec.encode(torch.tensor(2.5))) == 64 + 8 + 4
    with pytest.raises(ValueError, match="8 dimensions"):
        codec.encode(torch.zeros((1,) * 9))


def test_unsupported_inputs_are_rejected():
    with pytest.raises(InputError, match="unsupported dtype.*float32"):
        codec.encode(torch.zeros(3, dtype=torch.complex64))
    with pytest.raises(InputError, match="unsupported dtype"):
        codec.encode(np.zeros(3, dtype=np.uint32))
    with pytest.raises(TypeError, match="torch.Tensor or numpy"):
        codec.encode([1.0, 2.0])
    with pytest.raises(InputError, match="layout"):
        codec.encode(torch.eye(3).to_sparse())


def test_requires_grad_tensor_is_encoded():
    x = torch.randn(10, requires_grad=True)
    assert torch.equal(codec.decode(codec.encode(x)), x.detach())


def test_decode_accepts_bytes_likes():
    x = torch.relu(torch.randn(5, 7))
    buf = codec.encode(x)
    for b in (buf, bytes(buf), bytearray(buf), memoryview(bytes(buf)), torch.from_numpy(np.asarray(buf)),
              np.frombuffer(bytes(buf), dtype=np.uint8)):
        assert torch.equal(codec.decode(b), x)
    # A non-contiguous memoryview / array is copied first.
    doubled = np.repeat(np.asarray(buf), 2)[::2]
    assert torch.equal(codec.decode(doubled), x)


def test_decode_out_checks_dtype_shape_contiguity():
    x = torch.relu(torch.randn(4, 6))
    buf = codec.encode(x)
    with pytest.raises(ValueError, match="dtype"):
        codec.decode(buf, out=torch.empty(4, 6, dtype=torch.float64))
    with pytest.raises(ValueError, match="shape"):
        codec.decode(buf, out=torch.empty(6, 4))
    with pytest.raises(ValueError, match="not contiguous"):
        codec.decode(buf, out=torch.empty(6, 4).t())
    out_np = np.empty((4, 6), np.float32)
    codec.decode(buf, out=out_np)
    np.testing.assert_array_equal(out_np, x.numpy())
    bf = torch.randn(3, 3).bfloat16()
    out_bf = torch.empty(3, 3, dtype=torch.bfloat16)
    codec.decode(codec.encode(bf), out=out_bf)
    assert torch.equal(out_bf, bf)


def test_encode_into_preallocated_buffers():
    x = torch.relu(torch.randn(1000))
    expected = bytes(codec.encode(x))
    cap = codec.max_encoded_size(x.numel(), x.dtype)
    ba = bytearray(cap)
    view = codec.encode(x, out=ba)
    assert isinstance(view, memoryview) and bytes(view) == expected
    arr = np.zeros(cap, np.uint8)
    got = codec.encode(x, out=arr)
    assert isinstance(got, np.ndarray) and np.shares_memory(got, arr) and bytes(got) == expected
    tt = torch.zeros(cap, dtype=torch.uint8)
    got_t = codec.encode(x, out=tt)
    assert isinstance(got_t, torch.Tensor) and bytes(got_t.numpy()) == expected
    assert torch.equal(codec.decode(got_t), x)
    assert got_t.data_ptr() == tt.data_ptr()  # written in place
    with pytest.raises(ValueError, match=f"needs {len(expected)}"):
        codec.encode(x, out=bytearray(len(expected) - 1))
    with pytest.raises(TypeError, match="writable"):
        codec.encode(x, out=bytes(cap))
    ro = np.zeros(cap, np.uint8)
    ro.flags.writeable = False
    with pytest.raises(TypeError, match="writable"):
        codec.encode(x, out=ro)
    with pytest.raises(ValueError, match="contiguous"):
        codec.encode(x, out=torch.zeros(2 * cap, dtype=torch.uint8)[::2])
    with pytest.raises(ValueError, match="contiguous"):
        codec.encode(x, out=np.zeros(2 * cap, np.uint8)[::2])


@pytest.mark.parametrize("dtype", [torch.float32, torch.int16, torch.float64, torch.bfloat16, torch.bool])
def test_encode_into_out_of_any_dtype_is_sliced_by_bytes(dtype):
    """out= of another dtype is byte storage: the result is the used bytes (regression: it was sliced by
    elements, so a float32 out returned 4x the encoded size)."""
    x = torch.relu(torch.randn(1000))
    expected = bytes(codec.encode(x))
    itemsize = torch.empty(0, dtype=dtype).element_size()
    cap = codec.max_encoded_size(x.numel(), x.dtype)
    out = torch.zeros((cap + itemsize - 1) // itemsize, dtype=dtype)
    got = codec.encode(x, out=out)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.uint8 and got.dim() == 1
    assert got.numel() == len(expected) and bytes(got.numpy()) == expected
    assert got.data_ptr() == out.data_ptr()
    assert torch.equal(codec.decode(got), x)
    out2d = torch.zeros(2, (cap // itemsize + 2) // 2 + 1, dtype=dtype)  # any contiguous shape
    assert bytes(codec.encode(x, out=out2d).numpy()) == expected
    arr = np.zeros(cap // 8 + 1, np.float64)
    got_np = codec.encode(x, out=arr)
    assert got_np.dtype == np.uint8 and got_np.nbytes == len(expected) and bytes(got_np) == expected
    assert np.shares_memory(got_np, arr)
    mv = memoryview(np.zeros(cap // 4 + 1, np.float32))  # a float-format memoryview
    got_mv = codec.encode(x, out=mv)
    assert isinstance(got_mv, memoryview) and got_mv.nbytes == len(expected) and bytes(got_mv) == expected


def test_native_boundary_takes_typed_arrays_only():
    """memsim._bitmap has no raw-address entry points; it rejects (TypeError, never copies) non-contiguous or
    mistyped arrays and integers, and checks the dtype code against the array's own dtype."""
    b = codec._bitmap
    for name in ("encode_ptr", "decode_ptr", "count_nonzero_ptr"):
        assert not hasattr(b, name)
    x = np.arange(64, dtype=np.float32)
    buf = b.encode(x, int(codec.DType.FLOAT32))
    with pytest.raises(TypeError):
        b.encode(x[::2], int(codec.DType.FLOAT32))  # not C-contiguous: refused, not silently copied
    with pytest.raises(TypeError):
        b.encode(140737488355328, int(codec.DType.FLOAT32))  # an address is not an array
    with pytest.raises(TypeError):
        b.count_nonzero(x[::3])
    with pytest.raises(ValueError, match="dtype does not match"):
        b.encode(x, int(codec.DType.INT32))
    with pytest.raises(ValueError, match="dtype does not match"):
        b.encode(x.view(np.uint32), int(codec.DType.FLOAT32))
    with pytest.raises(ValueError, match="unknown dtype"):
        b.encode(x, 99)
    with pytest.raises(TypeError):
        b.encode(x, int(codec.DType.FLOAT32), np.zeros(1000, np.float32))  # out must be uint8 bytes
    with pytest.raises(TypeError):
        b.encode(x, int(codec.DType.FLOAT32), bytes(1000))  # read-only out
    with pytest.raises(TypeError):
        b.decode(buf, np.zeros(128, np.float32)[::2])
    with pytest.raises(ValueError, match="different dtype"):
        b.decode(buf, np.zeros(64, np.int32))
    with pytest.raises(ValueError, match="different shape"):
        b.decode(buf, np.zeros(65, np.float32))
    with pytest.raises(TypeError):
        b.decode(buf, 140737488355328)
    with pytest.raises(TypeError):
        b.header(np.zeros(100, np.float32))  # encoded buffers are uint8
    # Zero copy: what the native side reads is the tensor's own memory.
    t = torch.relu(torch.randn(1000))
    arr, _ = codec._prepare(t)
    assert arr.ctypes.data == t.data_ptr()
    bf = torch.randn(10).bfloat16()
    arr, code = codec._prepare(bf)
    assert arr.ctypes.data == bf.data_ptr() and code == codec.DType.BFLOAT16


def test_decode_allocates_aligned_memory_that_outlives_the_buffer():
    for n in (10, 1000, (5 << 20) // 4):
        x = make_tensor(codec.DType.FLOAT32, (n,), 0.5, seed=n)
        buf = codec.encode(x)
        y = codec.decode(buf)
        assert y.data_ptr() % 64 == 0
        del buf
        import gc

        gc.collect()
        assert_same_bits(y, x)


def test_encoded_size_formula_and_validation():
    assert codec.encoded_size(0, 0, "float32") == 64
    assert codec.encoded_size(1, 1, torch.float64) == 64 + 8 + 8
    assert codec.encoded_size(64, 10, np.float16) == 64 + 8 + 20
    assert codec.encoded_size(65, 0, "bool") == 64 + 16
    # 64-bit sizes: no overflow for tensors far beyond 4 GiB.
    assert codec.encoded_size(3 << 33, 1 << 33, "float32") == 64 + (3 << 33) // 8 + (4 << 33)
    with pytest.raises(InputError):
        codec.encoded_size(10, 11, "float32")
    with pytest.raises(InputError, match="valid: bool, uint8"):
        codec.encoded_size(10, 1, "complex64")


def test_size_curve_measures_encoded_sizes():
    shape = (3, 1000)
    curve = codec.size_curve(shape, torch.float32, [0.0, 0.25, 0.5, 0.9, 1.0])
    n = 3000
    assert curve == [codec.encoded_size(n, n - round(s * n), "float32") for s in (0.0, 0.25, 0.5, 0.9, 1.0)]
    # A real tensor of that sparsity encodes to the same size.
    x = make_tensor(codec.DType.FLOAT32, shape, 1.0, seed=3)
    x.view(-1)[: n // 2] = 0
    assert len(codec.encode(x)) == codec.size_curve(shape, "float32", [0.5])[0]
    big = (64, 256, 56, 56)  # 51M elements: the representative-tensor path
    numel = 64 * 256 * 56 * 56
    assert codec.size_curve(big, torch.bfloat16, [0.5]) == [codec.encoded_size(numel, numel // 2, "bfloat16")]
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        codec.size_curve(shape, "float32", [1.5])


def test_info_reads_header():
    x = torch.relu(torch.randn(2, 3, 4))
    buf = codec.encode(x)
    inf = codec.info(buf)
    assert inf.dtype == codec.DType.FLOAT32 and inf.shape == (2, 3, 4) and inf.numel == 24
    assert inf.nnz == codec.count_nonzero(x) and inf.nbytes == len(buf)


def test_isa_control(isa):
    assert codec.isa() == codec.Isa(isa)  # the fixture forced it
    assert codec.Isa.AUTO not in codec.available_isas()
    assert codec.available_isas()[-1] == codec.Isa.SCALAR
    with pytest.raises(InputError, match="valid: auto, .*scalar"):
        codec.set_isa("sse9")
    env = dict(os.environ, MEMSIM_CODEC_ISA="scalar")
    out = subprocess.run([sys.executable, "-c", "import memsim.codec as c; print(c.isa().value)"],
                         env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "scalar"
    env.pop("MEMSIM_CODEC_ISA")
    out = subprocess.run([sys.executable, "-c", "import memsim.codec as c; print(c.isa().value)"],
                         env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "auto"  # the default
    env["MEMSIM_CODEC_ISA"] = "bogus"
    out = subprocess.run([sys.executable, "-W", "always", "-c", "import memsim.codec as c; print(c.isa().value)"],
                         env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "auto" and "MEMSIM_CODEC_ISA" in out.stderr


UNITS = {"scalar": {"scalar"}, "avx2": {"avx2"}, "avx512": {"avx512", "avx512vbmi2", "avx2"}, "neon": {"neon"}}


def test_forced_family_runs_its_own_kernels(isa):
    sel = codec.selected_kernels()
    assert set(sel) == set(codec.Op)
    for op, by_size in sel.items():
        assert sorted(by_size) == [1, 2, 4, 8]
        assert set(by_size.values()) <= UNITS[isa], (op, by_size)
    if isa == "avx512":
        # 4/8-byte encode/decode and every count are the F+BW+VL unit; the 1/2-byte ones VBMI2 or AVX2.
        assert sel[codec.Op.ENCODE][4] == sel[codec.Op.DECODE][8] == "avx512"
        assert set(sel[codec.Op.COUNT_NONZERO].values()) == {"avx512"}


def test_auto_mode_chooses_a_measured_family_per_op_and_size():
    before = codec.isa()
    codec.set_isa("auto")
    try:
        assert codec.isa() == codec.Isa.AUTO
        sel = codec.selected_kernels()
        allowed = set().union(*(UNITS[i] for i in ISAS))
        for op in codec.Op:
            for e in codec.ITEMSIZES:
                cal = codec.calibration(op, e)
                assert cal.chosen in codec.available_isas()
                assert cal.gbps and all(g > 0 for g in cal.gbps.values())
                assert set(cal.gbps) <= set(codec.available_isas())
                assert sel[op][e] in allowed
                assert sel[op][e] == codec._bitmap.family_unit(cal.chosen.value, op.value, e)
                # the choice is the fastest measured one, or within the 2% margin kept for a narrower family
                assert cal.gbps[cal.chosen] >= 0.97 * max(cal.gbps.values())
        x = make_tensor(codec.DType.FLOAT32, (3, 1000), 0.5, seed=4)
        assert bytes(codec.encode(x)) == reference_encode(x)
        assert_same_bits(codec.decode(codec.encode(x)), x)
        with pytest.raises(InputError, match="valid: encode"):
            codec.calibration("compress", 4)
        with pytest.raises(InputError, match="itemsize"):
            codec.calibration("encode", 3)
    finally:
        codec.set_isa(before)


def test_auto_first_use_from_many_threads_at_once():
    """The first calls of a fresh process race into the calibration; every result must still be exact."""
    code = (
        "import threading, torch, memsim.codec as c\n"
        "assert c.isa().value == 'auto'\n"
        "xs = [torch.relu(torch.randn(4099, dtype=d)) for d in (torch.float32, torch.float16, torch.float64,"
        " torch.float32) for _ in range(2)]\n"
        "ok = []\n"
        "def work(x):\n"
        "    ok.append(torch.equal(c.decode(c.encode(x)), x) and c.count_nonzero(x) == int((x != 0).sum()))\n"
        "ts = [threading.Thread(target=work, args=(x,)) for x in xs]\n"
        "[t.start() for t in ts]; [t.join() for t in ts]\n"
        "assert ok == [True] * len(xs), ok\n"
        "print('ok')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MEMSIM_CODEC_ISA"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_numcodecs_style_codec_registry():
    c = codec.get_codec({"id": "memsim.bitmap"})
    x = torch.relu(torch.randn(9))
    assert torch.equal(c.decode(c.encode(x)), x)
    assert codec.get_codec(c.get_config()).get_config() == {"id": "memsim.bitmap", "version": 1}
    with pytest.raises(InputError, match="memsim.bitmap"):
        codec.get_codec({"id": "zlib"})


def test_concurrent_threads_round_trip():
    """The kernels run with the GIL released; concurrent calls must not interfere."""
    import threading

    xs = [make_tensor(codec.DType.FLOAT32, (1 << 16,), 0.5, seed=i) for i in range(4)]
    results = [None] * 4

    def work(i):
        results[i] = codec.decode(codec.encode(xs[i]))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for x, y in zip(xs, results):
        assert_same_bits(x, y)


@pytest.mark.parametrize("code", [codec.DType.FLOAT32, codec.DType.BFLOAT16])
def test_large_output_streaming_store_path(isa, code):
    """Outputs of 16 MiB and more given as out= are written with streaming stores when 32/64-byte aligned
    (a decode that allocates goes page by page instead)."""
    n = (17 << 20) // code.itemsize + 5
    x = make_tensor(code, (n,), 0.5, seed=5)
    buf = codec.encode(x)
    out = torch.empty(n, dtype=x.dtype)
    assert out.data_ptr() % 64 == 0
    codec.decode(buf, out=out)
    assert_same_bits(out, x)
    assert_same_bits(codec.decode(buf), x)


@pytest.mark.parametrize("code", [codec.DType.INT8, codec.DType.BFLOAT16, codec.DType.FLOAT32, codec.DType.FLOAT64])
def test_decode_into_new_memory_page_by_page(isa, code):
    """A decode that allocates (4 MiB and more: fresh 2 MiB pages) runs page by page, each page's values
    starting where the previous page's ended: dense, empty and mixed pages and a partial last page."""
    per_page = (2 << 20) // code.itemsize
    n = 3 * per_page + 1001
    x = make_tensor(code, (n,), 0.5, seed=7)
    x[:per_page] = make_tensor(code, (per_page,), 1.0, seed=8)  # page 0 dense
    x[per_page:2 * per_page] = 0  # page 1 empty
    buf = codec.encode(x)
    assert_same_bits(codec.decode(buf), x)


def test_contiguous_views_with_storage_offset(isa):
    base = torch.relu(torch.randn(6, 100))
    view = base[2]  # contiguous, starts 200 floats into the storage
    assert view.storage_offset() == 200 and view.is_contiguous()
    assert_same_bits(codec.decode(codec.encode(view)), view)
    assert codec.count_nonzero(view) == int((view != 0).sum())
    target = torch.zeros(6, 100)
    codec.decode(codec.encode(view), out=target[4])
    assert torch.equal(target[4], view) and target[[0, 1, 2, 3, 5]].abs().sum() == 0
