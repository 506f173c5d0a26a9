"""Replay one training step's allocations through a model of the framework's memory allocator.

A timeline says how many tensor bytes are live; a device sees more: PyTorch rounds every block up, packs
small blocks into cached segments and keeps freed segments for reuse. :func:`replay` turns the allocation
sequence of a step (:func:`memsim.core.timeline.allocation_events`) into the numbers the device reports:

* ``peak_requested_bytes``: the largest sum of raw tensor sizes (what the timeline counts);
* ``peak_allocated_bytes``: the largest sum of live *blocks* after rounding (``torch.cuda.max_memory_allocated``);
* ``peak_reserved_bytes``: the largest memory held from the device (``torch.cuda.max_memory_reserved`` on
  CUDA; on the CPU an estimate of resident heap/mmap memory).

Pure Python (no torch), fast enough for a GPT-2 XL step (~10^5 events, about a second).

Allocators (:class:`AllocatorKind`):

``cuda-caching``
    A model of ``c10/cuda/CUDACachingAllocator.cpp`` with its default settings (checked against the
    PyTorch 2.x source; constants below are quoted from it):

    * sizes are rounded up to a multiple of 512 bytes (``round_size``; ``roundup_power2_divisions`` is
      off unless ``PYTORCH_CUDA_ALLOC_CONF`` sets it);
    * rounded requests of at most 1 MiB go to the *small* pool, the rest to the *large* pool
      (``get_pool``: ``size <= kSmallSize``);
    * a request the pool cannot serve calls ``cudaMalloc`` for a new segment (``get_allocation_size``):
      2 MiB for small requests, 20 MiB for requests below 10 MiB, otherwise the request rounded up to 2 MiB;
    * best fit: the smallest free block that is large enough, ties broken by the lower address
      (``BlockComparatorSize`` + ``lower_bound``);
    * a found block is split when the rest is usable (``should_split``): at least 512 bytes in the small
      pool, more than 1 MiB in the large pool (so an 11 MiB request keeps its whole 12 MiB segment and
      ``memory_allocated`` counts 12 MiB);
    * a freed block merges with free neighbours of its segment (``free_block`` / ``try_merge_blocks``);
    * segments are never returned during a step (no ``empty_cache``). With ``capacity_bytes`` set, a
      ``cudaMalloc`` that would exceed it first releases every cached segment that is entirely free
      (``release_cached_blocks``) and retries, as PyTorch does before raising out-of-memory;
    * optional ``max_split_size_bytes`` (``PYTORCH_CUDA_ALLOC_CONF=max_split_size_mb``): blocks that large
      are not split and are not handed to smaller requests.

    Not modelled: several streams (one stream assumed), ``expandable_segments``, CUDA graphs' private
    pools, ``garbage_collection_threshold``, and memory outside the caching allocator (CUDA context,
    cuBLAS/cuDNN handles: the device's ``runtime_bytes``). Real ``cudaMalloc`` addresses are not
    predictable; segments get increasing synthetic addresses, which only matters for ties between free
    blocks of equal size.

``cpu``
    PyTorch's CPU allocator (``c10::alloc_cpu``) asks ``posix_memalign`` for 64-byte aligned memory
    (``c10::gAlignment = 64``) and frees it at once; it caches nothing. ``allocated`` is each request
    rounded up to 64 bytes. ``reserved`` approximates resident memory under glibc malloc: a block of at
    least the mmap threshold (128 KiB, glibc's ``DEFAULT_MMAP_THRESHOLD_MIN``) is its own ``mmap``, rounded
    up to 4 KiB pages with the chunk header and alignment slack, and goes back to the OS when freed;
    a smaller block costs its size plus glibc's 8-byte chunk header, rounded up to 64 bytes, in the heap.

    Accuracy, measured on this project's machine (x86-64, glibc, torch 2.13.0+cpu, 2 threads): with the
    mmap threshold fixed (``MALLOC_MMAP_THRESHOLD_=131072`` in the environment) the model's peak is within
    0.3% of the peak resident-memory growth of a process making the same allocations with torch
    (tests/test_allocator.py), and 3-10% below the measured growth over real training steps of
    ResNet-18/50, MobileNetV2 and VGG16 at batch 8 (traced with memsim). With glibc's *default* settings the
    model is a *lower bound*: after the first large free glibc raises its mmap threshold (up to 32 MiB),
    later tensors come from the heap, and freed heap memory is fragmented and not returned; resident memory
    then grew 19-79% more than with the fixed threshold (VGG16 19%, MobileNetV2 23%, ResNet-50 37%,
    ResNet-18 79%). On a small CPU board, ``export MALLOC_MMAP_THRESHOLD_=131072`` before training avoids it.

Example:
    >>> MiB = 1 << 20
    >>> r = replay([(0, 0, 5 * MiB), (1, 1, 1), (2, 0, -5 * MiB)], "cuda-caching")
    >>> r.peak_requested_bytes, r.peak_allocated_bytes, r.peak_reserved_bytes // MiB
    (5242881, 5243392, 22)
"""
from __future__ import annotations

