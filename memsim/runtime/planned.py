"""Apply a :class:`memsim.simulation.plan.Plan` for real: each saved tensor gets the storage the plan chose
for it, matched by what made its storage — (module path, aten op, output index), the key both a trace and
:class:`memsim.runtime.producers.ProducerMap` give a storage.

Example:
    >>> rules = PlanRules({("layer1.0.bn1", "aten.native_batch_norm.default", 0): "recompute"})
    >>> rules.kind(("layer1.0.bn1", "aten.native_batch_norm.default", 0)), rules.kind(("fc", "aten.addmm.default", 0))
    ('recompute', 'dense')
"""
from __future__ import annotations

from collections import Counter, defaultdict

from memsim.core.errors import InputError

#: Storage kinds a plan may choose, as :mod:`memsim.simulation.policies` names them.
PLAN_KINDS = ("dense", "bitmap", "mask", "narrow-int", "recompute", "checkpoint")


class PlanRules:
    """Per producer key, the storage kind a plan chose ("dense" for keys the plan leaves alone), and the
    blocks it checkpoints.

    A key made twice in a step (a module called twice) takes the kind the plan chose most often for it.
    """

    def __init__(self, kinds: dict[tuple[str, str, int], str], checkpoint_blocks=()):
        for key, kind in kinds.items():
            if kind not in PLAN_KINDS:
                raise InputError(f"plan entry {key} has kind {kind!r}; valid kinds: {', '.join(PLAN_KINDS)}")
        self.kinds = dict(kinds)
        #: module paths of the blocks the plan runs checkpointed (their saved tensors never reach the hooks)
        self.checkpoint_blocks = list(checkpoint_blocks)

    @classmethod
    def from_plan(cls, plan) -> "PlanRules":
        """From a :class:`~memsim.simulation.plan.Plan` (or its ``to_dict()``)."""
        data = plan.to_dict() if hasattr(plan, "to_dict") else plan
        if not isinstance(data, dict) or "entries" not in data:
            raise InputError("expected a memsim plan (memsim.profile(..., policy='plan').results['plan'].plan "
                             "or its to_dict()), got " + type(plan).__name__)
        votes: dict[tuple, Counter] = defaultdict(Counter)
        for e in data["entries"]:
            votes[(e["module"], e["op"], int(e["output_index"]))][e["kind"]] += 1
        blocks = data.get("checkpoint_blocks") or sorted({e["block"] for e in data["entries"] if e.get("block")})
        return cls({key: c.most_common(1)[0][0] for key, c in votes.items()}, blocks)

    def kind(self, key: tuple[str, str, int] | None) -> str:
        """The kind for a producer key (None: made outside the block, e.g. an input: "dense")."""
        return self.kinds.get(key, "dense") if key is not None else "dense"

    def __len__(self) -> int:
        return len(self.kinds)
