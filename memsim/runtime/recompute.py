"""The ``recompute`` policy's two halves: recipes recorded in forward, plans run again in backward.

:class:`RecipeRecorder` is a ``TorchDispatchMode`` active during a ``compressed_activations(policy="recompute")``
block. For every call of a cheap op (:data:`memsim.core.saved_rules.RECOMPUTABLE_OPS`) made with grad enabled
it records, per recomputable output, a :class:`Recipe`: the aten op, its arguments with each tensor replaced by
a :class:`Ref` (the tensor's storage key and view at call time, and the recipe of that input when it has one),
and the output index. Recipes are keyed by ``(storage pointer, storage bytes, version after the op, dtype)``:
an in-place op (``relu_``, ``add_``, ``hardtanh_``) keeps its storage and bumps its version, so the recipe of
version ``v + 1`` refers to the recipe of version ``v``.

When the hooks pack a tensor with a recipe, :func:`build_plan` turns the recipe into a plan whose leaves are
all kept anyway: a live hook entry of the same storage version (restored, or itself recomputed, in
backward), a parameter (or leaf that requires grad) whose version must not change, or a small constant. A
recipe input with none of those (an activation nobody saved) makes the tensor stored after all. Plans hold
the hook entries they need strongly and no dense tensor; :func:`run_plan` runs the ops again under
``torch.no_grad()``, in-place ops in place on the freshly computed intermediate.

Batch norm never touches BN's running statistics in recomputation: they are updated once per step, by the
forward. On the CPU (float32/float64, contiguous or channels-last input) it is recorded as an eval-mode call
that applies the batch statistics the forward computed (:func:`_batch_norm_apply_args`: one elementwise pass,
bit-identical); elsewhere as a training-mode call with ``running_mean=None, running_var=None``, which collects
the same batch statistics again. Either way its output 0 is the forward's, bit for bit.

A plan's arguments are evaluated deepest first, so a residual chain rebuilt through a stage holds one block
output per level, not also each level's batch-norm output.

Example:
    >>> import torch
    >>> x = torch.randn(4, 8, requires_grad=True)
    >>> with RecipeRecorder() as rec:
    ...     y = torch.relu(x * 2)
    >>> r = rec.lookup(y)
    >>> str(r.func), r.index
    ('aten.relu.default', 0)
"""
from __future__ import annotations

import functools
import weakref

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode

from memsim.core.saved_rules import RECOMPUTABLE_OPS, op_packet

#: Longest recipe chain kept (ops): deeper inputs are referenced as plain tensors (then they must be kept
#: by an entry), so a loop of in-place ops cannot grow an unbounded chain.
MAX_DEPTH = 24
#: At most this many recipes are remembered; the oldest are dropped first.
MAX_RECIPES = 1 << 15
_PRUNE_EVERY = 2048


def map_only(types, fn, tree):
    """``tree`` (nested tuples, lists and dicts of op arguments) with every instance of ``types`` replaced by
    ``fn(x)``. Not ``torch.utils._pytree.tree_map_only``: its flattening helper is a closure that refers to
    itself, a reference cycle per call that keeps the tree's leaves (activations, hook entries) alive until
    the cyclic garbage collector runs, which made the runtime's peak depend on when that happened.

    >>> map_only(int, lambda x: x + 1, ([1, "a"], {"k": (2,)}))
    ([2, 'a'], {'k': (3,)})
    """
    if isinstance(tree, types):
        return fn(tree)
    if type(tree) in (tuple, list):
        return type(tree)(map_only(types, fn, x) for x in tree)
    if type(tree) is dict:
        return {k: map_only(types, fn, v) for k, v in tree.items()}
    return tree



def leaves_of(types, tree) -> list:
    """The instances of ``types`` in ``tree`` (as :func:`map_only` walks it), in order.

    >>> leaves_of(int, ([1, "a"], {"k": (2,)}))
    [1, 2]
    """
    found: list = []
    map_only(types, found.append, tree)
    return found

def storage_key(t: torch.Tensor, version: int | None = None) -> tuple:
    """``(storage pointer, storage bytes, version, dtype)`` of ``t`` (its current version by default)."""
    storage = t.untyped_storage()
    return (storage.data_ptr(), storage.nbytes(), t._version if version is None else version, t.dtype)


