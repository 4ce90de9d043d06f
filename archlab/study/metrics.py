"""The metric vocabulary of a study: which numbers exist, which way is better, which are rates.

One small module that statistics (:mod:`archlab.study.stats`), the sequential design
(:mod:`archlab.study.sequential`), the analyses (:mod:`archlab.study.analyses`) and the report all
read, so none of them imports another for it.

- Test metrics (``accuracy``, ``f1_macro``, ``dice``, ``loss``): their direction is the training
  engine's (:func:`archlab.train.metrics.metric_mode`); the first three are rates in [0, 1].
- Per-run analysis numbers are named ``<analysis>.<metric>`` (``rotation.pct_angles_correct``)
  and listed in :data:`ANALYSIS_METRICS`.
"""

from __future__ import annotations

from collections.abc import Mapping

from archlab.errors import DataError, UnknownNameError
from archlab.study.record import RunRecord
from archlab.train.metrics import metric_mode

__all__ = ["RATE_METRICS", "ANALYSIS_METRICS", "metric_direction", "run_test_size", "check_rate"]

#: test metrics that are fractions in [0, 1] (shown in % and percentage points)
RATE_METRICS = ("accuracy", "f1_macro", "dice")

#: per-run analysis number -> (higher is better, a fraction shown in % / percentage points).
ANALYSIS_METRICS: dict[str, tuple[bool, bool]] = {
    "rotation.pct_angles_correct": (True, False),  # already in % (0..100), as the seed's box plot
    "rotation.mean_prob": (True, True),
    "transplant.accuracy": (True, True),
    "transplant.pct_angles_correct": (True, False),
    "convergence.epochs_to_target": (False, False),
    "convergence.seconds_to_target": (False, False),
    "convergence.val_auc": (True, True),
    "generalization_gap.gap": (False, False),  # train - test in [-1, 1]: smaller = less overfitting
    "generalization_gap.train": (True, True),
    "efficiency.metric_per_mparam": (True, False),
    "efficiency.metric_per_gflop": (True, False),
    "gates.mean_final": (True, True),
    "gates.fraction_open": (True, True),
}


def metric_direction(metric: str) -> tuple[bool, bool]:
    """``(higher_is_better, is_rate)`` of a test metric or of a per-run analysis number.

    Raises:
        UnknownNameError: an analysis key (``x.y``) that no analysis stores, or an unknown test
            metric.
    """
    if "." in metric:
        if metric not in ANALYSIS_METRICS:
            raise UnknownNameError("analysis metric", metric, ANALYSIS_METRICS)
        return ANALYSIS_METRICS[metric]
    return metric_mode(metric) == "max", metric in RATE_METRICS


def run_test_size(run: RunRecord) -> int | None:
    """The test-set size of a run row: ``provenance.split_sizes.test``, else ``len(test_targets)``."""
    prov = run.provenance
    if isinstance(prov, Mapping) and isinstance(prov.get("split_sizes"), Mapping):
        n = prov["split_sizes"].get("test")
        if isinstance(n, int) and n > 0:
            return n
    t = run.test_targets
    return len(t) if t else None


def check_rate(run: RunRecord, metric: str, value: float) -> float:
    """``value`` if it is a valid value of ``metric`` for ``run``; a rate outside [0, 1] is an error.

    An accuracy given in percentage points (90.3 instead of 0.903) would otherwise give an
    inverted interval (89.56, 1.0) after clipping to the rate's range.

    Raises:
        DataError: a rate metric (:data:`RATE_METRICS` or a rate analysis number) outside [0, 1].
    """
    rate = metric in RATE_METRICS or ANALYSIS_METRICS.get(metric, (True, False))[1]
    if rate and not 0.0 <= value <= 1.0:
        raise DataError(
            f"run ({run.dataset!r}, {run.variant!r}, seed {run.seed}) has test {metric} = {value!r}; "
            f"{metric} is a rate and must lie in [0, 1] (a percentage such as 90.3 must be stored as 0.903)"
        )
    return value
