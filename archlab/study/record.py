"""One stored run as the statistics, the report, the analyses and the CLI read it.

:meth:`archlab.study.store.StudyStore.rows` returns a :class:`RunRecord` per run; everything that
reads results reads these fields (``record.test["accuracy"]``, ``record.status``), never a dict
of string keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["RunRecord"]


@dataclass(frozen=True)
class RunRecord:
    """A run of one (dataset, variant, seed) and what it stored.

    Attributes:
        dataset: dataset label; variant: variant name; seed: the run's seed.
        status: ``done``, ``failed``, ``pending`` or ``running``.
        id: the run's id in the study database (0 for a record built by hand).
        error: why a failed run failed (``"Type: message"`` first, then the traceback).
        params: parameter count; flops: FLOPs of one sample.
        train_seconds: training time; best_epoch: the epoch whose weights were kept;
            epochs_run: epochs trained.
        config: the run's resolved config; provenance: code version, hardware, split sizes.
        attempts: times the run was started; started, finished: Unix times.
        val, test: final metrics on the validation and test split (metric -> value).
        analysis: per-run analysis numbers (``"rotation.mean_prob"`` -> value).
        history: per-epoch metrics, one mapping per epoch (with ``"epoch"``).
        test_predictions, test_targets: per-sample test predictions and targets.
    """

    dataset: str
    variant: str
    seed: int
    status: str
    id: int = 0
    error: str | None = None
    params: int | None = None
    flops: int | None = None
    train_seconds: float | None = None
    best_epoch: int | None = None
    epochs_run: int | None = None
    config: Mapping[str, Any] | None = None
    provenance: Mapping[str, Any] | None = None
    attempts: int = 0
    started: float | None = None
    finished: float | None = None
    val: Mapping[str, float] | None = None
    test: Mapping[str, float] | None = None
    analysis: Mapping[str, float] | None = None
    history: Sequence[Mapping[str, float]] = field(default=())
    test_predictions: Sequence[int] | None = None
    test_targets: Sequence[int] | None = None