def _spans_storage(t: torch.Tensor) -> bool:
    """True when ``t`` starts at offset 0 and its elements fill its whole storage densely."""
    from memsim.runtime.hooks import _dense_layout_of

    if t.storage_offset() != 0 or t.numel() * t.element_size() != t.untyped_storage().nbytes():
        return False
    return _dense_layout_of(t.shape, t.stride())


def _param_like(t: torch.Tensor) -> bool:
    base = t._base if t._base is not None else t
    return isinstance(base, torch.nn.Parameter) or (base.is_leaf and base.requires_grad)


class Ref:
    """One tensor argument of a recipe: its storage key and view at call time, the recipe that produced that
    storage version (or None), and a weak reference for parameters / a copy for 0-dim constants."""

    __slots__ = ("key", "storage", "size", "stride", "offset", "recipe", "param", "const")

    def __init__(self, t: torch.Tensor, recipe: "Recipe | None", storage: StorageWeakRef, const=None):
        self.key = storage_key(t)
        # which storage: the pointer in ``key`` may be reused by a new storage once this one dies (a weak
        # reference keeps the storage object's address from being reused, so equal ``cdata`` means same storage)
        self.storage = storage
        self.size, self.stride, self.offset = tuple(t.shape), tuple(t.stride()), t.storage_offset()
        self.recipe = recipe
        self.param = weakref.ref(t) if _param_like(t) else None
        # a 0-dim tensor argument that is not a parameter (a scalar made a tensor): small, copied
        if const is None and self.param is None and t.dim() == 0 and recipe is None:
            const = t.detach().clone()
        self.const = const


class Recipe:
    """How one output of one cheap op call was computed."""

    __slots__ = ("func", "args", "kwargs", "index", "size", "stride", "inplace", "depth", "__weakref__")

    def __init__(self, func, args, kwargs, index, out, inplace, depth):
        self.func, self.args, self.kwargs, self.index = func, args, kwargs, index
        self.size, self.stride = tuple(out.shape), tuple(out.stride())
        self.inplace, self.depth = inplace, depth


def _recomputable_indices(func) -> frozenset | None:
    return RECOMPUTABLE_OPS.get(op_packet(str(func)))