from bisect import bisect_left, insort
from dataclasses import dataclass
from enum import Enum
from typing import Iterable, Sequence

from memsim.core.errors import InputError

# ---- constants of c10/cuda/CUDACachingAllocator.cpp (PyTorch 2.x), quoted with their names ----
K_MIN_BLOCK_SIZE = 512  # kMinBlockSize: "all sizes are rounded to at least 512 bytes"
K_SMALL_SIZE = 1 << 20  # kSmallSize = 1048576: "largest 'small' allocation is 1 MiB"
K_SMALL_BUFFER = 2 << 20  # kSmallBuffer = 2097152: "'small' allocations are packed in 2 MiB blocks"
K_LARGE_BUFFER = 20 << 20  # kLargeBuffer = 20971520: "'large' allocations may be packed in 20 MiB blocks"
K_MIN_LARGE_ALLOC = 10 << 20  # kMinLargeAlloc = 10485760: "allocations between 1 and 10 MiB may use kLargeBuffer"
K_ROUND_LARGE = 2 << 20  # kRoundLarge = 2097152: "round up large allocations to 2 MiB"

# ---- CPU: c10/core/alignment.h and glibc malloc defaults (x86-64 and aarch64 Linux) ----
CPU_ALIGNMENT = 64  # c10::gAlignment: alloc_cpu uses posix_memalign(&data, 64, nbytes)
PAGE_SIZE = 4096  # 4 KiB pages (the default on x86-64, Raspberry Pi OS and L4T)
MMAP_THRESHOLD = 128 * 1024  # glibc DEFAULT_MMAP_THRESHOLD_MIN: requests this big get their own mmap
MALLOC_HEADER = 8  # glibc SIZE_SZ: the size field in front of every chunk
MALLOC_MINSIZE = 32  # glibc MINSIZE on 64-bit; memalign over-asks by alignment + MINSIZE

#: Most passes ``replay(steps=None)`` runs while waiting for the allocator's state to repeat.
MAX_STEADY_STEPS = 8

_ADDR_BITS = 48  # synthetic addresses stay below 2**48, so (size << 48 | addr) sorts like (size, addr)
_ADDR_MASK = (1 << _ADDR_BITS) - 1


class AllocatorKind(str, Enum):
    """Which allocator model turns live tensors into device memory.

    Members:
        CUDA_CACHING: PyTorch's CUDA caching allocator (discrete GPUs and Jetson boards).
        CPU: PyTorch's CPU allocator on glibc malloc (Raspberry Pi, laptops, CI runners).
    """

    CUDA_CACHING = "cuda-caching"
    CPU = "cpu"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, value: "str | AllocatorKind") -> "AllocatorKind":
        """The member named by ``value`` ("cuda-caching" or "cpu"); InputError listing the choices otherwise."""
        try:
            return cls(value)
        except ValueError:
            valid = ", ".join(repr(m.value) for m in cls)
            raise InputError(f"unknown allocator {value!r}; valid allocators: {valid}") from None


