"""The dispatch-mode recorder: every aten op of the step, every storage once, its birth and death.

Cost is O(ops + tensor arguments): a storage is looked up by its C++ address when an op reads or makes it,
and its death is reported by a weakref callback on the storage object (torch keeps one Python object per
storage for as long as the storage lives), so nothing is scanned per op.
"""
from __future__ import annotations

import weakref
from typing import Callable

from memsim.core.categories import Category, Phase
from memsim.core.timeline import OpRecord


#: Answer repeated ops from memsim's shape-keyed cache in front of FakeTensorMode's (switch off to compare).
FAST_CACHE = True


class StorageEntry:
    """A storage seen during tracing (mutable; becomes a :class:`memsim.core.timeline.TensorRecord`)."""

    __slots__ = ("nbytes", "dtype", "shape", "category", "birth", "death", "module", "op", "name",
                 "saved_by", "uses", "param", "output_index", "writes")

    def __init__(self, nbytes, dtype, shape, birth, category=None, module="", op="", name=""):
        self.nbytes = nbytes
        self.dtype = dtype
        self.shape = shape
        self.category = category
        self.birth = birth
        self.death = -1          # -1: still alive
        self.module = module
        self.op = op
        self.name = name
        self.saved_by: list[int] = []
        self.uses: list[int] = []
        self.param = ""          # for optimizer state: the parameter it belongs to
        self.output_index = 0    # which of its op's outputs made it
        self.writes: list[int] = []  # in-place ops that wrote it (it was their first argument)


class OpFailed(Exception):
    """An op raised while tracing; carries where (module path, op name) for the user's error message."""

    def __init__(self, op: str, module: str, error: BaseException):
        super().__init__(f"{op} in module '{module or '(top level)'}': {type(error).__name__}: {error}")
        self.op, self.module, self.error = op, module, error


def _dtype_name(dtype) -> str:
    return str(dtype).replace("torch.", "")


def _tensors(obj, out: list) -> list:
    """Tensors among ``obj``'s leaves (tensors, lists/tuples of tensors, dict values); no pytree for speed."""
    import torch

    if isinstance(obj, torch.Tensor):
        out.append(obj)
    elif isinstance(obj, (list, tuple)):
        for x in obj:
            if isinstance(x, torch.Tensor):
                out.append(x)
            elif isinstance(x, (list, tuple, dict)):
                _tensors(x, out)
    elif isinstance(obj, dict):
        for x in obj.values():
            _tensors(x, out)
    return out


#: In-place ops that change their tensor's shape or strides: never answered from the fast cache.
_RESHAPING = {"resize_", "resize_as_", "set_", "as_strided_", "squeeze_", "unsqueeze_", "transpose_",
              "t_", "swapdims_", "swapaxes_", "detach_", "resize_as_sparse_"}
_KINDS: dict = {}


def op_kind(func):
    """"fresh" (returns new tensors only), "inplace" (mutates and returns its first argument) or None, from
    the op's schema (cached per op)."""
    kind = _KINDS.get(func, 0)
    if kind != 0:
        return kind
    kind = None
    try:
        schema = func._schema
        rets = schema.returns
        tensor_rets = all(str(r.type) == "Tensor" for r in rets) and len(rets) > 0
        written = [a for a in schema.arguments if a.alias_info is not None and a.alias_info.is_write]
        aliased = [a for a in schema.arguments if a.alias_info is not None]
        if tensor_rets and not aliased and all(r.alias_info is None for r in rets):
            kind = "fresh"
        elif (tensor_rets and len(rets) == 1 and len(written) == 1 and written == aliased[:1]
              and schema.arguments[0] is written[0] and rets[0].alias_info is not None
              and schema.name.split("::")[-1] not in _RESHAPING and not schema.overload_name.startswith("out")):
            kind = "inplace"
    except Exception:  # noqa: BLE001 - unknown schema shape: slow path
        kind = None
    _KINDS[func] = kind
    return kind


def forget_op_kind(func) -> None:
    """Never answer ``func`` from the fast cache again (its schema says "fresh" but it aliases)."""
    _KINDS[func] = None


def _arg_key(a, fake_type):
    """A hashable key of an op argument for the fast cache (KeyError for a tensor that is not fake)."""
    import torch

    if isinstance(a, torch.Tensor):
        if type(a) is not fake_type:
            raise KeyError
        return (a.shape, a.stride(), a.dtype, a.storage_offset())
    if isinstance(a, (list, tuple)):
        return tuple(_arg_key(x, fake_type) for x in a)
    hash(a)
    return a