class RecipeRecorder(TorchDispatchMode):
    """Records a :class:`Recipe` for each recomputable output of each cheap op run with grad enabled.

    ``recording`` can be switched off (the hooks do while they pack and unpack, and recomputation runs under
    ``no_grad``). The table holds no tensor data: recipes reference tensors by storage key (with a
    ``StorageWeakRef`` so a dead storage's pointer is never mistaken for a new one) and parameters weakly.
    """

    def __init__(self):
        super().__init__()
        self.recording = True
        self.table: dict = {}       # storage key -> (Recipe, StorageWeakRef of its storage)
        self._rules: dict = {}      # OpOverload -> recomputable output indices (None: not a cheap op)
        self._mutable: dict = {}    # OpOverload -> names of the arguments it writes (empty: none)
        self._inserts = 0
        # storage key of a stored-dense tensor some plan reads -> callbacks to run before it is overwritten
        # (they turn the dependent recomputed entries into stored ones while the old values still exist)
        self.watched: dict = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.watched:
            written = self._mutable.get(func)
            if written is None:
                written = self._mutable[func] = _written_arguments(func)
            if written:
                self._before_write(args, kwargs, written)
        rule = self._rules.get(func, 0)
        if rule == 0:
            rule = self._rules[func] = _recomputable_indices(func)
        if rule is None or not self.recording or not torch.is_grad_enabled():
            return func(*args, **kwargs)
        packet = op_packet(str(func))
        rec_args, batch_norm = args, packet == "aten.native_batch_norm"
        if batch_norm:
            # (input, weight, bias, running_mean, running_var, training, momentum, eps): recompute from batch
            # statistics only, never touching the running ones; eval-mode BN reads buffers: not recorded
            if len(args) < 8 or kwargs or not args[5]:
                return func(*args, **kwargs)
            rec_args = (*args[:3], None, None, *args[5:])
        try:
            ref_args, ref_kwargs = map_only(torch.Tensor, self._ref, (tuple(rec_args), dict(kwargs)))
        except _Unsupported:
            return func(*args, **kwargs)
        out = func(*args, **kwargs)
        if batch_norm:
            applied = _batch_norm_apply_args(args, out)
            if applied is not None:
                ref_args = (ref_args[0], *applied, *ref_args[6:])
        inplace = func._schema.is_mutable
        outs = out if isinstance(out, (tuple, list)) else (out,)
        depth = 1 + max((r.recipe.depth for r in _refs(ref_args, ref_kwargs) if r.recipe is not None), default=0)
        for i in rule:
            o = outs[i] if i < len(outs) else None
            if not isinstance(o, torch.Tensor) or type(o) is not torch.Tensor or not _spans_storage(o):
                continue
            # an in-place op's version counter is bumped after this returns (ADInplaceOrView)
            key = storage_key(o, o._version + 1 if inplace else o._version)
            self._insert(key, Recipe(func, ref_args, ref_kwargs, i, o, inplace, depth), o.untyped_storage())
        return out

    def watch(self, key: tuple, alive, callback) -> None:
        """Call ``callback()`` before any op writes to the storage version ``key`` (once), unless ``alive()``
        (a weak reference) is None by then."""
        self.watched.setdefault(key, []).append((alive, callback))
        self._watches = getattr(self, "_watches", 0) + 1
        if self._watches % _PRUNE_EVERY == 0:
            self.watched = {k: live for k, v in self.watched.items() if (live := [c for c in v if c[0]() is not None])}

    def _before_write(self, args, kwargs, written: tuple) -> None:
        hits: list = []

        def check(t):
            if type(t) in (torch.Tensor, torch.nn.Parameter) and t.layout == torch.strided:
                callbacks = self.watched.pop(storage_key(t), None)
                if callbacks:
                    hits.extend(callbacks)
            return t

        # only what the op writes: an in-place add_(a, b) reads b, which must not count as overwritten
        for position, name in written:
            value = args[position] if position < len(args) else kwargs.get(name)
            if value is not None:
                map_only(torch.Tensor, check, value)
        if hits:
            was, self.recording = self.recording, False
            try:
                with torch.no_grad():
                    for alive, callback in hits:
                        if alive() is not None:
                            callback()
            finally:
                self.recording = was

    def _ref(self, t: torch.Tensor) -> Ref:
        if (type(t) not in (torch.Tensor, torch.nn.Parameter) or t.layout != torch.strided or t.is_quantized
                or t.is_nested):
            raise _Unsupported
        weak = StorageWeakRef(t.untyped_storage())
        found = self.table.get(storage_key(t))
        recipe = found[0] if found is not None and found[1] == weak else None
        if recipe is not None and recipe.depth >= MAX_DEPTH:
            recipe = None
        return Ref(t, recipe, weak)

    def _insert(self, key, recipe, storage) -> None:
        self.table.pop(key, None)   # re-inserted last: the dict stays oldest-first
        self.table[key] = (recipe, StorageWeakRef(storage))
        self._inserts += 1
        if self._inserts % _PRUNE_EVERY == 0 or len(self.table) > MAX_RECIPES:
            self.table = {k: v for k, v in self.table.items() if not v[1].expired()}
            while len(self.table) > MAX_RECIPES:
                del self.table[next(iter(self.table))]

    def lookup(self, t: torch.Tensor, version: int | None = None) -> Recipe | None:
        """The recipe of ``t``'s storage at its current version (or ``version``), or None."""
        found = self.table.get(storage_key(t, version))
        if found is None or found[1] != StorageWeakRef(t.untyped_storage()):
            return None
        return found[0]

    def clear(self) -> None:
        self.table, self.watched = {}, {}


