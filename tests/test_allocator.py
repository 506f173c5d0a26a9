"""The allocator models: hand-built sequences with known answers, and a brute-force reference model that
the fast CUDA caching model must match on random sequences (hypothesis)."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memsim.simulation.allocator import (
    K_LARGE_BUFFER,
    K_SMALL_BUFFER,
    AllocatorKind,
    AllocatorResult,
    allocation_size,
    replay,
    round_size,
)
from memsim.core.categories import Category, Phase
from memsim.core.errors import InputError
from memsim.core.timeline import OpRecord, Timeline, TensorRecord, allocation_events

KiB, MiB = 1 << 10, 1 << 20


def cuda(events, **kw) -> AllocatorResult:
    return replay(events, "cuda-caching", **kw)


def allocs(*sizes):
    """Events allocating each size in turn (tensor ids 0, 1, ...), nothing freed."""
    return [(i, i, s) for i, s in enumerate(sizes)]


# ---- CUDA caching allocator: rounding, pools and segment sizes ----

def test_one_byte_takes_512_bytes_of_a_2mib_small_segment():
    r = cuda(allocs(1))
    assert (r.peak_requested_bytes, r.peak_allocated_bytes, r.peak_reserved_bytes) == (1, 512, 2 * MiB)
    assert r.n_segments == 1 and r.n_device_allocs == 1


def test_two_600kib_blocks_share_one_small_segment():
    r = cuda(allocs(600 * KiB, 600 * KiB))
    assert r.peak_allocated_bytes == 1200 * KiB
    assert r.peak_reserved_bytes == 2 * MiB
    assert r.n_segments == 1


def test_three_700kib_blocks_need_a_second_small_segment():
    assert cuda(allocs(700 * KiB, 700 * KiB, 700 * KiB)).peak_reserved_bytes == 4 * MiB


def test_1mib_is_small_but_one_byte_more_is_large():
    assert cuda(allocs(MiB)).peak_reserved_bytes == 2 * MiB
    r = cuda(allocs(MiB + 1))
    assert r.peak_reserved_bytes == 20 * MiB
    assert r.peak_allocated_bytes == MiB + 512


def test_5mib_reserves_a_20mib_segment_and_splits_it():
    r = cuda(allocs(5 * MiB))
    assert (r.peak_allocated_bytes, r.peak_reserved_bytes) == (5 * MiB, 20 * MiB)
    # the 15 MiB rest of the segment serves the next requests: three more 5 MiB blocks, no new segment
    r = cuda(allocs(*[5 * MiB] * 4))
    assert (r.peak_allocated_bytes, r.peak_reserved_bytes, r.n_device_allocs) == (20 * MiB, 20 * MiB, 1)


def test_11mib_reserves_12mib_and_keeps_the_unsplittable_rest_allocated():
    # 10 MiB and above: segment = request rounded to 2 MiB; the 1 MiB rest is not > kSmallSize, so no split
    r = cuda(allocs(11 * MiB))
    assert (r.peak_allocated_bytes, r.peak_reserved_bytes) == (12 * MiB, 12 * MiB)


def test_round_size_and_allocation_size_match_the_torch_constants():
    assert [round_size(n) for n in (0, 1, 511, 512, 513, 1000)] == [512, 512, 512, 512, 1024, 1024]
    assert allocation_size(512) == K_SMALL_BUFFER == 2 * MiB
    assert allocation_size(MiB) == 2 * MiB
    assert allocation_size(MiB + 512) == K_LARGE_BUFFER == 20 * MiB
    assert allocation_size(10 * MiB - 512) == 20 * MiB
    assert allocation_size(10 * MiB) == 10 * MiB
    assert allocation_size(10 * MiB + 1) == 12 * MiB


def test_zero_byte_tensors_allocate_nothing():
    r = cuda([(0, 0, 0), (1, 0, 0)])
    assert (r.peak_allocated_bytes, r.peak_reserved_bytes, r.n_device_allocs) == (0, 0, 0)


# ---- caching: reuse, best fit, coalescing, fragmentation ----

def test_freed_block_is_reused_without_a_new_segment():
    r = cuda([(0, 0, 5 * MiB), (1, 0, -5 * MiB), (2, 1, 5 * MiB), (3, 1, -5 * MiB), (4, 2, 20 * MiB)])
    assert r.n_device_allocs == 1
    assert r.peak_reserved_bytes == 20 * MiB  # the 20 MiB request fits the coalesced cached segment
    assert r.final_allocated_bytes == 20 * MiB


def test_small_blocks_are_reused_after_free():
    events = [(0, 0, 300 * KiB), (1, 0, -300 * KiB), (2, 1, 100 * KiB), (3, 2, 100 * KiB)]
    r = cuda(events)
    assert (r.peak_reserved_bytes, r.n_device_allocs, r.final_allocated_bytes) == (2 * MiB, 1, 200 * KiB)


def test_best_fit_takes_the_smallest_free_block_and_keeps_a_small_rest_allocated():
    # one 20 MiB segment holding a(6) b(2) c(3) d(9); free a and c: two holes, 6 MiB and 3 MiB
    events = allocs(6 * MiB, 2 * MiB, 3 * MiB, 9 * MiB) + [(4, 0, -6 * MiB), (4, 2, -3 * MiB)]
    events += [(5, 4, 5 * MiB // 2)]  # best fit: the 3 MiB hole; its 0.5 MiB rest is too small to split
    events += [(6, 5, 6 * MiB)]  # the 6 MiB hole is still there
    r = cuda(events)
    assert r.n_device_allocs == 1
    assert r.final_allocated_bytes == 20 * MiB  # 6 + 2 + 3 (not 2.5) + 9
    assert r.final_reserved_bytes == 20 * MiB


def test_neighbouring_free_blocks_coalesce():
    # a, b, c of 5 MiB in one 20 MiB segment (+5 MiB rest); freeing a and b leaves one 10 MiB hole
    events = allocs(5 * MiB, 5 * MiB, 5 * MiB) + [(3, 0, -5 * MiB), (3, 1, -5 * MiB), (4, 3, 9 * MiB)]
    r = cuda(events)
    assert r.n_device_allocs == 1 and r.peak_reserved_bytes == 20 * MiB


def test_fragmentation_makes_reserved_grow_beyond_live_bytes():
    # a(8) b(8) in a 20 MiB segment leave holes of 8 MiB (after freeing a) and 4 MiB, not adjacent:
    # a 10 MiB request fits in neither and cudaMallocs a new segment although only 8 MiB are live.
    events = allocs(8 * MiB, 8 * MiB) + [(2, 0, -8 * MiB), (3, 2, 10 * MiB)]
    r = cuda(events)
    assert r.peak_reserved_bytes == 30 * MiB
    assert r.final_allocated_bytes == 18 * MiB
    assert r.cached_at_peak_reserved_bytes == 12 * MiB
    assert r.fragmentation == pytest.approx(12 / 30)


def test_segments_are_kept_after_everything_is_freed():
    # 16 MiB does not fit the 15 MiB left in the 5 MiB request's segment: a third segment
    events = allocs(1, 5 * MiB, 16 * MiB) + [(3, 0, -1), (3, 1, -5 * MiB), (3, 2, -16 * MiB)]
    r = cuda(events)
    assert r.final_allocated_bytes == 0
    assert r.final_reserved_bytes == r.peak_reserved_bytes == (2 + 20 + 16) * MiB
    assert r.n_segments == 3


# ---- capacity: releasing cached segments, out of memory ----

def test_capacity_releases_cached_segments_before_failing():
    events = [(0, 0, 12 * MiB), (1, 0, -12 * MiB), (2, 1, 14 * MiB)]
    assert cuda(events).peak_reserved_bytes == 26 * MiB  # unlimited: the 12 MiB segment stays cached
    r = cuda(events, capacity_bytes=24 * MiB)
    assert r.fits and r.n_releases == 1
    assert r.peak_reserved_bytes == 14 * MiB and r.final_reserved_bytes == 14 * MiB


def test_capacity_reports_the_op_that_runs_out_of_memory():
    events = [(0, 0, 12 * MiB), (7, 1, 14 * MiB)]
    r = cuda(events, capacity_bytes=24 * MiB)
    assert not r.fits and r.oom_op == 7 and r.failed_request_bytes == 14 * MiB
    assert r.peak_reserved_bytes == 12 * MiB  # the step stops at the failed request: nothing is counted after it


def test_steady_state_replay_stops_when_the_cache_repeats():
    # pass 1 caches a 20 MiB segment for the 3 MiB temporary; pass 2 reuses it and ends in the same state
    events = [(0, 0, 12 * MiB), (1, 1, 3 * MiB), (2, 1, -3 * MiB), (3, 2, 5 * MiB)]
    r = cuda(events, steps=None)
    assert r.steady and r.steps_run == 2
    assert r.peak_reserved_bytes == cuda(events, steps=5).peak_reserved_bytes


def test_split_segments_are_not_released():
    # a 20 MiB segment with one live 5 MiB block cannot be freed to make room
    events = allocs(5 * MiB, 2 * MiB) + [(2, 1, -2 * MiB), (3, 2, 30 * MiB)]
    assert cuda(events, capacity_bytes=40 * MiB).oom_op == 3


def test_max_split_size_keeps_oversize_blocks_whole():
    events = [(0, 0, 40 * MiB), (1, 0, -40 * MiB), (2, 1, 12 * MiB)]
    assert cuda(events).peak_reserved_bytes == 40 * MiB  # default: the cached 40 MiB block is split
    r = cuda(events, max_split_size_bytes=32 * MiB)
    assert r.peak_reserved_bytes == 52 * MiB  # oversize blocks do not serve smaller requests


def test_max_split_size_oversize_block_serves_requests_within_20mib():
    events = [(0, 0, 40 * MiB), (1, 0, -40 * MiB), (2, 1, 36 * MiB)]
    r = cuda(events, max_split_size_bytes=32 * MiB)
    assert r.peak_reserved_bytes == 40 * MiB and r.peak_allocated_bytes == 40 * MiB


# ---- steps, validation ----

def test_second_step_reuses_the_cache_and_skips_persistent_tensors():
    weights = [(0, 0, 30 * MiB)]  # allocated at the first op, never freed: persists across steps
    step = [(1, 1, 5 * MiB), (2, 2, 700 * KiB), (3, 1, -5 * MiB), (4, 2, -700 * KiB)]
    one, two = cuda(weights + step), cuda(weights + step, steps=2)
    assert two.peak_reserved_bytes == one.peak_reserved_bytes
    assert two.n_device_allocs == one.n_device_allocs == 3
    assert two.final_allocated_bytes == 30 * MiB


def test_tensors_made_during_a_step_and_kept_are_dropped_before_the_next_step():
    # a "gradient" (id 1) allocated in the step and alive at its end is freed between steps (zero_grad)
    events = [(0, 0, 4 * MiB), (1, 1, 8 * MiB), (2, 2, 6 * MiB), (3, 2, -6 * MiB)]
    one, three = cuda(events), cuda(events, steps=3)
    assert three.peak_requested_bytes == one.peak_requested_bytes == 18 * MiB
    assert three.final_allocated_bytes == one.final_allocated_bytes == 12 * MiB
    # the second step's 8 MiB request finds the freed block in the cached segment: no new segment
    assert three.n_device_allocs == one.n_device_allocs
    # the CPU model returns everything: no growth either
    assert replay(events, "cpu", steps=3).peak_requested_bytes == 18 * MiB


def test_unknown_allocator_lists_the_choices():
    with pytest.raises(InputError, match="'cuda-caching', 'cpu'"):
        replay([], "jemalloc")
    assert AllocatorKind.parse("cpu") is AllocatorKind.CPU


@pytest.mark.parametrize("events, message", [
    ([(0, 0, 10), (1, 0, 10)], "allocated twice"),
    ([(0, 0, -10)], "freed without"),
])
def test_inconsistent_events_are_rejected(events, message):
    with pytest.raises(InputError, match=message):
        replay(events, "cuda-caching")


def test_bad_options_are_rejected():
    with pytest.raises(InputError, match="steps"):
        replay([], "cpu", steps=0)
    with pytest.raises(InputError, match="cuda-caching"):
        replay([], "cpu", max_split_size_bytes=64 * MiB)
    with pytest.raises(InputError, match="20 MiB"):
        replay([], "cuda-caching", max_split_size_bytes=MiB)


# ---- CPU allocator ----

def test_cpu_aligns_to_64_bytes_and_maps_large_blocks_in_pages():
    r = replay(allocs(1), "cpu")
    assert (r.peak_allocated_bytes, r.peak_reserved_bytes, r.n_segments) == (64, 64, 0)
    r = replay(allocs(MiB), "cpu")
    assert r.peak_allocated_bytes == MiB
    assert r.peak_reserved_bytes == MiB + 4096  # header + alignment slack spill into one more page
    assert r.n_segments == 1


def test_cpu_returns_freed_memory_and_has_no_cache():
    events = allocs(8 * MiB, 8 * MiB) + [(2, 0, -8 * MiB), (3, 2, 10 * MiB)]
    r = replay(events, "cpu")
    assert r.final_reserved_bytes == 8 * MiB + 4096 + 10 * MiB + 4096
    assert r.peak_reserved_bytes == r.final_reserved_bytes
    assert r.n_releases == 1


def test_cpu_capacity_flags_the_op_that_exceeds_it():
    assert replay(allocs(MiB, MiB), "cpu", capacity_bytes=int(1.5 * MiB)).oom_op == 1


# ---- the CPU model against a real process: resident memory of the same allocations made with torch ----

_RUN_EVENTS = r"""
import json, sys, torch
events = json.load(sys.stdin)
def hwm():
    return [int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM")][0]
live = {}
torch.empty(1).fill_(0)
start = hwm()
for op, tid, n in events:
    if n > 0:
        live[tid] = torch.empty(n, dtype=torch.uint8).fill_(1)  # written, so every page is resident
    else:
        del live[tid]
print(hwm() - start)
"""


def _training_like_events(seed: int) -> list[tuple[int, int, int]]:
    """40 forward ops (a saved activation and a temporary each), then a backward that allocates a
    gradient per saved tensor and frees both: ~100 MB at the peak."""
    rng, events, saved, tid = random.Random(seed), [], [], 0
    for op in range(40):
        n = rng.choice([200_000, 800_000, 3_000_000, 6_000_000])
        events.append((op, tid, n))
        saved.append((tid, n))
        temp = rng.choice([500_000, 2_000_000])
        events += [(op, tid + 1, temp), (op, tid + 1, -temp)]
        tid += 2
    for op, (sid, n) in enumerate(reversed(saved), start=40):
        events += [(op, tid, n), (op, sid, -n), (op, tid, -n)]
        tid += 1
    return events


def _measured_peak_growth(events, malloc_env: dict[str, str]) -> int:
    """Peak resident-memory growth (bytes) of a fresh process making ``events`` with torch, under glibc
    settings ``malloc_env`` only (MALLOC_* variables of this environment are dropped)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", _RUN_EVENTS], input=json.dumps(events), capture_output=True,
                         text=True, env={**env, **malloc_env}, check=True)
    return int(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc and /proc/self/status")
def test_cpu_model_matches_resident_memory_with_a_fixed_mmap_threshold():
    # MALLOC_MMAP_THRESHOLD_ turns off glibc's dynamic threshold: every tensor is its own mmap
    events = _training_like_events(seed=1)
    predicted = replay(events, "cpu").peak_reserved_bytes
    measured = _measured_peak_growth(events, {"MALLOC_MMAP_THRESHOLD_": "131072"})
    assert predicted == pytest.approx(measured, rel=0.03)  # measured here: -0.2%


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc and /proc/self/status")
def test_cpu_model_is_a_lower_bound_under_default_glibc():
    # glibc raises its mmap threshold after large frees and keeps freed heap memory: more resident memory
    events = _training_like_events(seed=1)
    predicted = replay(events, "cpu").peak_reserved_bytes
    assert _measured_peak_growth(events, {}) >= 0.97 * predicted  # measured here: 18-31% above the model


# ---- a timeline replayed: requested bytes are the timeline's own peak ----

def test_replayed_timeline_requested_peak_equals_timeline_peak():
    ops = [OpRecord("op", Phase.FORWARD)] * 6
    sizes = [4 * MiB, 3 * MiB, 700 * KiB, 12 * MiB, 100, 9 * MiB]
    spans = [(0, 5), (1, 3), (1, 2), (2, 4), (3, 3), (4, 5)]
    tensors = [TensorRecord(i, s, "float32", (s // 4,), Category.TEMPORARY, b, d)
               for i, (s, (b, d)) in enumerate(zip(sizes, spans))]
    tl = Timeline(ops=ops, tensors=tensors)
    r = cuda(allocation_events(tl))
    assert r.peak_requested_bytes == tl.peak_bytes
    assert r.peak_allocated_op == tl.peak_index
    assert r.peak_reserved_bytes >= r.peak_allocated_bytes >= r.peak_requested_bytes


# ---- property tests against a brute-force reference model ----

class ReferenceCaching:
    """The same rules as memsim.simulation.allocator, written the slow obvious way: segments are lists of
    [size, allocated] blocks in address order; best fit scans every free block."""

    def __init__(self):
        self.segments = []  # [ [small, [[size, allocated], ...]] ]
        self.live = {}  # tid -> (segment index, offset)

    def malloc(self, tid, nbytes):
        size = round_size(nbytes)
        small = size <= MiB
        best = None
        for si, (seg_small, blocks) in enumerate(self.segments):
            if seg_small != small:
                continue
            offset = 0
            for bi, (bsize, allocated) in enumerate(blocks):
                if not allocated and bsize >= size:
                    key = (bsize, si, offset)
                    if best is None or key < best[0]:
                        best = (key, si, bi)
                offset += bsize
        if best is None:
            self.segments.append([small, [[allocation_size(size), False]]])
            si, bi = len(self.segments) - 1, 0
        else:
            _, si, bi = best
        blocks = self.segments[si][1]
        rest = blocks[bi][0] - size
        if (rest >= 512) if small else (rest > MiB):
            blocks[bi:bi + 1] = [[size, True], [rest, False]]
        else:
            blocks[bi][1] = True
        self.live[tid] = (si, sum(b[0] for b in blocks[:bi]))

    def free(self, tid):
        si, offset = self.live.pop(tid)
        blocks = self.segments[si][1]
        at = 0
        for bi, b in enumerate(blocks):
            if at == offset:
                break
            at += b[0]
        blocks[bi][1] = False
        merged = []
        for b in blocks:
            if merged and not merged[-1][1] and not b[1]:
                merged[-1][0] += b[0]
            else:
                merged.append(list(b))
        self.segments[si][1] = merged

    @property
    def allocated(self):
        return sum(b[0] for _, blocks in self.segments for b in blocks if b[1])

    @property
    def reserved(self):
        return sum(b[0] for _, blocks in self.segments for b in blocks)


size_strategy = st.one_of(
    st.integers(1, 4 * KiB),
    st.integers(1, 2 * MiB),
    st.integers(MiB, 12 * MiB),
    st.integers(8 * MiB, 40 * MiB),
    st.sampled_from([512, MiB, 2 * MiB, 9 * MiB, 10 * MiB, 19 * MiB, 20 * MiB]),
)


@st.composite
def event_sequences(draw):
    """A random valid sequence: allocations and frees of live tensors in any order; some never freed."""
    n = draw(st.integers(1, 60))
    events, live, next_id = [], {}, 0
    for op in range(n):
        if live and draw(st.booleans()):
            tid = draw(st.sampled_from(sorted(live)))
            events.append((op, tid, -live.pop(tid)))
        else:
            size = draw(size_strategy)
            live[next_id] = size
            events.append((op, next_id, size))
            next_id += 1
    return events, live


@settings(max_examples=150, deadline=None)
@given(event_sequences())
def test_fast_model_matches_the_reference_model(case):
    events, _ = case
    ref = ReferenceCaching()
    peak_alloc = peak_res = 0
    for _, tid, nbytes in events:
        ref.malloc(tid, nbytes) if nbytes > 0 else ref.free(tid)
        peak_alloc, peak_res = max(peak_alloc, ref.allocated), max(peak_res, ref.reserved)
    r = cuda(events)
    assert (r.peak_allocated_bytes, r.peak_reserved_bytes) == (peak_alloc, peak_res)
    assert (r.final_allocated_bytes, r.final_reserved_bytes) == (ref.allocated, ref.reserved)
    assert r.n_segments == len(ref.segments)


@settings(max_examples=100, deadline=None)
@given(event_sequences(), st.sampled_from(list(AllocatorKind)))
def test_reserved_covers_allocated_covers_requested_and_freeing_all_leaves_nothing(case, kind):
    events, live = case
    r = replay(events, kind)
    assert r.peak_reserved_bytes >= r.peak_allocated_bytes >= r.peak_requested_bytes
    assert r.final_reserved_bytes >= r.final_allocated_bytes
    last = events[-1][0] + 1
    closing = [(last, tid, -size) for tid, size in live.items()]
    done = replay(events + closing, kind)
    assert done.final_allocated_bytes == 0
    if kind is AllocatorKind.CPU:
        assert done.final_reserved_bytes == 0
    else:
        assert done.final_reserved_bytes == done.peak_reserved_bytes  # the cache keeps every segment


@settings(max_examples=50, deadline=None)
@given(event_sequences(), st.integers(1, 64 * MiB))
def test_capacity_is_respected_and_changes_nothing_when_never_reached(case, capacity):
    events, _ = case
    free, capped = cuda(events), cuda(events, capacity_bytes=capacity)
    if capped.fits:
        assert capped.peak_reserved_bytes <= capacity
    if free.peak_reserved_bytes <= capacity:
        assert capped == free
    else:
        assert capped.n_releases > 0 or not capped.fits
