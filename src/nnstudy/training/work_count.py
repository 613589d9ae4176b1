"""What one forward pass does, counted per operation, not timed: FLOPs by operation, and the values written.

torch's FlopCounterMode counts the same FLOPs (its formulas, `flop_registry`,
are the ones used here), but every TorchDispatchMode subclass torch defines
imports torch._dynamo on its first operation (it switches the compiler off
inside `__torch_dispatch__`): about 2 s of CPU at every study's start-up, for a
compiler nnstudy never runs under this mode. This one mode counts both, and
tells torch there is nothing to switch off.
"""

from __future__ import annotations

from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import flop_registry

# Questions about a tensor, not operations on it: no FLOPs, nothing written (FlopCounterMode passes them on too).
_METADATA = {getattr(torch.ops.aten, op).default for op in (
    "is_contiguous", "is_strides_like_format", "is_non_overlapping_and_dense", "size", "sym_size", "stride",
    "sym_stride", "storage_offset", "sym_storage_offset", "numel", "sym_numel", "dim")} | {torch.ops.prim.layout.default}


class WorkCounter(TorchDispatchMode):
    """`with WorkCounter() as work: model(x)`; then `work.flops` (by operation name), `work.elements`.

    FLOPs as FlopCounterMode counts them: an operation without a formula is
    decomposed into ones that may have one. Values written: every operation's
    outputs as called (before that decomposition), views (outputs aliasing an
    input, nothing written) excluded.
    """

    def __init__(self):
        super().__init__()
        self.flops: Counter[str] = Counter()
        self.elements = 0
        self._decomposing = 0  # > 0: inside a decomposition, whose pieces were counted as the whole

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False  # nothing is compiled under this mode: no need to import the compiler to disable it

    @property
    def total_flops(self) -> int:
        return sum(self.flops.values())

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _METADATA:
            return NotImplemented
        packet = func._overloadpacket
        out = NotImplemented
        if packet not in flop_registry and func is not torch.ops.prim.device.default:
            self._decomposing += 1
            try:
                with self:
                    out = func.decompose(*args, **kwargs)
            finally:
                self._decomposing -= 1
        if out is NotImplemented:
            out = func(*args, **kwargs)
            if packet in flop_registry:
                self.flops[str(packet)] += flop_registry[packet](*args, **kwargs, out_val=out)
        if not self._decomposing and not any(r.alias_info is not None and not r.alias_info.is_write
                                             for r in func._schema.returns):
            self.elements += sum(t.numel() for t in tree_leaves(out) if torch.is_tensor(t))
        return out