def _batch_norm_apply_args(args, out) -> tuple | None:
    """Arguments ``(weight, bias, running_mean, running_var, training)`` that make an eval-mode
    ``native_batch_norm`` give the bits of this training-mode call, or None where that is not known to hold.

    Why: recomputing in training mode collects the batch statistics again (a scalar double-precision pass,
    most of batch norm's time on the CPU); applying the saved ones is one elementwise pass. The CPU kernel
    for contiguous and channels-last inputs computes ``alpha = invstd * weight``, ``beta = bias - mean *
    alpha`` and ``x * alpha + beta``, with ``invstd`` the saved one in training and ``1 / sqrt(running_var +
    eps)`` in eval. An eval call with running variance ``1 - eps`` (so ``invstd`` is exactly 1), weight
    ``invstd * weight`` (the very product the kernel forms) and the same mean and bias therefore forms the same
    ``alpha`` and, by the same code (FMA-contracted or not), the same ``beta``. Other layouts go through a
    different formula, other dtypes through a wider ``alpha``, CUDA through other kernels: left in training
    mode."""
    x, weight, bias, eps = args[0], args[1], args[2], args[7]
    params = [p for p in (weight, bias) if p is not None]
    if (x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64) or x.dim() < 2
            or any(p.dtype != x.dtype or p.device != x.device or not p.is_contiguous() for p in params)):
        return None
    if not (x.is_contiguous() or (x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last))
            or (x.dim() == 5 and x.is_contiguous(memory_format=torch.channels_last_3d))):
        return None
    if not _applying_saved_statistics_is_exact(x.dtype):
        return None
    mean, invstd = out[1], out[2]
    channels = x.shape[1]
    if mean.shape != (channels,) or invstd.shape != (channels,):
        return None
    var = torch.ones((), dtype=x.dtype) - eps
    if float(var + eps) != 1.0:     # 1 - eps rounds so that adding eps back is exactly 1: invstd = 1 / 1
        return None
    with torch.no_grad():
        scale = invstd * weight if weight is not None else invstd.clone()
        consts = (scale, None if bias is None else bias.detach().clone(), mean.detach().clone(),
                  var.expand(channels).clone())
    return (*(None if c is None else _const_ref(c) for c in consts), False)


@functools.lru_cache(maxsize=None)
def _applying_saved_statistics_is_exact(dtype: torch.dtype) -> bool:
    """Once per process and dtype: does this build's batch norm kernel give the training-mode bits from the
    saved statistics (:func:`_batch_norm_apply_args`)? A probe over both layouts and many channels, so a build
    whose kernels differ from the ones read (another CPU architecture, a future torch) falls back to
    training-mode recompute instead of losing bit-identity."""
    gen = torch.Generator().manual_seed(0)
    for fmt in (torch.contiguous_format, torch.channels_last):
        x = (torch.randn(3, 67, 5, 7, generator=gen, dtype=dtype) * 7 + 3).contiguous(memory_format=fmt)
        w, b = torch.randn(67, generator=gen, dtype=dtype), torch.randn(67, generator=gen, dtype=dtype)
        args = (x, w, b, None, None, True, 0.1, 1e-5)
        out = torch.ops.aten.native_batch_norm(*args)
        mean, invstd = out[1], out[2]
        var = (torch.ones((), dtype=dtype) - 1e-5).expand(67).clone()
        again = torch.ops.aten.native_batch_norm(x, invstd * w, b, mean, var, False, 0.1, 1e-5)[0]
        width = {4: torch.int32, 8: torch.int64}[x.element_size()]
        if not torch.equal(out[0].view(width), again.view(width)):
            return False
    return True


def _const_ref(t: torch.Tensor) -> "Ref":
    """A :class:`Ref` to a small tensor the recipe owns (a copy, never a kept entry)."""
    return Ref(t, None, StorageWeakRef(t.untyped_storage()), const=t)


def _written_arguments(func) -> tuple:
    """(position, name) of the arguments ``func`` writes, from its schema (empty for a pure op)."""
    return tuple((i, a.name) for i, a in enumerate(func._schema.arguments)
                 if a.alias_info is not None and a.alias_info.is_write)


class _Unsupported(Exception):
    pass


def _refs(args, kwargs) -> list[Ref]:
    return leaves_of(Ref, (args, kwargs))


# ---------------------------------------------------------------------------------------------------------
# plans: what pack keeps instead of the data