@dataclass(frozen=True)
class AllocatorResult:
    """What the allocator model saw over the replayed step (all sizes in bytes).

    Attributes:
        allocator: the model used.
        peak_requested_bytes: largest sum of live raw tensor sizes.
        peak_allocated_bytes: largest sum of live blocks after the allocator's rounding
            (``torch.cuda.max_memory_allocated``).
        peak_reserved_bytes: largest memory held from the device or OS (``torch.cuda.max_memory_reserved``).
        peak_allocated_op, peak_reserved_op: op index of the event at which each peak was first reached.
        reserved_at_peak_allocated_bytes: reserved memory at the moment allocated memory peaked.
        cached_at_peak_reserved_bytes: reserved but unallocated memory when reserved memory peaked (free
            blocks inside held segments: the allocator's fragmentation and caching overhead).
        n_segments: segments (``cudaMalloc`` calls or CPU mmaps) held at the end.
        peak_segments: most segments held at once.
        n_device_allocs: segments created in total (``cudaMalloc`` calls; CPU: mmap calls).
        n_releases: segments released to make room under ``capacity_bytes`` (CUDA), or munmaps (CPU).
        final_allocated_bytes, final_reserved_bytes: at the end of the replay.
        oom_op: op index of the first request that could not be served within ``capacity_bytes`` even
            after releasing cached segments (``None``: everything fitted or no capacity was given). The
            replay stops there, as the real step would: the peaks are those reached before it.
        failed_request_bytes: size of that request (0 when none failed).
        steps_run: how many passes over the step were replayed.
        steady: whether the last pass ended in the same allocator state as the one before it (the cache
            no longer changes from step to step: what a long training run sees).
    """

    allocator: AllocatorKind
    peak_requested_bytes: int
    peak_allocated_bytes: int
    peak_reserved_bytes: int
    peak_allocated_op: int
    peak_reserved_op: int
    reserved_at_peak_allocated_bytes: int
    cached_at_peak_reserved_bytes: int
    n_segments: int
    peak_segments: int
    n_device_allocs: int
    n_releases: int
    final_allocated_bytes: int
    final_reserved_bytes: int
    oom_op: int | None = None
    failed_request_bytes: int = 0
    steps_run: int = 1
    steady: bool = False

    @property
    def fragmentation(self) -> float:
        """Share of reserved memory not allocated when reserved memory peaked (0.0 = none)."""
        if self.peak_reserved_bytes == 0:
            return 0.0
        return self.cached_at_peak_reserved_bytes / self.peak_reserved_bytes

    @property
    def fits(self) -> bool:
        """False when a request failed under ``capacity_bytes`` (always True without a capacity)."""
        return self.oom_op is None