def _storage_matches(t) -> bool:
    """Whether ``t`` covers its whole storage from offset 0 (then a cached result can be rebuilt from shape
    and strides alone)."""
    if t.storage_offset() != 0:
        return False
    n = t.numel()
    need = 0 if n == 0 else (1 + sum((sz - 1) * st for sz, st in zip(t.shape, t.stride()))) * t.element_size()
    return t.untyped_storage().nbytes() == need


class _Bookkeeping:
    """The recorder's state and its storage and module bookkeeping (the fake mode itself is built on first
    use by :func:`make_recorder_class`, so that importing memsim does not import torch)."""

    def _init_bookkeeping(self, rules, current_node) -> None:
        self._current_node = current_node         # torch._C._current_autograd_node
        self._depth = 0
        self._fast: dict = {}
        self.ops: list[OpRecord] = []
        self.entries: list[StorageEntry] = []
        self.live: dict[int, int] = {}           # storage address -> entry index
        self._refs: dict[int, tuple] = {}        # id(weakref) -> (weakref, address)
        self.phase = Phase.FORWARD
        self.module_stack: list[str] = [""]
        self.op_seq: list[int] = []              # autograd sequence number when each op started
        self.node_of_seq: dict[int, int] = {}    # autograd node sequence number -> graph node id
        self.node_module: dict[int, str] = {}    # graph node id -> module path
        self.param_module: dict[int, str] = {}   # id(parameter) -> owning module path
        self.rules = rules
        self.quiet = False
        self.last_op = ""

    # ---- storages ----
    def _on_death(self, ref) -> None:
        _, address = self._refs.pop(id(ref))
        index = self.live.pop(address, None)
        if index is not None:
            e = self.entries[index]
            e.death = max(len(self.ops) - 1, e.birth)

    def register(self, t, birth: int, category=None, module: str = "", op: str = "", name: str = "") -> int:
        """Entry index of ``t``'s storage, creating the entry (born at ``birth``) if it is new."""
        st = t.untyped_storage()
        address = st._cdata
        index = self.live.get(address)
        if index is not None:
            return index
        index = len(self.entries)
        self.entries.append(StorageEntry(st.nbytes(), _dtype_name(t.dtype), tuple(t.shape), birth,
                                         category, module, op, name))
        self.live[address] = index
        ref = weakref.ref(st, self._on_death)
        self._refs[id(ref)] = (ref, address)
        return index

    def index_of(self, t) -> int | None:
        return self.live.get(t.untyped_storage()._cdata)

    def add_workspace(self, nbytes: int, op_index: int, label: str, module: str) -> int:
        """Add a kernel workspace of ``nbytes`` alive during op ``op_index`` only; returns its entry index."""
        e = StorageEntry(int(nbytes), "uint8", (int(nbytes),), op_index, Category.WORKSPACE, module,
                         self.ops[op_index].name, label)
        e.death = op_index
        self.entries.append(e)
        return len(self.entries) - 1

    # ---- where are we ----
    def current_module(self) -> str:
        """The module path the running op belongs to (in backward: the module of the autograd node)."""
        if self.phase is Phase.BACKWARD:
            node = self._current_node()
            if node is None:
                return ""
            nid = self.node_of_seq.get(node._sequence_nr())
            if nid is not None:
                return self.node_module.get(nid, "")
            var = getattr(node, "variable", None)      # AccumulateGrad: the parameter's module
            return self.param_module.get(id(var), "") if var is not None else ""
        return self.module_stack[-1]

    def push_module(self, path: str) -> None:
        self.module_stack.append(path)

    def pop_module(self) -> None:
        if len(self.module_stack) > 1:
            self.module_stack.pop()