class EntryLeaf:
    """A kept input: a live hook entry (restored, or recomputed itself, in backward) and the view of it."""

    __slots__ = ("entry", "size", "stride", "offset", "whole", "version")

    def __init__(self, entry, ref: Ref, whole: bool):
        self.entry, self.whole, self.version = entry, whole, ref.key[2]
        self.size, self.stride, self.offset = ref.size, ref.stride, ref.offset if whole else 0


class ParamLeaf:
    """A parameter (alive anyway), referenced weakly; its version must not change before backward."""

    __slots__ = ("param", "version")

    def __init__(self, ref: Ref):
        self.param, self.version = ref.param, ref.key[2]


class ConstLeaf:
    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


class OpNode:
    """One op to run again; ``args``/``kwargs`` hold leaves, :class:`ViewOf` nodes and plain values."""

    __slots__ = ("func", "args", "kwargs", "index", "size", "stride", "inplace", "users", "depth")

    def __init__(self, recipe: Recipe, args, kwargs):
        self.func, self.args, self.kwargs, self.index = recipe.func, args, kwargs, recipe.index
        self.size, self.stride, self.inplace = recipe.size, recipe.stride, recipe.inplace
        self.users = 0
        # ops run to rebuild this one, through recomputed entries too (see _arguments_in_order)
        self.depth = 1 + max((_leaf_depth(x) for x in leaves_of(_LEAVES, (args, kwargs))), default=0)


class ViewOf:
    """The view an op took of another op's (whole-storage) output."""

    __slots__ = ("node", "size", "stride", "offset")

    def __init__(self, node: OpNode, ref: Ref):
        self.node, self.size, self.stride, self.offset = node, ref.size, ref.stride, ref.offset


_LEAVES = (EntryLeaf, ParamLeaf, ConstLeaf, ViewOf)


class NotKept(Exception):
    """Some input of a recipe is not kept anyway: the tensor is stored instead."""


def build_plan(recipe: Recipe, find_entry) -> OpNode | None:
    """A plan recomputing ``recipe`` from kept tensors only, or None when some input is not kept.

    ``find_entry(ref)`` returns ``(entry, whole)`` for a live hook entry holding the exact values of ``ref``'s
    storage version (the same storage, ``ref.storage``, not only the same pointer), or ``(None, False)``.
    """
    memo: dict = {}
    try:
        return _plan(recipe, find_entry, memo)
    except NotKept:
        return None


def _plan(recipe: Recipe, find_entry, memo) -> OpNode:
    node = memo.get(id(recipe))
    if node is not None:
        node.users += 1
        return node

    def resolve(ref: Ref):
        entry, whole = find_entry(ref)
        if entry is not None:
            return EntryLeaf(entry, ref, whole)
        if ref.param is not None:
            p = ref.param()
            if p is None or p._version != ref.key[2]:
                raise NotKept
            return ParamLeaf(ref)
        if ref.const is not None:
            return ConstLeaf(ref.const)
        if ref.recipe is not None:
            return ViewOf(_plan(ref.recipe, find_entry, memo), ref)
        raise NotKept

    args, kwargs = map_only(Ref, resolve, (recipe.args, recipe.kwargs))
    node = OpNode(recipe, args, kwargs)
    node.users = 1
    memo[id(recipe)] = node
    return node


class Modified(RuntimeError):
    pass


def run_plan(node: OpNode, restore_entry) -> torch.Tensor:
    """Run ``node`` again (call under ``torch.no_grad()`` with recording off). ``restore_entry(leaf)`` returns
    the tensor an :class:`EntryLeaf` stands for (never to be modified). Returns the op's output: a fresh
    tensor spanning its storage, with the forward's size and stride."""
    out, _owned = _run(node, restore_entry, {})
    return out


def _value(x, restore_entry, memo):
    """(tensor, owned): owned means freshly computed and used only here, so an in-place op may reuse it."""
    if isinstance(x, EntryLeaf):
        return restore_entry(x), False
    if isinstance(x, ParamLeaf):
        p = x.param()
        if p is None or p._version != x.version:
            raise Modified("memsim recompute: a parameter needed to recompute a saved activation was freed or "
                           "modified by an inplace operation before backward")
        return p.detach(), False
    if isinstance(x, ConstLeaf):
        return x.value, False
    if isinstance(x, ViewOf):
        base, owned = _run(x.node, restore_entry, memo)
        if tuple(base.shape) == x.size and tuple(base.stride()) == x.stride and x.offset == 0:
            return base, owned
        return base.as_strided(x.size, x.stride, x.offset), owned
    return x, False