def replay(
    events: Iterable[Sequence[int]],
    allocator: "str | AllocatorKind",
    *,
    capacity_bytes: int | None = None,
    max_split_size_bytes: int | None = None,
    steps: int = 1,
) -> AllocatorResult:
    """Replay allocation events through an allocator model and return its peaks.

    Args:
        events: ``(op_index, tensor_id, +bytes)`` for an allocation and ``(op_index, tensor_id, -bytes)``
            for a free, in order (:func:`memsim.core.timeline.allocation_events`). Zero-byte requests allocate
            nothing, as in PyTorch.
        allocator: ``"cuda-caching"`` or ``"cpu"`` (:class:`AllocatorKind`).
        capacity_bytes: memory the allocator may hold (the device's ``budget_bytes``). When set, the CUDA
            model releases fully free cached segments before exceeding it and reports ``oom_op`` if that
            is not enough; the CPU model reports ``oom_op`` when its reserved memory would exceed it.
        max_split_size_bytes: ``max_split_size_mb`` of ``PYTORCH_CUDA_ALLOC_CONF`` in bytes (CUDA only;
            ``None`` = unlimited, PyTorch's default).
        steps: how many times to run the sequence back to back, as in a training loop whose allocator
            starts each step with the previous step's cache; ``None`` = until the allocator's state at the
            end of a pass equals the one before it (steady state), at most :data:`MAX_STEADY_STEPS`. Between
            passes, tensors allocated during the step and never freed in the sequence (gradients, which
            ``zero_grad(set_to_none=True)`` drops) are freed in allocation order; tensors allocated at the
            first op and never freed (parameters, buffers, optimizer state) persist, and their allocations
            are skipped in later passes.

    Returns:
        :class:`AllocatorResult` (bytes).

    Example:
        >>> KiB = 1024  # three 700 KiB blocks: two share a 2 MiB small segment, the third needs another
        >>> replay([(0, i, 700 * KiB) for i in range(3)], "cuda-caching").peak_reserved_bytes
        4194304
    """
    kind = AllocatorKind.parse(allocator)
    until_steady = steps is None
    steps = MAX_STEADY_STEPS if until_steady else steps
    if steps < 1:
        raise InputError(f"bad steps {steps!r}: must be at least 1")
    if capacity_bytes is not None and capacity_bytes <= 0:
        raise InputError(f"bad capacity_bytes {capacity_bytes!r}: must be greater than zero")
    if max_split_size_bytes is not None:
        if kind is not AllocatorKind.CUDA_CACHING:
            raise InputError("max_split_size_bytes applies to the 'cuda-caching' allocator only")
        if max_split_size_bytes <= K_LARGE_BUFFER:
            # PyTorch clamps max_split_size_mb to more than kLargeBuffer (CUDAAllocatorConfig).
            raise InputError(
                f"bad max_split_size_bytes {max_split_size_bytes!r}: must exceed {K_LARGE_BUFFER} (20 MiB)")
    model = _CudaCachingModel(capacity_bytes, max_split_size_bytes) if kind is AllocatorKind.CUDA_CACHING \
        else _CpuModel(capacity_bytes)
    events = events if isinstance(events, list) else list(events)
    live: dict[int, int] = {}  # tensor id -> handle (block address or size) of its live block
    born: dict[int, tuple[int, int]] = {}  # tensor id -> (op index, bytes) of its live allocation
    first_op = events[0][0] if events else 0
    stats = _Stats()
    failed, steps_run, steady, previous = 0, 0, False, None
    try:
        for step in range(steps):
            if step > 0:  # end of the previous step: what it made and kept is dropped before the next one
                for tid in [t for t, (op, _) in born.items() if op != first_op]:
                    op, nbytes = born.pop(tid)
                    model.free(live.pop(tid))
                    stats.request(-nbytes)
            steps_run = step + 1
            for op, tid, nbytes in events:
                if nbytes == 0:
                    continue  # PyTorch allocates nothing for an empty tensor
                if nbytes > 0:
                    if tid in live:
                        if step > 0:
                            continue  # still alive from the previous pass: persists across steps
                        raise InputError(f"tensor {tid} allocated twice without a free (op {op})")
                    failed = nbytes
                    live[tid] = model.malloc(nbytes, op)
                    failed = 0
                    born[tid] = (op, nbytes)
                    stats.request(nbytes)
                else:
                    handle = live.pop(tid, None)
                    if handle is None:
                        raise InputError(f"tensor {tid} freed without a live allocation (op {op})")
                    del born[tid]
                    model.free(handle)
                    stats.request(nbytes)
                stats.observe(model, op)
            state = model.state()
            if state == previous:
                steady = True
                if until_steady:
                    break
            previous = state
    except _OutOfMemory:
        pass  # the step stops at its first failed request, as PyTorch raises out-of-memory there
    return AllocatorResult(
        allocator=kind,
        peak_requested_bytes=stats.peak_requested,
        peak_allocated_bytes=stats.peak_allocated,
        peak_reserved_bytes=stats.peak_reserved,
        peak_allocated_op=stats.peak_allocated_op,
        peak_reserved_op=stats.peak_reserved_op,
        reserved_at_peak_allocated_bytes=stats.reserved_at_peak_allocated,
        cached_at_peak_reserved_bytes=stats.cached_at_peak_reserved,
        n_segments=model.n_segments,
        peak_segments=stats.peak_segments,
        n_device_allocs=model.n_device_allocs,
        n_releases=model.n_releases,
        final_allocated_bytes=model.allocated,
        final_reserved_bytes=model.reserved,
        oom_op=model.oom_op,
        failed_request_bytes=failed if model.oom_op is not None else 0,
        steps_run=steps_run,
        steady=steady,
    )


