"""The metric registry of a study: which numbers exist, which way is better, their unit and margin.

One small module that statistics (:mod:`archlab.study.stats`), the sequential design
(:mod:`archlab.study.sequential`), the analyses (:mod:`archlab.study.analyses`), the study config
(default margins) and the report all read, so none of them imports another for it. The built-in
metrics register through :func:`register_metric` like a plugin's; a metric a plugin registers gets
the same verdicts, report rows and exports.

- Test metrics (``accuracy``, ``f1_macro``, ``dice``, ``loss``): the first three are rates in
  [0, 1] with a 1 pp default margin; ``loss`` has no natural unit and no default margin.
- Per-run analysis numbers are named ``<analysis>.<metric>`` (``rotation.pct_angles_correct``);
  :data:`ANALYSIS_METRICS` is the live view of those registered.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from archlab.errors import ConfigError, DataError, UnknownNameError
from archlab.study.record import RunRecord

__all__ = ["MetricSpec", "register_metric", "metric_spec", "list_metrics", "RATE_METRICS", "ANALYSIS_METRICS",
           "metric_direction", "default_margin", "run_test_size",
           "report_metrics", "check_rate"]


@dataclass(frozen=True)
class MetricSpec:
    """What a study needs to know of a metric to compare variants on it.

    Attributes:
        name: ``accuracy`` (a test metric) or ``<analysis>.<metric>``.
        higher_is_better: the direction of "better".
        rate: a fraction in [0, 1], shown in % and differences in percentage points.
        unit: the unit of a non-rate metric as the report writes it (``"%"``, ``"epochs"``, ``""``).
        margin: the default equivalence margin in the metric's own unit (None: never "equivalent"
            unless the study sets ``margins:``).
        origin: the module that registered it (``archlab.study.metrics`` for the built-ins).
    """

    name: str
    higher_is_better: bool
    rate: bool = False
    unit: str = ""
    margin: float | None = None
    origin: str = ""


_METRICS: dict[str, MetricSpec] = {}


def register_metric(name: str, *, higher_is_better: bool, rate: bool = False, unit: str = "",
                    margin: float | None = None, origin: str | None = None) -> MetricSpec:
    """Register a metric (a test metric, or an analysis number ``<analysis>.<metric>``).

    Raises:
        ConfigError: a bad name or margin, or the name registered by another module.
    """
    if not isinstance(name, str) or not name or name.startswith(".") or name.endswith("."):
        raise ConfigError(f"metric name {name!r} must be a non-empty name (an analysis's: analysis.metric)")
    if not isinstance(higher_is_better, bool):
        raise ConfigError(f"metric {name!r}: higher_is_better must be true or false, got {higher_is_better!r}")
    if margin is not None and not (isinstance(margin, (int, float)) and 0 < margin < float("inf")):
        raise ConfigError(f"metric {name!r}: margin must be a positive number or None, got {margin!r}")
    spec = MetricSpec(name, higher_is_better, bool(rate), unit, None if margin is None else float(margin),
                      origin or _caller_module())
    old = _METRICS.get(name)
    if old is not None and old.origin != spec.origin:
        raise ConfigError(f"metric {name!r} is registered twice: by {old.origin} and by {spec.origin}; "
                          "give one of them another name")
    _METRICS[name] = spec
    return spec


def _caller_module() -> str:
    frame = sys._getframe(2)
    return str(frame.f_globals.get("__name__", "?"))


def metric_spec(name: str) -> MetricSpec:
    """The registered metric ``name`` (a ``train_``/``val_``/``test_`` prefix of a test metric is ignored).

    Raises:
        UnknownNameError: no such metric, with the close matches.
    """
    if name in _METRICS:
        return _METRICS[name]
    for prefix in ("train_", "val_", "test_"):
        if name.startswith(prefix) and name[len(prefix):] in _METRICS and "." not in name:
            return _METRICS[name[len(prefix):]]
    kind = "analysis metric" if "." in name else "metric"
    raise UnknownNameError(kind, name, [m for m in _METRICS if ("." in m) == ("." in name)])


def list_metrics(analysis: bool | None = None) -> list[str]:
    """Registered metric names (``analysis``: only analysis numbers / only test metrics)."""
    return sorted(m for m in _METRICS if analysis is None or ("." in m) == analysis)


class _AnalysisView(Mapping[str, tuple[bool, bool]]):
    """``<analysis>.<metric>`` -> ``(higher is better, rate)`` of every registered analysis number."""

    def __getitem__(self, key: str) -> tuple[bool, bool]:
        if "." not in key or key not in _METRICS:
            raise KeyError(key)
        return _METRICS[key].higher_is_better, _METRICS[key].rate

    def __iter__(self) -> Iterator[str]:
        return iter([m for m in _METRICS if "." in m])

    def __len__(self) -> int:
        return sum(1 for m in _METRICS if "." in m)


#: per-run analysis number -> (higher is better, a fraction shown in % / percentage points); a live
#: view of the registry
ANALYSIS_METRICS: Mapping[str, tuple[bool, bool]] = _AnalysisView()

for _name in ("accuracy", "f1_macro", "dice"):
    # 1 pp of accuracy/F1/Dice is the smallest difference the seed documents treat as meaningful
    # (they report results to 0.1-1 pp)
    register_metric(_name, higher_is_better=True, rate=True, margin=0.01)
register_metric("loss", higher_is_better=False)  # no natural unit: no default margin
for _name, _hib, _rate, _unit in (
    ("rotation.pct_angles_correct", True, False, "%"),  # already in % (0..100), as the seed's box plot
    ("rotation.mean_prob", True, True, ""),
    ("transplant.accuracy", True, True, ""),
    ("transplant.pct_angles_correct", True, False, "%"),
    ("convergence.epochs_to_target", False, False, "epochs"),
    ("convergence.seconds_to_target", False, False, "s"),
    ("convergence.val_auc", True, True, ""),
    ("generalization_gap.gap", False, False, ""),  # train - test in [-1, 1]: smaller = less overfitting
    ("generalization_gap.train", True, True, ""),
    ("efficiency.metric_per_mparam", True, False, "per Mparam"),
    ("efficiency.metric_per_gflop", True, False, "per GFLOP"),
    ("gates.mean_final", True, True, ""),
    ("gates.fraction_open", True, True, ""),
    ("cam.mass_in_mask", True, True, ""),  # Grad-CAM mass inside the object mask (archlab.analysis.cam)
    ("cam.peak_in_mask", True, True, ""),  # the map's peak inside the mask (the pointing game)
):
    register_metric(_name, higher_is_better=_hib, rate=_rate, unit=_unit)

#: the built-in test metrics that are fractions in [0, 1] (shown in % and percentage points)
RATE_METRICS = tuple(m for m in ("accuracy", "f1_macro", "dice") if _METRICS[m].rate)


def report_metrics(monitor: str | None) -> tuple[str, ...]:
    """The test metrics a study's report compares, given its runs' ``train.monitor``.

    A study that selects on Dice (segmentation) compares Dice first; accuracy/F1 are then the
    image-level "mask or empty" decisions.
    """
    return ("dice", "accuracy", "f1_macro") if monitor == "dice" else ("accuracy", "f1_macro")


def metric_direction(metric: str) -> tuple[bool, bool]:
    """``(higher_is_better, is_rate)`` of a test metric or of a per-run analysis number.

    Raises:
        UnknownNameError: a metric no one registered.
    """
    spec = metric_spec(metric)
    return spec.higher_is_better, spec.rate


def default_margin(metric: str) -> float | None:
    """The registered default equivalence margin of ``metric`` (None: unknown or none)."""
    spec = _METRICS.get(metric)
    return spec.margin if spec is not None else None


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