def _leaf_depth(x) -> int:
    if isinstance(x, ViewOf):
        return x.node.depth
    if isinstance(x, EntryLeaf) and x.entry.exact is not None and x.entry.exact.kind == "recompute":
        return x.entry.exact.plan.depth
    return 0


def _arguments_in_order(node: OpNode, restore_entry, memo):
    """``node``'s arguments with every leaf replaced by its tensor, and the owned flag of each leaf.

    Leaves are evaluated deepest first (then in argument order): the residual add of block k takes
    ``bn3(conv3)`` and block k-1's output; rebuilding k-1 first (and k-2 inside it, ...) holds one block
    output per level of a stage's chain, where argument order would hold one ``bn3`` output per level as well
    (seven 24.5 MiB tensors at once in ResNet-50's third stage at batch 32)."""
    leaves = leaves_of(_LEAVES, (node.args, node.kwargs))
    values: list = [None] * len(leaves)
    owned: list[bool] = [False] * len(leaves)
    for i in sorted(range(len(leaves)), key=lambda i: -_leaf_depth(leaves[i])):
        values[i], owned[i] = _value(leaves[i], restore_entry, memo)
    it = iter(values)
    args, kwargs = map_only(_LEAVES, lambda _: next(it), (node.args, node.kwargs))
    return args, kwargs, owned


def _run(node: OpNode, restore_entry, memo):
    done = memo.get(id(node))
    if done is not None:
        return done, False
    args, kwargs, owned_flags = _arguments_in_order(node, restore_entry, memo)
    if node.inplace:
        first = node.args[0]
        first_owned = owned_flags[0] if owned_flags else False
        if not (first_owned and isinstance(first, ViewOf)):
            # never modify a stored, cached or shared tensor: work on a copy (clone keeps the strides)
            args = (args[0].clone(), *args[1:])
    result = _rerun(node.func, args, kwargs)
    out = result[node.index] if isinstance(result, (tuple, list)) else result
    if tuple(out.stride()) != node.stride or tuple(out.shape) != node.size or out.storage_offset() != 0:
        out = torch.empty_strided(node.size, node.stride, dtype=out.dtype, device=out.device).copy_(out)
    if node.users > 1:
        memo[id(node)] = out
        return out, False
    return out, True


_MAX_POOL = torch.ops.aten.max_pool2d_with_indices.default
#: Bytes of input converted to channels-last at a time when max-pool is rerun (see _rerun).
_MAX_POOL_CHUNK_BYTES = 1 << 20


def _rerun(func, args, kwargs):
    """``func(*args, **kwargs)``, or the same bits computed faster.

    Max-pool with indices on a contiguous (NCHW) CPU tensor: ATen's NCHW kernel is scalar, its channels-last
    kernel vectorised (ResNet-50's stem pool, batch 8: 31-35 ms against 5 ms). Both scan each window in the same
    order and keep the first maximum (NaN wins), so values and indices are equal to the bit, ties included;
    :func:`_max_pool_in_channels_last_is_exact` checks that once per process. The input is converted a block
    of channels at a time, so the rerun needs about ``_MAX_POOL_CHUNK_BYTES`` more than the op itself."""
    if (func is _MAX_POOL and not kwargs and args[0].device.type == "cpu" and args[0].dim() == 4
            and args[0].dtype in (torch.float32, torch.float64) and args[0].is_contiguous()
            and _max_pool_in_channels_last_is_exact(args[0].dtype)):
        return _max_pool_by_channels_last_chunks(args[0], args[1:])
    return func(*args, **kwargs)