class _OutOfMemory(Exception):
    """A request the allocator model could not serve within its capacity (ends the replay)."""


class _Stats:
    """Running peaks, updated after every event (the order of checks matters for the *_op fields)."""

    __slots__ = ("requested", "peak_requested", "peak_allocated", "peak_reserved", "peak_allocated_op",
                 "peak_reserved_op", "reserved_at_peak_allocated", "cached_at_peak_reserved", "peak_segments")

    def __init__(self) -> None:
        self.requested = self.peak_requested = self.peak_allocated = self.peak_reserved = 0
        self.peak_allocated_op = self.peak_reserved_op = 0
        self.reserved_at_peak_allocated = self.cached_at_peak_reserved = self.peak_segments = 0

    def request(self, nbytes: int) -> None:
        self.requested += nbytes
        if self.requested > self.peak_requested:
            self.peak_requested = self.requested

    def observe(self, model: "_CudaCachingModel | _CpuModel", op: int) -> None:
        if model.allocated > self.peak_allocated:
            self.peak_allocated = model.allocated
            self.peak_allocated_op = op
            self.reserved_at_peak_allocated = model.reserved
        if model.reserved > self.peak_reserved:
            self.peak_reserved = model.reserved
            self.peak_reserved_op = op
            self.cached_at_peak_reserved = model.reserved - model.allocated
        if model.n_segments > self.peak_segments:
            self.peak_segments = model.n_segments


