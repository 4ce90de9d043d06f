"""Statistics over stored study runs: spread, confidence intervals, paired tests and a verdict.

Pure functions: they read run rows (plain dicts, see :func:`compare_variants`) and return frozen
dataclasses; nothing is written and nothing random happens without an explicit seed.

What is computed, per variant and metric (SPEC §1.2, §5):

- **Spread**: mean, sample standard deviation (``ddof=1``), a Student-t confidence interval of the
  mean and a percentile-bootstrap interval (:func:`summarize`).
- **Paired tests over seeds** against the baseline, pairing run ``seed=s`` of the variant with run
  ``seed=s`` of the baseline (same split, batch order and augmentation draws by construction):
  the paired t-test, the Wilcoxon signed-rank test, Cohen's :math:`d_z` and, when ``deepsig`` is
  installed, the Almost Stochastic Order :math:`\\varepsilon_{\\min}` (Dror et al., 2019;
  Ulmer et al., 2022) (:func:`paired_test`).
- **Exact McNemar** on the per-sample test predictions of matched seeds (:func:`mcnemar_exact`,
  :func:`mcnemar_pooled`).
- **Holm** step-down correction across the non-baseline variants of a dataset (:func:`holm`).
- A **plain-language verdict** (:func:`verdict`).

Which test decides the verdict, and why:

- The **paired t-test over seeds, Holm-adjusted** across the variants of a dataset, decides. It is
  the test that sees the variance that matters for "is the difference real?": the seed-to-seed
  spread of training. Holm keeps the family-wise error rate of the "significant" verdicts at
  ``alpha``.
- When per-sample predictions exist and the metric is ``accuracy``, **exact McNemar must agree**:
  a t-significant difference that the per-sample test does not confirm is reported as
  inconclusive. Because this is an extra *and* condition, it cannot raise the error rate, so the
  McNemar p-value is not adjusted again.
- **Wilcoxon** is reported, never decisive: its exact two-sided p-value over ``n`` non-zero paired
  differences cannot fall below :math:`2 / 2^n` (0.0625 at ``n = 5``), so at the seed counts of a
  typical study it could never reach ``alpha = 0.05``.
- ASO is reported only (``deepsig``'s recommended reading: :math:`\\varepsilon_{\\min} < 0.2`
  means the variant almost stochastically dominates the baseline).
- Fewer than ``min_pairs`` (default 3) paired seeds give "inconclusive", except when the variant
  and the baseline gave exactly the same value on every paired seed (at least two): that is
  reported as "no significant difference ... (identical on every paired seed)".

McNemar over several seeds (the pooling choice): the per-seed 2x2 tables are **pooled by summing**
their discordant counts ``b`` and ``c``, then one exact binomial test is run on ``b + c``. With
seeds as strata this is the Mantel-Haenszel test for matched pairs, which for 1:1 pairs reduces to
McNemar on the summed table. It assumes every (seed, sample) pair is independent; when the split
is the same for every seed, the same hard test images are counted once per seed, which makes the
pooled p-value optimistic. That is one more reason it is only a confirming condition and never
decides alone; the per-seed tables and p-values are kept in :class:`McNemarResult` for inspection.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy import stats as sps

from archlab.errors import ConfigError, DataError, UnknownNameError
from archlab.train.metrics import metric_mode

__all__ = [
    "Summary",
    "PairedResult",
    "McNemarResult",
    "VariantStats",
    "Outcome",
    "summarize",
    "paired_test",
    "aso_eps_min",
    "mcnemar_exact",
    "mcnemar_pooled",
    "holm",
    "verdict",
    "decide",
    "compare_variants",
    "format_p",
    "format_diff",
]

log = logging.getLogger(__name__)

#: Outcome of a comparison, for colouring and for tests that should not parse prose.
Outcome = Literal["baseline", "better", "worse", "no_difference", "inconclusive"]

#: Run statuses the runner writes (anything else is counted under its own name).
_STATUSES = ("done", "failed", "pending", "running")


# ------------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class Summary:
    """Mean, spread and confidence intervals of one metric over seeds.

    Attributes:
        n: number of values.
        mean: arithmetic mean.
        std: sample standard deviation (``ddof=1``); ``None`` when ``n == 1``.
        ci_t: Student-t interval of the mean at ``confidence``; ``None`` when ``n == 1``.
        ci_boot: percentile-bootstrap interval of the mean; ``None`` when ``n == 1``.
        confidence: the confidence level of both intervals (e.g. 0.95).
    """

    n: int
    mean: float
    std: float | None
    ci_t: tuple[float, float] | None
    ci_boot: tuple[float, float] | None
    confidence: float


@dataclass(frozen=True)
class PairedResult:
    """A paired comparison ``variant - baseline`` over matched seeds.

    Attributes:
        n: number of pairs.
        mean_diff: mean of the differences ``variant - baseline``.
        std_diff: sample standard deviation of the differences; ``None`` when ``n < 2``.
        ci_diff: Student-t interval of ``mean_diff``; ``None`` when ``n < 2``.
        t_stat: paired t statistic (``±inf`` when every difference is the same non-zero value).
        t_p: two-sided paired t-test p-value; 1.0 when every difference is zero; ``None`` when
            ``n < 2``.
        wilcoxon_p: two-sided Wilcoxon signed-rank p-value (exact distribution when there are no
            ties or zeros, exact sign-flip enumeration for ``n <= 13`` with ties, normal
            approximation above); 1.0 when every difference is zero; ``None`` when ``n < 2``.
        effect_size: Cohen's :math:`d_z` = mean / std of the differences (``±inf`` for a constant
            non-zero difference, 0.0 when all differences are zero); ``None`` when ``n < 2``.
        aso_eps_min: Almost Stochastic Order :math:`\\varepsilon_{\\min}` of variant over
            baseline (lower = variant better); ``None`` when ``deepsig`` is not installed or
            ``n < 2``.
        confidence: level of ``ci_diff``.
    """

    n: int
    mean_diff: float
    std_diff: float | None
    ci_diff: tuple[float, float] | None
    t_stat: float | None
    t_p: float | None
    wilcoxon_p: float | None
    effect_size: float | None
    aso_eps_min: float | None
    confidence: float


@dataclass(frozen=True)
class McNemarResult:
    """Exact McNemar test of variant vs baseline on per-sample correctness, pooled over seeds.

    Attributes:
        b: pairs the baseline got right and the variant wrong (summed over seeds).
        c: pairs the baseline got wrong and the variant right (summed over seeds).
        p: two-sided exact p-value (binomial test of ``b`` out of ``b + c`` at 1/2).
        seeds: the seeds pooled.
        per_seed: ``(seed, b, c, p)`` for every pooled seed.
    """

    b: int
    c: int
    p: float
    seeds: tuple[int, ...]
    per_seed: tuple[tuple[int, int, int, float], ...]


@dataclass(frozen=True)
class VariantStats:
    """Everything the report shows for one (dataset, variant) and one metric.

    Attributes:
        dataset: dataset name.
        variant: variant name.
        metric: the test metric compared (``accuracy``, ``f1_macro``, ``dice`` or ``loss``).
        is_baseline: whether this is the baseline variant.
        status_counts: number of runs per status (``done``, ``failed``, ``pending``, ``running``).
        failures: ``(seed, reason)`` for every failed run.
        seeds_done: seeds with a finished run and a finite value of ``metric``.
        values: ``{seed: value}`` of ``metric`` on the test split for those seeds.
        summary: spread and intervals of ``values``; ``None`` when there are none.
        params: parameter count (from the runs; ``None`` when no run recorded it).
        flops: FLOPs of one sample's forward pass (``None`` when unknown).
        train_seconds: mean training wall time over finished runs (``None`` when none).
        paired_seeds: seeds finished for both this variant and the baseline.
        paired: the paired comparison with the baseline (``None`` for the baseline itself and
            when no seed is paired).
        mcnemar: pooled exact McNemar (only for ``metric == "accuracy"`` and when predictions
            were stored); ``None`` otherwise.
        t_p_holm: the paired t p-value after Holm's correction over the dataset's variants.
        holm_family: number of p-values in that Holm family.
        outcome: machine-readable verdict (see :data:`Outcome`).
        verdict: the plain-language verdict.
        notes: anomalies found in the rows (finished runs without the metric, ...).
    """

    dataset: str
    variant: str
    metric: str
    is_baseline: bool
    status_counts: dict[str, int]
    failures: tuple[tuple[int, str], ...]
    seeds_done: tuple[int, ...]
    values: dict[int, float]
    summary: Summary | None
    params: int | None
    flops: int | None
    train_seconds: float | None
    paired_seeds: tuple[int, ...] = ()
    paired: PairedResult | None = None
    mcnemar: McNemarResult | None = None
    t_p_holm: float | None = None
    holm_family: int = 0
    outcome: Outcome = "inconclusive"
    verdict: str = ""
    notes: tuple[str, ...] = field(default=())


# ------------------------------------------------------------------------------------------------
# Helpers


def _as_finite_1d(values: Iterable[float], what: str) -> np.ndarray:
    arr = np.asarray(list(values), dtype=np.float64)
    if arr.ndim != 1:
        raise ConfigError(f"{what} must be a flat sequence of numbers, got shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ConfigError(
            f"{what} contains non-finite values {arr[bad].tolist()}; drop failed runs before "
            "computing statistics"
        )
    return arr


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must be in (0, 1), e.g. 0.95; got {confidence!r}")


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha must be in (0, 1), e.g. 0.05; got {alpha!r}")


def _t_interval(mean: float, std: float, n: int, confidence: float) -> tuple[float, float]:
    half = float(sps.t.ppf(0.5 + confidence / 2.0, n - 1)) * std / math.sqrt(n)
    return (mean - half, mean + half)


# ------------------------------------------------------------------------------------------------
# Spread


def summarize(
    values: Sequence[float],
    confidence: float = 0.95,
    n_boot: int = 10000,
    seed: int = 0,
) -> Summary:
    """Mean, sample std, Student-t CI and percentile-bootstrap CI of ``values``.

    The bootstrap resamples ``values`` with replacement ``n_boot`` times (generator seeded with
    ``seed``) and takes the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of the
    resampled means. With few seeds the percentile interval is too narrow (it cannot be wider
    than the range of the values); the t interval is the one to quote at ``n < 10``.

    Args:
        values: one metric value per seed.
        confidence: level of both intervals.
        n_boot: number of bootstrap resamples.
        seed: seed of the bootstrap generator.

    Returns:
        A :class:`Summary`; with one value, ``std`` and both intervals are ``None``.

    Raises:
        ConfigError: no values, a non-finite value, ``confidence`` outside (0, 1) or
            ``n_boot < 1``.

    Shape:
        - values: ``(n,)``
    """
    _check_confidence(confidence)
    if n_boot < 1:
        raise ConfigError(f"n_boot must be >= 1, got {n_boot!r}")
    x = _as_finite_1d(values, "values")
    n = int(x.size)
    if n == 0:
        raise ConfigError("summarize needs at least one value, got none")
    mean = float(x.mean())
    if n == 1:
        return Summary(n=1, mean=mean, std=None, ci_t=None, ci_boot=None, confidence=confidence)
    std = float(x.std(ddof=1))
    ci_t = _t_interval(mean, std, n, confidence)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))  # (n_boot, n)
    boot_means = x[idx].mean(axis=1)  # (n_boot,)
    lo, hi = np.quantile(boot_means, [0.5 - confidence / 2.0, 0.5 + confidence / 2.0])
    return Summary(
        n=n, mean=mean, std=std, ci_t=ci_t, ci_boot=(float(lo), float(hi)), confidence=confidence
    )


# ------------------------------------------------------------------------------------------------
# Paired tests


def aso_eps_min(variant: Sequence[float], baseline: Sequence[float], seed: int = 0) -> float | None:
    """Almost Stochastic Order :math:`\\varepsilon_{\\min}` of ``variant`` over ``baseline``.

    Uses ``deepsig.aso`` (Dror et al., 2019, "Deep Dominance - How to Properly Compare Deep
    Neural Models"; implementation of Ulmer et al., 2022) with its default confidence level.
    Higher scores are taken as better: negate both for a lower-is-better metric. Lower
    :math:`\\varepsilon_{\\min}` = stronger evidence that the variant dominates; ``deepsig``
    recommends reading :math:`\\varepsilon_{\\min} < 0.2` as "variant better".

    Returns:
        ``None`` when ``deepsig`` is not installed, or when it fails on these scores (logged).
    """
    try:
        deepsig = importlib.import_module("deepsig")
    except ImportError:
        return None
    kwargs: dict[str, Any] = {"show_progress": False}
    try:
        accepted = inspect.signature(deepsig.aso).parameters
    except (TypeError, ValueError):  # a wrapped callable without a signature
        accepted = {}
    if "seed" in accepted:  # older deepsig versions draw from numpy's global generator
        kwargs["seed"] = seed
    if "num_jobs" in accepted:
        kwargs["num_jobs"] = 1
    try:
        return float(deepsig.aso(list(map(float, variant)), list(map(float, baseline)), **kwargs))
    except Exception as exc:  # optional extra: never let it break a report
        log.warning("deepsig.aso failed (%s); ASO left out", exc)
        return None


def paired_test(
    baseline: Sequence[float],
    variant: Sequence[float],
    *,
    confidence: float = 0.95,
    aso: bool = True,
    higher_is_better: bool = True,
    seed: int = 0,
) -> PairedResult:
    """Paired comparison of ``variant`` against ``baseline`` (element ``i`` = seed ``i``).

    The paired t statistic is :math:`t = \\bar d / (s_d / \\sqrt n)` with ``n - 1`` degrees of
    freedom, :math:`d_i = \\text{variant}_i - \\text{baseline}_i`; Cohen's
    :math:`d_z = \\bar d / s_d`. Degenerate cases are decided here rather than left to NaN:
    all differences zero gives ``t_p = wilcoxon_p = 1.0`` and ``d_z = 0``; a constant non-zero
    difference gives ``t = ±inf`` and ``t_p = 0`` (the limit of the t-test as the spread goes
    to zero).

    Args:
        baseline: the baseline's metric per seed.
        variant: the variant's metric for the same seeds, in the same order.
        confidence: level of the interval of the mean difference.
        aso: compute ASO when ``deepsig`` is importable.
        higher_is_better: direction of the metric (only used to orient ASO).
        seed: seed for ASO's bootstrap.

    Returns:
        A :class:`PairedResult`; with one pair only ``n`` and ``mean_diff`` are set.

    Raises:
        ConfigError: different lengths, no pairs, or non-finite values.

    Shape:
        - baseline, variant: ``(n,)``
    """
    _check_confidence(confidence)
    a = _as_finite_1d(baseline, "baseline")
    b = _as_finite_1d(variant, "variant")
    if a.shape != b.shape:
        raise ConfigError(
            f"paired samples must have the same length (one value per seed), got baseline "
            f"{a.size} and variant {b.size}"
        )
    n = int(a.size)
    if n == 0:
        raise ConfigError("paired_test needs at least one pair, got none")
    d = b - a  # (n,)
    mean_diff = float(d.mean())
    if n < 2:
        return PairedResult(n, mean_diff, None, None, None, None, None, None, None, confidence)

    std_diff = float(d.std(ddof=1))
    all_zero = not np.any(d)
    if all_zero:
        t_stat, t_p, wil_p, d_z = 0.0, 1.0, 1.0, 0.0
    else:
        if std_diff == 0.0:
            # Constant non-zero shift: zero spread makes t infinite (p -> 0 in the limit).
            t_stat = math.copysign(math.inf, mean_diff)
            t_p, d_z = 0.0, math.copysign(math.inf, mean_diff)
        else:
            t_stat = mean_diff / (std_diff / math.sqrt(n))
            t_p = float(2.0 * sps.t.sf(abs(t_stat), n - 1))
            d_z = mean_diff / std_diff
        with np.errstate(all="ignore"):
            wil_p = float(sps.wilcoxon(d, zero_method="wilcox", alternative="two-sided",
                                       method="auto").pvalue)
    ci_diff = _t_interval(mean_diff, std_diff, n, confidence)
    eps = None
    if aso:
        sign = 1.0 if higher_is_better else -1.0
        eps = aso_eps_min(sign * b, sign * a, seed=seed)
    return PairedResult(
        n=n,
        mean_diff=mean_diff,
        std_diff=std_diff,
        ci_diff=ci_diff,
        t_stat=float(t_stat),
        t_p=float(t_p),
        wilcoxon_p=float(wil_p),
        effect_size=float(d_z),
        aso_eps_min=eps,
        confidence=confidence,
    )


def mcnemar_exact(base_correct: Sequence[bool], var_correct: Sequence[bool]) -> tuple[int, int, float]:
    """Exact McNemar test on per-sample correctness of two classifiers on the same samples.

    ``b`` counts samples the baseline got right and the variant wrong, ``c`` the reverse. Under
    the null hypothesis each discordant sample is ``b`` or ``c`` with probability 1/2, so the
    two-sided exact p-value is the binomial test of ``b`` successes in ``b + c`` trials at 1/2
    (McNemar, 1947; the ``exact=True`` variant of statsmodels' ``mcnemar``). No discordant
    sample gives ``p = 1``.

    Args:
        base_correct: per-sample ``prediction == target`` of the baseline.
        var_correct: the same for the variant, in the same sample order.

    Returns:
        ``(b, c, p)``.

    Raises:
        ConfigError: the arrays differ in length or are not 1-D.

    Shape:
        - base_correct, var_correct: ``(N,)``
    """
    x = np.asarray(base_correct, dtype=bool)
    y = np.asarray(var_correct, dtype=bool)
    if x.ndim != 1 or x.shape != y.shape:
        raise ConfigError(
            f"McNemar needs two 1-D correctness arrays over the same samples, got shapes "
            f"{x.shape} and {y.shape}"
        )
    b = int(np.count_nonzero(x & ~y))
    c = int(np.count_nonzero(~x & y))
    return b, c, _binom_p(b, c)


def _binom_p(b: int, c: int) -> float:
    if b + c == 0:
        return 1.0
    return float(sps.binomtest(b, b + c, 0.5, alternative="two-sided").pvalue)


def mcnemar_pooled(tables: Iterable[tuple[int, int]]) -> tuple[int, int, float]:
    """Exact McNemar over several seeds: sum the discordant counts, then test once.

    See the module docstring for why summing (the Mantel-Haenszel test for matched pairs with
    seeds as strata) and what it assumes.

    Args:
        tables: ``(b, c)`` per seed.

    Returns:
        ``(b, c, p)`` of the pooled table.
    """
    b = c = 0
    for tb, tc in tables:
        if tb < 0 or tc < 0:
            raise ConfigError(f"discordant counts must be >= 0, got b={tb}, c={tc}")
        b, c = b + int(tb), c + int(tc)
    return b, c, _binom_p(b, c)


def holm(pvalues: Mapping[str, float]) -> dict[str, float]:
    """Holm's step-down adjustment (Holm, 1979) of a family of p-values.

    Sorted ascending, :math:`p_{(i)}` (``i = 1..m``) becomes
    :math:`\\max_{j \\le i} \\min(1, (m - j + 1)\\,p_{(j)})`. Rejecting where the adjusted value is
    below ``alpha`` controls the family-wise error rate at ``alpha``.

    Args:
        pvalues: name -> raw p-value.

    Returns:
        name -> adjusted p-value (same keys).

    Raises:
        ConfigError: a p-value outside [0, 1] or NaN.
    """
    for name, p in pvalues.items():
        if not (0.0 <= float(p) <= 1.0):  # also rejects NaN
            raise ConfigError(f"p-value of {name!r} must be in [0, 1], got {p!r}")
    items = sorted(pvalues.items(), key=lambda kv: float(kv[1]))
    m = len(items)
    out: dict[str, float] = {}
    running = 0.0
    for i, (name, p) in enumerate(items):
        running = max(running, min(1.0, (m - i) * float(p)))
        out[name] = running
    return {name: out[name] for name in pvalues}


# ------------------------------------------------------------------------------------------------
# Verdict


def format_p(p: float | None) -> str:
    """``"<0.001"``, ``"0.004"``, ``"0.062"``, ``"0.43"``; ``"—"`` for ``None``."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "—"
    if p < 0.001:
        return "<0.001"
    if p >= 0.1:
        return f"{p:.2f}"
    return f"{p:.2g}"


def _p_text(p: float) -> str:
    s = format_p(p)
    return f"p{s}" if s.startswith("<") else f"p={s}"


def format_diff(diff: float, percent: bool = True) -> str:
    """A signed difference: percentage points for fraction metrics (``+1.20 pp``), else raw."""
    if percent:
        return f"{diff * 100:+.2f} pp"
    return f"{diff:+.4g}"


def decide(
    mean_diff: float | None,
    p_value: float | None,
    n: int,
    *,
    alpha: float = 0.05,
    adjusted: bool = False,
    mcnemar_p: float | None = None,
    higher_is_better: bool = True,
    percent: bool = True,
    min_pairs: int = 3,
    identical: bool = False,
) -> tuple[Outcome, str]:
    """The verdict as ``(outcome, text)``; :func:`verdict` returns only the text.

    Rules (see the module docstring for the reasons):

    0. ``identical`` (every paired difference exactly zero) and ``n >= 2`` -> ``no_difference``:
       a fact about the runs rather than an inference, so ``min_pairs`` does not apply;
    1. fewer than ``min_pairs`` paired seeds, or no p-value -> ``inconclusive``;
    2. paired t ``p_value >= alpha`` -> ``no_difference``;
    3. ``p_value < alpha`` and (no McNemar, or McNemar ``< alpha``) -> ``better``/``worse`` by the
       sign of ``mean_diff`` and ``higher_is_better``;
    4. ``p_value < alpha`` but McNemar ``>= alpha`` -> ``inconclusive`` (the tests disagree).

    Args:
        mean_diff: mean of ``variant - baseline`` over paired seeds.
        p_value: paired t-test p-value (Holm-adjusted when ``adjusted``).
        n: number of paired seeds.
        alpha: significance level.
        adjusted: whether ``p_value`` was Holm-adjusted (said in the text).
        mcnemar_p: exact McNemar p-value on pooled predictions, when available.
        higher_is_better: metric direction (``False`` for loss).
        percent: format the difference in percentage points.
        min_pairs: fewest paired seeds for a verdict.
        identical: every paired difference is exactly zero.
    """
    _check_alpha(alpha)
    if min_pairs < 2:
        raise ConfigError(f"min_pairs must be >= 2 (a paired t-test needs two pairs), got {min_pairs!r}")
    if identical and n >= 2:
        return "no_difference", (
            f"no significant difference at n={n} (identical on every paired seed, paired t p=1.00)"
        )
    if n < min_pairs or p_value is None or mean_diff is None:
        if n == 0:
            return "inconclusive", "inconclusive: no seed finished for both this variant and the baseline"
        s = "" if n == 1 else "s"
        return "inconclusive", f"inconclusive: only {n} paired seed{s} (need at least {min_pairs})"
    t_part = f"paired t {_p_text(p_value)}" + (" Holm-adjusted" if adjusted else "")
    m_part = "" if mcnemar_p is None else f", McNemar {_p_text(mcnemar_p)}"
    if p_value >= alpha:
        return "no_difference", f"no significant difference at n={n} ({t_part}{m_part})"
    improved = (mean_diff > 0) == higher_is_better
    word = "better" if improved else "worse"
    diff = format_diff(mean_diff, percent)
    if mcnemar_p is not None and mcnemar_p >= alpha:
        return "inconclusive", (
            f"inconclusive: {word} by the paired t-test over seeds ({diff}, {t_part}) "
            f"but not by McNemar on the predictions ({_p_text(mcnemar_p)})"
        )
    return ("better" if improved else "worse"), f"significantly {word} ({diff}, {t_part}{m_part})"


def verdict(
    mean_diff: float | None,
    p_value: float | None,
    n: int,
    *,
    alpha: float = 0.05,
    adjusted: bool = False,
    mcnemar_p: float | None = None,
    higher_is_better: bool = True,
    percent: bool = True,
    min_pairs: int = 3,
    identical: bool = False,
) -> str:
    """Plain-language verdict, e.g. ``"no significant difference at n=5 (paired t p=0.43)"``.

    Other forms: ``"significantly better (+1.20 pp, paired t p=0.004 Holm-adjusted, McNemar
    p<0.001)"``, ``"significantly worse (...)"``, ``"inconclusive: only 2 paired seeds (need at
    least 3)"``. The text names the test that decided. Arguments and rules as :func:`decide`.
    """
    return decide(
        mean_diff, p_value, n, alpha=alpha, adjusted=adjusted, mcnemar_p=mcnemar_p,
        higher_is_better=higher_is_better, percent=percent, min_pairs=min_pairs,
        identical=identical,
    )[1]


# ------------------------------------------------------------------------------------------------
# From run rows to per-variant statistics


def _metric_value(run: Mapping[str, Any], metric: str) -> float | None:
    # "rotation.pct_angles_correct": a per-run analysis number (archlab.study.analyses)
    test = run.get("analysis") if "." in metric else run.get("test")
    if not isinstance(test, Mapping) or test.get(metric) is None:
        return None
    v = float(test[metric])
    return v if math.isfinite(v) else None


def _first_not_none(runs: Sequence[Mapping[str, Any]], key: str) -> int | None:
    for r in runs:
        if r.get(key) is not None:
            return int(r[key])
    return None


def _correctness(run: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
    preds, targets = run.get("test_predictions"), run.get("test_targets")
    if preds is None or targets is None:
        return None
    p = np.asarray(preds, dtype=np.int64)
    t = np.asarray(targets, dtype=np.int64)
    if p.shape != t.shape or p.ndim != 1:
        raise DataError(
            f"run ({run.get('dataset')!r}, {run.get('variant')!r}, seed {run.get('seed')}) has "
            f"{p.size} test predictions but {t.size} test targets; they must match one to one"
        )
    return p == t, t


def _mcnemar_for(
    base_runs: Mapping[int, Mapping[str, Any]],
    var_runs: Mapping[int, Mapping[str, Any]],
    seeds: Sequence[int],
) -> McNemarResult | None:
    per_seed = []
    for s in seeds:
        bc, vc = _correctness(base_runs[s]), _correctness(var_runs[s])
        if bc is None or vc is None:
            continue
        if bc[1].shape != vc[1].shape or not np.array_equal(bc[1], vc[1]):
            # Same seed must mean same test split (fairness by construction); if it does not,
            # per-sample pairing is meaningless and the whole comparison is suspect.
            raise DataError(
                f"seed {s}: variant {var_runs[s].get('variant')!r} and the baseline were tested on "
                "different test targets; runs of one seed must share the split. Re-run the study "
                "so that every variant of a seed uses the same data split"
            )
        b, c, p = mcnemar_exact(bc[0], vc[0])
        per_seed.append((int(s), b, c, p))
    if not per_seed:
        return None
    b, c, p = mcnemar_pooled((t[1], t[2]) for t in per_seed)
    return McNemarResult(b=b, c=c, p=p, seeds=tuple(t[0] for t in per_seed), per_seed=tuple(per_seed))


def compare_variants(
    runs: Sequence[Mapping[str, Any]],
    *,
    baseline: str,
    metric: str = "accuracy",
    alpha: float = 0.05,
    confidence: float = 0.95,
    n_boot: int = 10000,
    min_pairs: int = 3,
    aso: bool = True,
    seed: int = 0,
) -> list[VariantStats]:
    """Group run rows by (dataset, variant), pair each variant with the baseline by seed, test.

    A run row is a dict with at least ``dataset``, ``variant``, ``seed`` and ``status``; finished
    runs (``status == "done"``) carry ``test`` (metric -> value), and optionally ``params``,
    ``flops``, ``train_seconds``, ``test_predictions``/``test_targets`` and ``error`` (failed).
    Only finished runs with a finite test value of ``metric`` enter the statistics; the others
    are counted by status. Holm's correction runs over the non-baseline variants of each dataset
    that have a paired t p-value.

    Args:
        runs: the study's run rows.
        baseline: name of the baseline variant.
        metric: test metric to compare (``accuracy``, ``f1_macro``, ``dice``, ``loss``).
        alpha: significance level of the verdict.
        confidence: level of the confidence intervals.
        n_boot: bootstrap resamples for :func:`summarize`.
        min_pairs: fewest paired seeds for a verdict other than "inconclusive".
        aso: compute ASO when ``deepsig`` is installed.
        seed: seed of the bootstrap and ASO.

    Returns:
        One :class:`VariantStats` per (dataset, variant): datasets in order of first appearance,
        the baseline first within a dataset, then the other variants in order of appearance.

    Raises:
        UnknownNameError: ``baseline`` is not a variant of any run, or ``metric`` is unknown.
        DataError: the same (dataset, variant, seed) appears twice, or paired runs were tested
            on different targets.
    """
    _check_alpha(alpha)
    _check_confidence(confidence)
    if min_pairs < 2:
        raise ConfigError(f"min_pairs must be >= 2 (a paired t-test needs two pairs), got {min_pairs!r}")
    if "." in metric:  # a per-run analysis number, e.g. rotation.pct_angles_correct
        from archlab.study.analyses import metric_direction

        higher_is_better, percent = metric_direction(metric)
    else:
        higher_is_better = metric_mode(metric) == "max"
        percent = metric != "loss"
    if not runs:
        return []
    variants_seen = list(dict.fromkeys(str(r["variant"]) for r in runs))
    if baseline not in variants_seen:
        raise UnknownNameError("baseline variant", baseline, variants_seen)

    # dataset -> variant -> seed -> run
    grouped: dict[str, dict[str, dict[int, Mapping[str, Any]]]] = {}
    for r in runs:
        ds, var, s = str(r["dataset"]), str(r["variant"]), int(r["seed"])
        by_seed = grouped.setdefault(ds, {}).setdefault(var, {})
        if s in by_seed:
            raise DataError(
                f"the results hold two runs of (dataset {ds!r}, variant {var!r}, seed {s}); each "
                "must appear once — the results database is inconsistent"
            )
        by_seed[s] = r

    out: list[VariantStats] = []
    for ds, by_var in grouped.items():
        order = ([baseline] if baseline in by_var else []) + [v for v in by_var if v != baseline]
        base_runs = by_var.get(baseline, {})
        base_vals = {
            s: v for s, r in base_runs.items()
            if r.get("status") == "done" and (v := _metric_value(r, metric)) is not None
        }
        partial: dict[str, dict[str, Any]] = {}
        for var in order:
            vr = by_var[var]
            seeds_sorted = sorted(vr)
            counts = {k: 0 for k in _STATUSES}
            failures, notes = [], []
            values: dict[int, float] = {}
            for s in seeds_sorted:
                r = vr[s]
                st = str(r.get("status"))
                counts[st] = counts.get(st, 0) + 1
                if st == "failed":
                    failures.append((s, str(r.get("error") or "no reason recorded")))
                elif st == "done":
                    v = _metric_value(r, metric)
                    if v is None:
                        notes.append(f"seed {s} finished without a finite test {metric}; left out")
                    else:
                        values[s] = v
            done_runs = [vr[s] for s in seeds_sorted if vr[s].get("status") == "done"]
            all_runs = done_runs + [vr[s] for s in seeds_sorted if vr[s].get("status") != "done"]
            secs = [float(r["train_seconds"]) for r in done_runs if r.get("train_seconds") is not None]
            summary = (
                summarize([values[s] for s in sorted(values)], confidence, n_boot, seed)
                if values else None
            )
            info: dict[str, Any] = dict(
                dataset=ds, variant=var, metric=metric, is_baseline=var == baseline,
                status_counts=counts, failures=tuple(failures), seeds_done=tuple(sorted(values)),
                values=dict(sorted(values.items())), summary=summary,
                params=_first_not_none(all_runs, "params"), flops=_first_not_none(all_runs, "flops"),
                train_seconds=float(np.mean(secs)) if secs else None,
            )
            if var != baseline:
                paired_seeds = tuple(s for s in sorted(values) if s in base_vals)
                info["paired_seeds"] = paired_seeds
                if paired_seeds:
                    info["paired"] = paired_test(
                        [base_vals[s] for s in paired_seeds], [values[s] for s in paired_seeds],
                        confidence=confidence, aso=aso, higher_is_better=higher_is_better, seed=seed,
                    )
                    if metric == "accuracy":  # McNemar tests per-sample correctness = accuracy
                        info["mcnemar"] = _mcnemar_for(base_runs, vr, paired_seeds)
                if not base_runs:
                    notes.append(f"baseline {baseline!r} has no runs on dataset {ds!r}")
            info["notes"] = tuple(notes)
            partial[var] = info

        family = {
            v: info["paired"].t_p for v, info in partial.items()
            if info.get("paired") is not None and info["paired"].t_p is not None
        }
        adjusted = holm(family)
        for var in order:
            info = partial[var]
            if info["is_baseline"]:
                info.update(outcome="baseline", verdict="baseline")
            else:
                paired: PairedResult | None = info.get("paired")
                mc: McNemarResult | None = info.get("mcnemar")
                p_adj = adjusted.get(var)
                outcome, text = decide(
                    paired.mean_diff if paired else None, p_adj, paired.n if paired else 0,
                    alpha=alpha, adjusted=len(family) > 1, mcnemar_p=mc.p if mc else None,
                    higher_is_better=higher_is_better, percent=percent, min_pairs=min_pairs,
                    identical=paired is not None and paired.n >= 2
                    and paired.std_diff == 0.0 and paired.mean_diff == 0.0,
                )
                info.update(t_p_holm=p_adj, holm_family=len(family), outcome=outcome, verdict=text)
            out.append(VariantStats(**info))
    return out