def _max_pool_by_channels_last_chunks(x: torch.Tensor, rest: tuple):
    """Max-pool with indices of NCHW ``x``, run on channels-last copies of one sample's block of channels at a
    time (at most ``_MAX_POOL_CHUNK_BYTES``, a multiple of 16 channels where it can), written into NCHW
    outputs."""
    plane = max(1, x[0, 0].numel() * x.element_size())
    block = min(x.shape[1], max(1, _MAX_POOL_CHUNK_BYTES // plane))
    if block > 16:
        block -= block % 16
    values = indices = None
    for n in range(x.shape[0]):
        for c in range(0, x.shape[1], block):
            v, k = _MAX_POOL(x[n:n + 1, c:c + block].contiguous(memory_format=torch.channels_last), *rest)
            if values is None:
                values = torch.empty((x.shape[0], x.shape[1], *v.shape[2:]), dtype=v.dtype)
                indices = torch.empty((x.shape[0], x.shape[1], *k.shape[2:]), dtype=k.dtype)
            values[n:n + 1, c:c + block].copy_(v)
            indices[n:n + 1, c:c + block].copy_(k)
    return values, indices


@functools.lru_cache(maxsize=None)
def _max_pool_in_channels_last_is_exact(dtype: torch.dtype) -> bool:
    """Once per process and dtype: do the NCHW and channels-last max-pool kernels agree on values and
    indices, with ties (ReLU zeros) and NaN?"""
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(-2, 3, (3, 19, 11, 13), generator=gen).to(dtype).relu_()
    x[0, 0, 0, :4] = float("nan")
    width = {4: torch.int32, 8: torch.int64}[x.element_size()]
    for rest in (([3, 3], [2, 2], [1, 1], [1, 1], False), ([2, 2], [1, 1], [0, 0], [2, 2], True)):
        a = _MAX_POOL(x, *rest)
        b = _max_pool_by_channels_last_chunks(x, rest)
        if not (torch.equal(a[0].view(width), b[0].view(width)) and torch.equal(a[1], b[1])
                and a[0].stride() == b[0].stride()):
            return False
    return True


class Recomputed:
    """The stored form of a recomputed tensor (0 bytes): a plan, and the view of the op's output the saved
    tensor is (``whole``: it spans the output's storage; else the region ``size, stride, offset``)."""

    kind = "recompute"
    nbytes = 0
    __slots__ = ("hooks", "plan", "size", "stride", "offset", "whole", "numel", "__weakref__")

    def __init__(self, hooks, plan: OpNode, t: torch.Tensor, whole: bool):
        self.hooks, self.plan, self.whole = hooks, plan, whole
        self.size, self.stride, self.offset = tuple(t.shape), tuple(t.stride()), t.storage_offset()
        self.numel = t.untyped_storage().nbytes() // t.element_size()

    def restore(self) -> torch.Tensor:
        """The flat run the hooks would have stored (see ``_Hooks._flat``)."""
        out = self.hooks.recompute(self)
        if self.whole:
            return out.as_strided((self.numel,), (1,), 0)
        return out.as_strided(self.size, self.stride, self.offset).reshape(-1)


def _walk(node: OpNode, on_node=None, on_leaf=None, seen: set | None = None) -> None:
    """Visit each op of a plan once, inputs first: ``on_leaf(leaf)`` for its entry leaves, then
    ``on_node(node)``. (Module-level recursion, not a nested closure calling itself: that closure would be a
    reference cycle holding ``on_leaf``'s list of entries until the cyclic garbage collector runs.)"""
    seen = set() if seen is None else seen
    if id(node) in seen:
        return
    seen.add(id(node))
    for x in leaves_of((ViewOf, EntryLeaf), (node.args, node.kwargs)):
        if isinstance(x, ViewOf):
            _walk(x.node, on_node, on_leaf, seen)
        elif isinstance(x, EntryLeaf) and on_leaf is not None:
            on_leaf(x)
    if on_node is not None:
        on_node(node)


def plan_leaves(node: OpNode) -> list[EntryLeaf]:
    """The :class:`EntryLeaf` leaves of a plan."""
    out: list = []
    _walk(node, on_leaf=out.append)
    return out


def plan_ops(node: OpNode) -> list[str]:
    """The ops a plan runs, inputs first (for tests and stats)."""
    out: list[str] = []
    _walk(node, on_node=lambda n: out.append(op_packet(str(n.func))))
    return out


__all__ = ["RecipeRecorder", "Recipe", "Recomputed", "Ref", "build_plan", "run_plan", "plan_ops", "storage_key",
           "MAX_DEPTH", "MAX_RECIPES"]