def round_size(nbytes: int) -> int:
    """Block size the CUDA caching allocator gives a request (``round_size``: multiples of 512 bytes).

    >>> round_size(1), round_size(512), round_size(513)
    (512, 512, 1024)
    """
    if nbytes < K_MIN_BLOCK_SIZE:
        return K_MIN_BLOCK_SIZE
    return K_MIN_BLOCK_SIZE * ((nbytes + K_MIN_BLOCK_SIZE - 1) // K_MIN_BLOCK_SIZE)


def allocation_size(rounded: int) -> int:
    """Segment size ``cudaMalloc``-ed for a rounded request no cached block can serve
    (``get_allocation_size``).

    >>> MiB = 1 << 20
    >>> [allocation_size(s) // MiB for s in (512, MiB, 5 * MiB, 11 * MiB)]
    [2, 2, 20, 12]
    """
    if rounded <= K_SMALL_SIZE:
        return K_SMALL_BUFFER
    if rounded < K_MIN_LARGE_ALLOC:
        return K_LARGE_BUFFER
    return K_ROUND_LARGE * ((rounded + K_ROUND_LARGE - 1) // K_ROUND_LARGE)


class _Block:
    """A block of a segment: allocated or free; ``prev``/``next`` are its neighbours in the segment."""

    __slots__ = ("addr", "size", "small", "allocated", "prev", "next")

    def __init__(self, addr: int, size: int, small: bool) -> None:
        self.addr = addr
        self.size = size
        self.small = small
        self.allocated = False
        self.prev: _Block | None = None
        self.next: _Block | None = None


class _CudaCachingModel:
    """The caching allocator's state: two pools of free blocks, each a sorted list of ``size<<48|addr``."""

    def __init__(self, capacity: int | None, max_split_size: int | None) -> None:
        self.capacity = capacity
        self.max_split = max_split_size if max_split_size is not None else 1 << 62
        self.free_keys = {True: [], False: []}  # pool (small?) -> sorted keys of its free blocks
        self.blocks: dict[int, _Block] = {}  # address -> block, every block (free or allocated)
        self.next_addr = 1 << 21  # synthetic cudaMalloc addresses (2 MiB aligned, never reused)
        self.allocated = 0
        self.reserved = 0
        self.n_segments = 0
        self.n_device_allocs = 0
        self.n_releases = 0
        self.oom_op: int | None = None

    # -- free lists --
    def _insert_free(self, block: _Block) -> None:
        insort(self.free_keys[block.small], (block.size << _ADDR_BITS) | block.addr)

    def _remove_free(self, block: _Block) -> None:
        keys = self.free_keys[block.small]
        key = (block.size << _ADDR_BITS) | block.addr
        i = bisect_left(keys, key)
        del keys[i]

    def _get_free_block(self, size: int, small: bool) -> _Block | None:
        keys = self.free_keys[small]
        i = bisect_left(keys, size << _ADDR_BITS)
        if i == len(keys):
            return None
        key = keys[i]
        found = key >> _ADDR_BITS
        # Oversize blocks (>= max_split_size) serve only requests within kLargeBuffer of their size.
        if size < self.max_split and found >= self.max_split:
            return None
        if size >= self.max_split and found >= size + K_LARGE_BUFFER:
            return None
        del keys[i]
        return self.blocks[key & _ADDR_MASK]

    # -- segments --
    def _alloc_segment(self, seg_size: int, small: bool, op: int) -> _Block:
        if self.capacity is not None and self.reserved + seg_size > self.capacity:
            if self.max_split < 1 << 62:
                self._release_available(seg_size, small)
            if self.reserved + seg_size > self.capacity:
                self._release_cached()
            if self.reserved + seg_size > self.capacity:
                self.oom_op = op
                raise _OutOfMemory
        addr = self.next_addr
        # Leave a 2 MiB gap so no two segments are adjacent in the synthetic address space.
        self.next_addr += seg_size + K_SMALL_BUFFER
        block = _Block(addr, seg_size, small)
        self.blocks[addr] = block
        self.reserved += seg_size
        self.n_segments += 1
        self.n_device_allocs += 1
        return block

    def _release(self, block: _Block) -> None:
        self._remove_free(block)
        del self.blocks[block.addr]
        self.reserved -= block.size
        self.n_segments -= 1
        self.n_releases += 1

    def _release_cached(self) -> None:
        """``release_cached_blocks``: cudaFree every cached block that is a whole segment."""
        for small in (False, True):
            for key in list(self.free_keys[small]):
                block = self.blocks[key & _ADDR_MASK]
                if block.prev is None and block.next is None:
                    self._release(block)

    def _release_available(self, size: int, small: bool) -> None:
        """``release_available_cached_blocks`` (only with max_split_size): free oversize cached segments,
        the one just large enough, or else the largest ones until enough is freed."""
        keys = self.free_keys[small]
        target = max(size, self.max_split)
        i = bisect_left(keys, target << _ADDR_BITS)
        if i < len(keys):
            block = self.blocks[keys[i] & _ADDR_MASK]
            if block.prev is None and block.next is None:
                self._release(block)
            return
        released = 0
        j = len(keys) - 1
        while j >= 0 and released < target:
            block = self.blocks[keys[j] & _ADDR_MASK]
            if block.size < self.max_split:
                break
            if block.prev is None and block.next is None:
                released += block.size
                self._release(block)
            j -= 1

    def state(self) -> tuple:
        """What decides the next step's behaviour: reserved bytes and every free block's size (by pool),
        in address order within segments (synthetic addresses differ from pass to pass)."""
        return (self.reserved, self.allocated, tuple(self.free_keys[True]), tuple(self.free_keys[False]))

    # -- the public face: malloc and free --
    def malloc(self, nbytes: int, op: int) -> int:
        size = round_size(nbytes)
        small = size <= K_SMALL_SIZE
        block = self._get_free_block(size, small)
        if block is None:
            block = self._alloc_segment(allocation_size(size), small, op)
        remaining = block.size - size
        split = remaining >= K_MIN_BLOCK_SIZE if small else (size < self.max_split and remaining > K_SMALL_SIZE)
        if split:
            # The request takes the low end of the block; the rest stays free right after it.
            rest = _Block(block.addr + size, remaining, small)
            rest.prev, rest.next = block, block.next
            if block.next is not None:
                block.next.prev = rest
            block.next = rest
            block.size = size
            self.blocks[rest.addr] = rest
            self._insert_free(rest)
        block.allocated = True
        self.allocated += block.size
        return block.addr

    def free(self, addr: int) -> None:
        block = self.blocks[addr]
        block.allocated = False
        self.allocated -= block.size
        prev, nxt = block.prev, block.next
        if prev is not None and not prev.allocated:  # [prev block] -> one block at prev's address
            self._remove_free(prev)
            del self.blocks[block.addr]
            block.addr = prev.addr
            block.size += prev.size
            block.prev = prev.prev
            if block.prev is not None:
                block.prev.next = block
            self.blocks[block.addr] = block
        if nxt is not None and not nxt.allocated:  # [block next]
            self._remove_free(nxt)
            del self.blocks[nxt.addr]
            block.size += nxt.size
            block.next = nxt.next
            if block.next is not None:
                block.next.prev = block
        self._insert_free(block)


class _CpuModel:
    """Live blocks of the CPU allocator: no cache, so reserved follows allocated (see module docstring)."""

    def __init__(self, capacity: int | None) -> None:
        self.capacity = capacity
        self.allocated = 0
        self.reserved = 0
        self.n_segments = 0  # live mmaps
        self.n_device_allocs = 0
        self.n_releases = 0
        self.oom_op: int | None = None

    @staticmethod
    def footprint(nbytes: int) -> tuple[int, int, bool]:
        """(allocated, resident, mmapped) bytes of one ``posix_memalign(64, nbytes)`` under glibc."""
        aligned = -(-nbytes // CPU_ALIGNMENT) * CPU_ALIGNMENT
        if nbytes >= MMAP_THRESHOLD:
            # memalign over-asks by alignment + MINSIZE; an mmapped chunk keeps that slack and its header.
            mapped = nbytes + CPU_ALIGNMENT + MALLOC_MINSIZE + MALLOC_HEADER
            return aligned, -(-mapped // PAGE_SIZE) * PAGE_SIZE, True
        # Heap chunks start on 64-byte boundaries with glibc's size field just before them.
        return aligned, -(-(nbytes + MALLOC_HEADER) // CPU_ALIGNMENT) * CPU_ALIGNMENT, False

    def malloc(self, nbytes: int, op: int) -> int:
        allocated, resident, mmapped = self.footprint(nbytes)
        if self.capacity is not None and self.reserved + resident > self.capacity:
            self.oom_op = op
            raise _OutOfMemory
        self.allocated += allocated
        self.reserved += resident
        if mmapped:
            self.n_segments += 1
            self.n_device_allocs += 1
        return nbytes

    def state(self) -> tuple:
        """The CPU model caches nothing: its state is what is live."""
        return (self.reserved, self.allocated)

    def free(self, nbytes: int) -> None:
        allocated, resident, mmapped = self.footprint(nbytes)
        self.allocated -= allocated
        self.reserved -= resident
        if mmapped:
            self.n_segments -= 1
            self.n_releases += 1
