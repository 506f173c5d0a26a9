"""Which module and op made each storage during a real forward pass: the key a :class:`memsim.Trace` gives its
activations (module path, aten op, output index), so measurements and plans made on a trace can be matched
with the tensors of a real run.

Example:
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU())
    >>> with ProducerMap(model) as producers:
    ...     y = model(torch.randn(2, 4))
    >>> producers.of(y)
    ('1', 'aten.relu.default', 0)
"""
from __future__ import annotations

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from memsim.runtime.recompute import leaves_of


class ProducerMap(TorchDispatchMode):
    """Dispatch mode + global module hooks: remembers ``(module path, op, output index)`` per CPU or CUDA
    storage made inside the block (the first op that made it; in-place ops keep the maker). Module paths are
    those of ``model`` (default: the first module called in the block). Parameters and buffers of ``model``
    are never recorded. An address freed and reused by a new storage is a new entry."""

    def __init__(self, model: torch.nn.Module | None = None):
        super().__init__()
        self.names = {m: n for n, m in model.named_modules()} if model is not None else {}
        self.skip = set()
        if model is not None:
            self.skip = {t.untyped_storage().data_ptr() for t in (*model.parameters(), *model.buffers())}
        self.module_stack: list[str] = [""]
        self._made: dict[int, tuple[str, str, int, StorageWeakRef]] = {}
        self._hooks: list = []

    @property
    def current_module(self) -> str:
        return self.module_stack[-1]

    def of(self, t: torch.Tensor) -> tuple[str, str, int] | None:
        """``(module path, aten op, output index)`` that made ``t``'s storage, or None (made outside)."""
        storage = t.untyped_storage()
        made = self._made.get(storage.data_ptr())
        if made is None or made[3].expired():
            return None
        return made[:3]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        leaves = leaves_of(torch.Tensor, out)   # not torch's pytree: see recompute.map_only
        for position, t in enumerate(leaves):
            if t.is_meta:
                continue
            storage = t.untyped_storage()
            ptr = storage.data_ptr()
            known = self._made.get(ptr)
            if (known is None or known[3].expired()) and ptr not in self.skip:
                self._made[ptr] = (self.module_stack[-1], str(func), position, StorageWeakRef(storage))
        return out

    def __enter__(self):
        def pre(mod, _):
            if not self.names and len(self.module_stack) == 1:  # the first module called is the root
                self.names = {m: n for n, m in mod.named_modules()}
            self.module_stack.append(self.names.get(mod, self.module_stack[-1]))

        def post(mod, _, __):
            self.module_stack.pop()

        self._hooks = [torch.nn.modules.module.register_module_forward_pre_hook(pre),
                       torch.nn.modules.module.register_module_forward_hook(post)]
        return super().__enter__()

    def __exit__(self, *exc):
        try:
            return super().__exit__(*exc)
        finally:
            for h in self._hooks:
                h.remove()
            self._hooks = []
