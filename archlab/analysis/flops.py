"""FLOP counting with ``torch.utils.flop_counter``'s formulas, without importing ``torch._dynamo``.

``torch.utils.flop_counter.FlopCounterMode`` dispatches through a ``TorchDispatchMode`` whose
``__torch_dispatch__`` torch wraps in a lazy ``torch._dynamo.disable``: the first count in a
process imports ``torch._dynamo`` (0.8 s on a 2-core CPU). Every study run counts its model's FLOPs
and every study resolves its speed options from them, so that import was paid by the study process
and by every worker. :class:`FlopCounter` applies the same formulas (``flop_registry``) to the same
aten ops, with the same decomposition rule, in a dispatch mode that opts out of that wrapper: the
counts are equal to ``FlopCounterMode``'s (``tests/analysis/test_flops.py`` checks every registered
model), and :func:`count_flops` falls back to ``FlopCounterMode`` itself should a future torch
change the internals this relies on.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch
from torch import nn

__all__ = ["FlopCounter", "count_flops"]

try:  # torch internals (present since torch 2.1); without them, FlopCounterMode is used
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import flop_registry as _REGISTRY

    _OK = hasattr(TorchDispatchMode, "_should_skip_dynamo") and isinstance(_REGISTRY, dict)
except ImportError:  # pragma: no cover - older/newer torch
    TorchDispatchMode, _REGISTRY, _OK = object, {}, False

_aten = torch.ops.aten
#: metadata queries FlopCounterMode leaves to the default implementation (as it does)
_SKIP = frozenset(
    getattr(getattr(_aten, name, None), "default", None)
    for name in ("sym_is_contiguous", "is_contiguous", "is_strides_like_format", "is_non_overlapping_and_dense",
                 "size", "sym_size", "stride", "sym_stride", "storage_offset", "sym_storage_offset", "numel",
                 "sym_numel", "dim")
) | {getattr(_aten.is_contiguous, "memory_format", None), torch.ops.prim.layout.default} - {None}


class FlopCounter(TorchDispatchMode):  # type: ignore[misc,valid-type]
    """Counts FLOPs per aten op of everything run inside ``with FlopCounter() as c:``.

    Attributes:
        counts: op overload packet -> FLOPs (multiply-add = 2), as ``FlopCounterMode``'s "Global".
    """

    @classmethod
    def _should_skip_dynamo(cls) -> bool:  # no lazy torch._dynamo wrapper around __torch_dispatch__
        return False

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[Any, int] = defaultdict(int)

    @property
    def total(self) -> int:
        return int(sum(self.counts.values()))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: D105
        kwargs = kwargs or {}
        if func in _SKIP:
            return NotImplemented
        if isinstance(func, torch._ops.HigherOrderOperator):
            raise NotImplementedError(f"{func} (a higher-order op): use torch.utils.flop_counter.FlopCounterMode")
        # as FlopCounterMode: an op without a formula is decomposed when it can be (its parts are counted)
        if func not in _REGISTRY and func is not torch.ops.prim.device.default:
            with self:
                r = func.decompose(*args, **kwargs)
                if r is not NotImplemented:
                    return r
        out = func(*args, **kwargs)
        packet = func._overloadpacket
        if packet in _REGISTRY:
            self.counts[packet] += _REGISTRY[packet](*args, **kwargs, out_val=out)
        return out


def count_flops(model: nn.Module, *inputs: torch.Tensor) -> dict[str, int]:
    """FLOPs of ``model(*inputs)`` per aten op, e.g. ``{"aten.convolution": ..., "aten.addmm": ...}``.

    Runs the forward pass as it is called (the caller chooses ``no_grad``/``eval``).
    """
    if _OK:
        try:
            with FlopCounter() as counter:
                model(*inputs)
            return {str(k): int(v) for k, v in counter.counts.items()}
        except NotImplementedError:
            pass
    from torch.utils.flop_counter import FlopCounterMode

    mode = FlopCounterMode(display=False)
    with mode:
        model(*inputs)
    return {str(k): int(v) for k, v in mode.get_flop_counts().get("Global", {}).items()}
