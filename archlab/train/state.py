"""The training loop's state: where a run is and what it has seen, as one typed record.

:class:`TrainState` is what :func:`archlab.train.engine.fit` advances and what a checkpoint stores
as its ``progress`` (plain numbers and lists, loadable with ``torch.load(weights_only=True)``), so
a resumed run continues at the same epoch and step with the same partial sums, history and
best-epoch bookkeeping.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from torch import Tensor

from archlab.train.config import TrainConfig
from archlab.train.metrics import metric_spec

__all__ = ["TrainState"]


@dataclass
class TrainState:
    """Position and bookkeeping of one run.

    Attributes:
        epoch: epoch in progress (0-based).
        step: next step inside that epoch.
        global_step: optimizer steps taken in all.
        best_value: best validation value of ``config.monitor`` so far (the metric's worst at start).
        best_epoch: 1-based epoch of ``best_value`` (0: none yet).
        bad_epochs: epochs since the last improvement (early stopping).
        history: one row per finished epoch (train loss/accuracy, val metrics, lr, seconds).
        train_seconds: training wall time, all attempts of a resumed run added.
        loss_sum / correct / seen: the epoch's partial training sums up to ``step`` (written at
            each snapshot, so a resume mid-epoch continues them).
        stopped_early: early stopping ended the run.
        gates: per-epoch gate values (:class:`archlab.train.hooks.GateRecorder`), kept here so a
            resumed run keeps the earlier epochs.
        best_weights: the best epoch's weights, in memory only (``best.safetensors`` holds them
            on disk); not part of :meth:`progress`.
    """

    epoch: int = 0
    step: int = 0
    global_step: int = 0
    best_value: float = float("nan")
    best_epoch: int = 0
    bad_epochs: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    stopped_early: bool = False
    gates: list[dict[str, Any]] = field(default_factory=list)
    best_weights: dict[str, Tensor] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def start(cls, config: TrainConfig) -> TrainState:
        """The state of a run that has not trained yet."""
        return cls(best_value=metric_spec(config.monitor).worst)

    def progress(self) -> dict[str, Any]:
        """The checkpoint's ``progress`` entry: every field but ``best_weights``, by name."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "best_weights"}

    def restore(self, progress: dict[str, Any]) -> None:
        """Continue from a checkpoint's ``progress`` (keys this version does not know are ignored)."""
        for f in fields(self):
            if f.name != "best_weights" and f.name in progress:
                setattr(self, f.name, progress[f.name])