def make_recorder_class():
    """Build the recording FakeTensorMode subclass (torch is imported only when tracing).

    Recording inside the fake mode itself (rather than in a second mode stacked above it) halves the
    Python dispatch work per op. Ops the fake mode runs while handling an op (decompositions) are not
    recorded separately: the op that the program called owns their memory, as on the real backend.
    """
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    aten = torch.ops.aten
    ignored = {torch.ops.prim.device.default, aten.sym_size.int, aten.sym_stride.int, aten.sym_numel.default,
               aten.sym_storage_offset.default, aten.is_same_size.default}
    local_scalar = aten._local_scalar_dense.default
    fake_dispatch = FakeTensorMode.__torch_dispatch__
    seq_nr = torch._C._autograd._get_sequence_nr
    try:
        from torch.utils.flop_counter import flop_registry
    except ImportError:  # pragma: no cover - older torch
        flop_registry = {}

    from torch._subclasses.fake_tensor import FakeTensor

    cpu = torch.device("cpu")
    meta_empty = torch.empty_strided

    def arg_key(a):
        return _arg_key(a, FakeTensor)

    class Recorder(_Bookkeeping, FakeTensorMode):
        """A FakeTensorMode (fake CPU tensors) that records ops and storages; see the module docstring.
        ``rules`` adds backend workspaces."""

        def __init__(self, rules=None):
            super().__init__(allow_non_fake_inputs=True)
            self._init_bookkeeping(rules, torch._C._current_autograd_node)

        # ---- a cache in front of FakeTensorMode's ----
        def _fast_dispatch(self, func, types, args, kwargs):
            """Answer a repeated op from a small cache keyed on shapes (much cheaper than FakeTensorMode's
            general cache key); the first call of each key goes through FakeTensorMode and is checked."""
            kind = op_kind(func) if FAST_CACHE else None
            if kind is None:
                return fake_dispatch(self, func, types, args, kwargs)
            try:
                key = (func, arg_key(args), arg_key(tuple(sorted(kwargs.items()))) if kwargs else None)
            except (KeyError, TypeError):
                return fake_dispatch(self, func, types, args, kwargs)
            hit = self._fast.get(key)
            if hit is not None:
                if hit is True:
                    return args[0]
                outs = [FakeTensor(self, meta_empty(shape, stride, dtype=dtype, device="meta"), cpu)
                        for shape, stride, dtype in hit[1]]
                return tuple(outs) if hit[0] else outs[0]
            out = fake_dispatch(self, func, types, args, kwargs)
            if kind == "inplace":
                first = args[0]
                if out is first:
                    self._fast[key] = True
                return out
            many = isinstance(out, tuple)
            outs = out if many else (out,)
            if all(type(t) is FakeTensor and t.fake_mode is self and t.device == cpu and _storage_matches(t)
                   for t in outs):
                # Some schemas say "fresh" but alias (aten._unsafe_view): never cache those ops.
                inputs = {t.untyped_storage()._cdata for t in _tensors(args, [])}
                if any(t.untyped_storage()._cdata in inputs for t in outs):
                    forget_op_kind(func)
                else:
                    self._fast[key] = (many, [(t.shape, t.stride(), t.dtype) for t in outs])
            return out

        # ---- the mode ----
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is local_scalar:
                # A fake tensor has no value; documented fallback: .item() reads 1 (True for bool).
                dtype = args[0].dtype
                return True if dtype is torch.bool else (1.0 if dtype.is_floating_point else 1)
            if self._depth or self.quiet or func in ignored or func.namespace in ("profiler", "prim"):
                return fake_dispatch(self, func, types, args, kwargs)
            kwargs = kwargs or {}
            index = len(self.ops)
            module = self.current_module()
            name = str(func)
            self.last_op = name
            self.ops.append(OpRecord(name, self.phase, module))
            self.op_seq.append(seq_nr())
            inputs = _tensors(args, [])
            if kwargs:
                _tensors(kwargs, inputs)
            live, entries = self.live, self.entries
            for t in inputs:
                i = live.get(t.untyped_storage()._cdata)
                if i is None:   # a tensor the step did not make and memsim did not register: pre-existing
                    i = self.register(t, 0, Category.BUFFER, module, "", "(untracked)")
                entries[i].uses.append(index)
            if inputs and op_kind(func) == "inplace" and args and args[0] is inputs[0]:
                entries[live[inputs[0].untyped_storage()._cdata]].writes.append(index)
            self._depth += 1
            try:
                out = self._fast_dispatch(func, types, args, kwargs)
            except Exception as e:  # noqa: BLE001 - re-raised with where it happened
                raise OpFailed(name, module, e) from e
            finally:
                self._depth -= 1
            for position, t in enumerate(_tensors(out, [])):
                i = live.get(t.untyped_storage()._cdata)
                if i is None:
                    entries[self.register(t, index, None, module, name)].output_index = position
            if self.rules is not None:
                self.rules.on_op(self, index, func, args, kwargs, out)
            fn = flop_registry.get(func._overloadpacket)
            if fn is not None:
                try:
                    self.ops[index].flops = int(fn(*args, **kwargs, out_val=out))
                except Exception:  # noqa: BLE001 - FLOPs are informative only
                    pass
            return out

    return Recorder


_RECORDER: Callable | None = None


def Recorder(rules=None):  # noqa: N802 - behaves like the class
    """A new recorder mode (the class is built on first use so importing memsim does not import torch)."""
    global _RECORDER
    if _RECORDER is None:
        _RECORDER = make_recorder_class()
    return _RECORDER(rules)
