"""Statistics over stored study runs: spread, intervals, paired tests, power and the four verdicts.

Pure functions: they read run records (:class:`~archlab.study.record.RunRecord`) and return frozen
dataclasses of **numbers and codes** — a :class:`~archlab.study.verdicts.Verdict`, the
:class:`~archlab.study.verdicts.Reason` codes that explain it, :class:`~archlab.study.verdicts.Note`
codes for anomalous runs, and every number a sentence needs (pairs, lost seeds, the deciding
interval, detectable difference, seeds needed, ...). No sentence is written here:
:mod:`archlab.study.wording` words the results. Nothing is stored and nothing random happens
without an explicit seed.

:func:`compare_variants` runs in steps: group the rows, describe each (dataset, variant)
(counts, failures, spread), compare it with the baseline (pairs, paired tests, the deciding
interval, verdict and reasons), then the checks beside the verdict (seeds × images, failure rates).
A new condition is a new code in :mod:`archlab.study.verdicts`, set in the step that detects it.

**The verdict** of a comparison (variant vs baseline, one metric, one dataset) is read off one
confidence interval of the mean paired difference ``variant - baseline`` over seeds (pairing run
``seed=s`` of the variant with run ``seed=s`` of the baseline: same split, batch order and
augmentation draws by construction):

- *better* / *worse*: the interval excludes 0 (the sign and the metric's direction say which);
- *equivalent within ±m*: the interval lies inside :math:`(-m, m)`, ``m`` the metric's margin
  (two one-sided tests, each at half the interval's error rate);
- *inconclusive* otherwise, with the smallest difference these seeds detect at 80 % power and
  about how many seeds would decide it (noncentral t, :func:`detectable_difference`,
  :func:`seeds_to_detect`, :func:`seeds_for_equivalence`).

Which interval, and why its claims keep their error rate:

- **Fixed seeds** (``seeds: 5``): the Student-t interval at level :math:`1 - \\alpha/k`.
- **Adaptive seeds** (``seeds: {min, max, until: conclusive}``): the repeated confidence interval
  of the group-sequential design in :mod:`archlab.study.sequential` (alpha spending), valid under
  the repeated looks that decided when to stop.
- **Multiplicity**: the verdicts of the **primary metric** (declared ``primary_metric``, else the
  monitor, else accuracy) over every (dataset, variant) form one family of ``k`` comparisons; each
  gets :math:`\\alpha/k` (Bonferroni), so the probability of *any* wrong primary claim is at most
  ``alpha``. Bonferroni rather than Holm because it has simultaneous intervals, so the Δ column's
  interval is exactly the one that decided. The other metrics are **exploratory**: unadjusted 95 %
  intervals, marked as such.

Shown next to the verdict, never deciding it:

- the paired t-test p-value (unadjusted), Cohen's :math:`d_z`, the TOST p-value at the margin;
- the **Wilcoxon signed-rank** test on differences rounded to the test set's resolution (an
  accuracy is a count of images / N: two differences that are the same count but not bit-equal
  floats are ties), exact by enumeration of the signed-rank distribution with mid-ranks;
- **ASO** (Almost Stochastic Order, Dror et al., 2019; ``deepsig``'s algorithm, Ulmer et al., 2022)
  in *both* directions: :math:`\\varepsilon_{\\min}` of variant over baseline and of baseline over
  variant (:func:`aso_eps_min`, reproduces ``deepsig.aso`` bit for bit at the same seed);
- the **seeds × images** test (:func:`seeds_images_test`) on per-image correctness: seeds and test
  images are two crossed random factors (Clark, 1973, "The language-as-fixed-effect fallacy"), so
  the variance of the mean difference is :math:`\\sigma^2_{seed}/S + \\sigma^2_{image}/N +
  \\sigma^2_{e}/(SN)`, estimated from the two-way mean squares with Satterthwaite degrees of
  freedom. It asks whether the difference generalises to *new test images*, which pooling the
  seeds' McNemar tables (each image counted once per seed) overstated;
- the failure rates of variant and baseline, compared by Boschloo's exact test (:func:`failure_test`).

Spread: mean, sample standard deviation and the Student-t interval of the mean (clipped to the
metric's range [0, 1] for rates). No percentile bootstrap: at 3–5 seeds it covers 76–84 % instead
of 95 %; the BCa interval is given from 10 values up.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats as sps

from archlab.errors import ConfigError, DataError, UnknownNameError
from archlab.study.metrics import RATE_METRICS, check_rate, metric_direction, run_test_size
from archlab.study.ranks import wilcoxon_signed_rank
from archlab.study.record import RunRecord
from archlab.study.failures import BASELINE, BOTH, VARIANT, survives_failures
from archlab.study.sequential import (
    DEFAULT_SPENDING,
    SequentialDecision,
    interval_verdict,
    paired_sd,
    sequential_decisions,
)
from archlab.study.verdicts import Interval, Note, Reason, Verdict

__all__ = [
    "Summary",
    "PairedResult",
    "ImageTest",
    "VariantStats",
    "Verdict",
    "Reason",
    "Note",
    "Interval",
    "MAX_SEEDS",
    "POWER",
    "RATE_METRICS",
    "summarize",
    "paired_test",
    "wilcoxon_signed_rank",
    "aso_eps_min",
    "aso_both",
    "seeds_images_test",
    "failure_test",
    "power_paired_t",
    "detectable_difference",
    "seeds_to_detect",
    "tost_power",
    "seeds_for_equivalence",
    "tost_p",
    "holm",
    "compare_variants",
]

log = logging.getLogger(__name__)

#: Metrics that are rates in [0, 1] (intervals are clipped to that range, shown in %).

#: Run statuses the runner writes (anything else is counted under its own name).
_STATUSES = ("done", "failed", "pending", "running")

POWER = 0.8  # the power at which "detectable" and "seeds needed" are stated
MAX_SEEDS = 100_000  # searched up to here; beyond it "more than 100000"


# ------------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class Summary:
    """Mean, spread and confidence intervals of one metric over seeds.

    Attributes:
        n: number of values.
        mean: arithmetic mean.
        std: sample standard deviation (``ddof=1``); ``None`` when ``n == 1``.
        ci_t: Student-t interval of the mean at ``confidence`` (clipped to ``bounds``); ``None``
            when ``n == 1``.
        ci_bca: BCa bootstrap interval (only from ``n >= 10``; ``None`` below, where bootstrap
            intervals under-cover).
        confidence: the confidence level of both intervals (e.g. 0.95).
        clipped: whether ``ci_t`` was clipped to the metric's range.
    """

    n: int
    mean: float
    std: float | None
    ci_t: tuple[float, float] | None
    ci_bca: tuple[float, float] | None
    confidence: float
    clipped: bool = False


@dataclass(frozen=True)
class PairedResult:
    """A paired comparison ``variant - baseline`` over matched seeds (descriptive tests).

    Attributes:
        n: number of pairs.
        mean_diff: mean of the differences.
        std_diff: sample standard deviation of the differences; ``None`` when ``n < 2``.
        t_stat: paired t statistic (``±inf`` for a constant non-zero difference).
        t_p: two-sided paired t-test p-value (unadjusted); 1.0 when every difference is zero.
        wilcoxon_p: two-sided exact Wilcoxon signed-rank p-value on the differences rounded to
            the test-set resolution (ties and zeros handled exactly); ``None`` when ``n < 2``.
        effect_size: Cohen's :math:`d_z` = mean / std of the differences.
        aso_variant: ASO :math:`\\varepsilon_{\\min}` of variant over baseline (small: variant
            better); ``None`` when not computed.
        aso_baseline: ASO :math:`\\varepsilon_{\\min}` of baseline over variant.
        resolution: the grid the differences were rounded to (``1/N`` for accuracy).
    """

    n: int
    mean_diff: float
    std_diff: float | None
    t_stat: float | None
    t_p: float | None
    wilcoxon_p: float | None
    effect_size: float | None
    aso_variant: float | None = None
    aso_baseline: float | None = None
    resolution: float | None = None


@dataclass(frozen=True)
class ImageTest:
    """Seeds × images test of the mean per-image correctness difference (variant - baseline).

    Attributes:
        seeds: number of seeds ``S``.
        images: number of test images ``N``.
        mean_diff: mean of ``correct_variant - correct_baseline`` over seeds and images.
        se: its standard error with seeds and images as crossed random factors.
        df: Satterthwaite degrees of freedom.
        p: two-sided p-value.
        var_seed: the seed component :math:`\\hat\\sigma^2_{seed}/S` of the variance.
        var_image: the image component :math:`\\hat\\sigma^2_{image}/N`.
    """

    seeds: int
    images: int
    mean_diff: float
    se: float
    df: float
    p: float
    var_seed: float
    var_image: float


@dataclass(frozen=True)
class VariantStats:
    """Everything the report shows for one (dataset, variant) and one metric, in numbers and codes.

    Words: :func:`archlab.study.wording.verdict_text`, :func:`~archlab.study.wording.answer_line`,
    :func:`~archlab.study.wording.notes`, :func:`~archlab.study.wording.interval_label`.

    Attributes:
        dataset: dataset name.
        variant: variant name.
        metric: the test metric compared.
        baseline: the baseline variant's name.
        is_baseline: whether this is the baseline variant.
        status_counts: number of runs per status.
        failures: ``(seed, error)`` for every failed run (the error as the runner stored it).
        seeds_done: seeds with a finished run and a finite value of ``metric``.
        values: ``{seed: value}`` of ``metric`` on the test split for those seeds.
        summary: spread and intervals of ``values``; ``None`` when there are none.
        params: parameter count; flops: FLOPs of one sample; train_seconds: mean training time.
        n_test: test-set size (``None`` when unknown).
        paired_seeds: seeds the comparison used (finished for both; the first ``look`` seeds in an
            adaptive study).
        seeds_considered: seeds the comparison looked at (``k of n``: ``n``).
        lost_seeds: seeds lost by the variant or the baseline among those considered.
        paired: the descriptive paired tests (the mean difference of the verdict is
            ``paired.mean_diff``, on the metric's grid).
        ci: the interval that decided the verdict (``None`` when no verdict was possible).
        interval: which interval it is (:class:`Interval`); with ``alpha``, ``family`` and
            ``confidence`` it names its level and adjustment.
        margin: the equivalence margin (``None`` for a metric without one).
        tost_p: p-value of the two one-sided tests at ``±margin``.
        primary: whether this metric is the study's primary (confirmatory) metric.
        alpha: the per-comparison level used.
        family: the number of primary comparisons sharing the study's alpha (Bonferroni).
        confidence: level of the per-variant intervals (and of exploratory comparisons).
        min_pairs: the fewest complete pairs a fixed design decides from.
        outcome: the verdict (:class:`Verdict`).
        reasons: :class:`Reason` codes: why an inconclusive comparison is one (first), and caveats
            of a decided one (:attr:`Reason.NOT_CONFIRMED_BY_IMAGES`).
        identical: every paired difference is zero (at least two pairs).
        detectable: smallest difference detectable at 80 % power with these seeds (inconclusive).
        seeds_detect: about how many seeds would detect the observed difference.
        seeds_equivalence: about how many seeds would show equivalence within the margin.
        sign_test_seeds: seeds the exact sign test needs at ``alpha`` (no spread, inconclusive).
        sequential: the sequential decision (adaptive studies, primary metric).
        image_test: the seeds × images test (accuracy with stored predictions).
        failure_counts: ``(variant failed, variant runs, baseline failed, baseline runs)`` when
            any run failed; failure_p: their Boschloo p-value.
        notes: :class:`Note` codes of anomalies in the rows; seeds_without_value: the finished
            seeds without a finite value (:attr:`Note.MISSING_VALUE`).
    """

    dataset: str
    variant: str
    metric: str
    baseline: str
    is_baseline: bool
    status_counts: dict[str, int]
    failures: tuple[tuple[int, str], ...]
    seeds_done: tuple[int, ...]
    values: dict[int, float]
    summary: Summary | None
    params: int | None
    flops: int | None
    train_seconds: float | None
    n_test: int | None = None
    paired_seeds: tuple[int, ...] = ()
    seeds_considered: int = 0
    lost_seeds: tuple[int, ...] = ()
    paired: PairedResult | None = None
    ci: tuple[float, float] | None = None
    interval: Interval = Interval.FIXED
    margin: float | None = None
    tost_p: float | None = None
    primary: bool = True
    alpha: float = 0.05
    family: int = 1
    confidence: float = 0.95
    min_pairs: int = 3
    outcome: Verdict = Verdict.INCONCLUSIVE
    reasons: tuple[Reason, ...] = ()
    identical: bool = False
    detectable: float | None = None
    seeds_detect: int | None = None
    seeds_equivalence: int | None = None
    sign_test_seeds: int | None = None
    sequential: SequentialDecision | None = None
    image_test: ImageTest | None = None
    failure_counts: tuple[int, int, int, int] | None = None
    failure_p: float | None = None
    notes: tuple[Note, ...] = field(default=())
    seeds_without_value: tuple[int, ...] = ()


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
    *,
    bounds: tuple[float, float] | None = None,
    n_boot: int = 9999,
    seed: int = 0,
) -> Summary:
    """Mean, sample std, Student-t CI (and BCa CI from 10 values) of ``values``.

    The t interval is exact for normal values and is the one to quote at a few seeds; a
    percentile bootstrap at 3–5 values covers only 76–84 % (it cannot be wider than the values'
    range), so none is given below 10 values, and above it the bias-corrected and accelerated
    (BCa, Efron 1987) interval of ``scipy.stats.bootstrap`` is used.

    Args:
        values: one metric value per seed.
        confidence: level of the intervals.
        bounds: the metric's valid range (``(0, 1)`` for a rate): the t interval is clipped to it.
        n_boot: bootstrap resamples for BCa.
        seed: seed of the bootstrap generator.

    Raises:
        ConfigError: no values, a non-finite value, ``confidence`` outside (0, 1), ``n_boot < 1``.

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
        return Summary(n=1, mean=mean, std=None, ci_t=None, ci_bca=None, confidence=confidence)
    std = float(x.std(ddof=1))
    lo, hi = _t_interval(mean, std, n, confidence)
    clipped = False
    if bounds is not None and (lo < bounds[0] or hi > bounds[1]):
        lo, hi, clipped = max(lo, bounds[0]), min(hi, bounds[1]), True
    bca = None
    if n >= 10 and std > 0:
        res = sps.bootstrap((x,), np.mean, confidence_level=confidence, method="BCa",
                            n_resamples=n_boot, rng=np.random.default_rng(seed))
        bca = (float(res.confidence_interval.low), float(res.confidence_interval.high))
    return Summary(n=n, mean=mean, std=std, ci_t=(lo, hi), ci_bca=bca, confidence=confidence,
                   clipped=clipped)


# ------------------------------------------------------------------------------------------------
# Paired tests


def _aso_ratio(f: np.ndarray, g: np.ndarray, dt: float) -> np.ndarray:
    """deepsig's violation ratio of quantile curves ``f`` (A) and ``g`` (B) over t = dt..1-dt."""
    diff = g - f  # (..., T)
    w2 = np.sum(diff**2 * dt, axis=-1)
    viol = np.where(f >= g, 0.0, diff)
    num = np.sum(viol[..., 1:] ** 2 * dt, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(w2 == 0, 0.5, num / np.where(w2 == 0, 1.0, w2))


def _quantile(sorted_scores: np.ndarray, p: np.ndarray) -> np.ndarray:
    n = sorted_scores.shape[-1]
    idx = np.clip(np.ceil(n * p).astype(np.int64) - 1, 0, n - 1)
    return np.take_along_axis(sorted_scores, idx, axis=-1) if sorted_scores.ndim > 1 else sorted_scores[idx]


@functools.lru_cache(maxsize=32)
def _aso_uniforms(seed: int, n_boot: int, na: int, nb: int) -> tuple[np.ndarray, np.ndarray]:
    """deepsig's bootstrap draws: iteration ``i`` seeds ``RandomState(seed + i + 1)`` (cached)."""
    ua = np.empty((n_boot, na))
    ub = np.empty((n_boot, nb))
    for i in range(n_boot):
        rs = np.random.RandomState(seed + i + 1)
        ua[i], ub[i] = rs.uniform(0, 1, na), rs.uniform(0, 1, nb)
    ua.flags.writeable = False
    ub.flags.writeable = False
    return ua, ub


def aso_eps_min(
    scores_a: Sequence[float],
    scores_b: Sequence[float],
    *,
    seed: int = 0,
    n_boot: int = 1000,
    dt: float = 0.005,
    confidence: float = 0.95,
) -> float:
    """Almost Stochastic Order :math:`\\varepsilon_{\\min}` of A over B (small: A better).

    A vectorised re-implementation of ``deepsig.aso`` (Ulmer et al., 2022; Dror et al., 2019,
    "Deep Dominance - How to Properly Compare Deep Neural Models") that reproduces it exactly for
    the same ``seed``: bootstrap iteration ``i`` draws ``uniform(0, 1, len(A))`` then
    ``uniform(0, 1, len(B))`` from ``numpy.random.RandomState(seed + i)`` and maps them through
    the empirical quantile functions; :math:`\\varepsilon_{\\min} = \\text{clip}(\\varepsilon_{W_2}
    - \\hat\\sigma\\,\\Phi^{-1}(1 - \\text{confidence}) / c, 0, 1)`, :math:`c = \\sqrt{nm/(n+m)}`.
    Higher scores are better: negate both for a loss. ``deepsig`` reads
    :math:`\\varepsilon_{\\min} < 0.5` as "A better" and recommends the stricter ``< 0.2``.

    Shape:
        - scores_a: ``(n,)``; scores_b: ``(m,)``
    """
    a = np.sort(_as_finite_1d(scores_a, "ASO scores"))
    b = np.sort(_as_finite_1d(scores_b, "ASO scores"))
    if a.size == 0 or b.size == 0:
        raise ConfigError("ASO needs at least one score on each side")
    t = np.arange(dt, 1, dt)
    ratio = float(_aso_ratio(_quantile(a, t), _quantile(b, t), dt))
    ua, ub = _aso_uniforms(int(seed), int(n_boot), a.size, b.size)
    sa = np.sort(_quantile(a, ua), axis=1)  # (B, n) resampled scores, sorted
    sb = np.sort(_quantile(b, ub), axis=1)
    tt = np.broadcast_to(t, (n_boot, t.size))
    samples = _aso_ratio(_quantile(sa, tt), _quantile(sb, tt), dt)  # (B,)
    const = math.sqrt(a.size * b.size / (a.size + b.size))
    sigma = float(np.std(const * (samples - ratio)))
    eps = ratio - (1.0 / const) * sigma * float(sps.norm.ppf(1.0 - confidence))
    return float(np.clip(eps, 0.0, 1.0))


def aso_both(
    variant: Sequence[float], baseline: Sequence[float], *, higher_is_better: bool = True, seed: int = 0
) -> tuple[float, float]:
    """ASO in both directions: (variant over baseline, baseline over variant)."""
    s = 1.0 if higher_is_better else -1.0
    v = [s * float(x) for x in variant]
    b = [s * float(x) for x in baseline]
    return aso_eps_min(v, b, seed=seed), aso_eps_min(b, v, seed=seed)


def paired_test(
    baseline: Sequence[float],
    variant: Sequence[float],
    *,
    aso: bool = True,
    higher_is_better: bool = True,
    resolution: float | None = None,
    seed: int = 0,
) -> PairedResult:
    """Descriptive paired comparison of ``variant`` against ``baseline`` (element ``i`` = seed ``i``).

    The paired t statistic :math:`t = \\bar d / (s_d / \\sqrt n)` (``n - 1`` df), Cohen's
    :math:`d_z = \\bar d / s_d`, the exact Wilcoxon signed-rank test on the differences rounded to
    ``resolution`` (:func:`wilcoxon_signed_rank`) and ASO both ways. All differences zero gives
    ``t_p = wilcoxon_p = 1`` and ``d_z = 0``; a constant non-zero difference gives ``t = ±inf``,
    ``t_p = 0``.

    Raises:
        ConfigError: different lengths, no pairs, or non-finite values.

    Shape:
        - baseline, variant: ``(n,)``
    """
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
    if resolution:
        d = np.rint(d / resolution) * resolution  # equal image counts are equal differences
    mean_diff = float(d.mean())
    if n < 2:
        return PairedResult(n, mean_diff, None, None, None, None, None, resolution=resolution)
    std_diff = float(d.std(ddof=1))
    if not np.any(d):
        t_stat, t_p, d_z = 0.0, 1.0, 0.0
    elif std_diff == 0.0:
        t_stat = math.copysign(math.inf, mean_diff)
        t_p, d_z = 0.0, math.copysign(math.inf, mean_diff)
    else:
        t_stat = mean_diff / (std_diff / math.sqrt(n))
        t_p = float(2.0 * sps.t.sf(abs(t_stat), n - 1))
        d_z = mean_diff / std_diff
    wil_p = wilcoxon_signed_rank(d, resolution)
    av = ab = None
    if aso:
        av, ab = aso_both(b, a, higher_is_better=higher_is_better, seed=seed)
    return PairedResult(n, mean_diff, std_diff, float(t_stat), float(t_p), wil_p, float(d_z),
                        av, ab, resolution)


# ------------------------------------------------------------------------------------------------
# Power (noncentral t) and equivalence


def power_paired_t(delta: float, sd: float, n: int, alpha: float) -> float:
    """Power of the two-sided paired t-test at level ``alpha`` for a true mean difference ``delta``.

    :math:`P(|T'| > t_{1-\\alpha/2, n-1})` with :math:`T'` noncentral t, ``n - 1`` df and
    noncentrality :math:`\\delta\\sqrt n / \\sigma` (as statsmodels' ``TTestPower``).
    """
    if n < 2 or sd <= 0:
        raise ConfigError(f"power needs n >= 2 and sd > 0, got n={n}, sd={sd}")
    df = n - 1
    crit = float(sps.t.isf(alpha / 2.0, df))
    nc = abs(delta) * math.sqrt(n) / sd
    p = float(sps.nct.sf(crit, df, nc) + sps.nct.cdf(-crit, df, nc))
    if math.isfinite(p):
        return p
    # scipy's noncentral t returns NaN for some (df, nc) at very small df (df = 1): integrate
    # T' = (Z + nc) / U, U = sqrt(chi2_df / df), over the density of U instead.
    from scipy import integrate

    def integrand(u: float) -> float:
        dens = sps.chi.pdf(u * math.sqrt(df), df) * math.sqrt(df)
        return float(sps.norm.cdf(nc - crit * u) + sps.norm.cdf(-crit * u - nc)) * dens

    val, _ = integrate.quad(integrand, 0.0, math.inf, limit=200)
    return float(min(1.0, max(0.0, val)))


def detectable_difference(sd: float, n: int, alpha: float, power: float = POWER) -> float:
    """Smallest true difference the two-sided paired t-test detects with ``power`` at ``n`` pairs."""
    if power_paired_t(1e-12 * sd, sd, n, alpha) >= power:
        return 0.0
    hi = sd
    while power_paired_t(hi, sd, n, alpha) < power:
        hi *= 2.0
    lo = 0.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if power_paired_t(mid, sd, n, alpha) < power else (lo, mid)
    return hi


def _smallest_n(ok, start: int = 2) -> int | None:
    """Smallest ``n >= start`` with ``ok(n)`` (``ok`` monotone), or ``None`` beyond the limit."""
    if ok(start):
        return start
    lo, hi = start, start * 2
    while not ok(hi):
        lo, hi = hi, hi * 2
        if hi > MAX_SEEDS:
            return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi


def seeds_to_detect(delta: float, sd: float, alpha: float, power: float = POWER) -> int | None:
    """About how many paired seeds detect a true difference ``delta`` (two-sided t, ``power``).

    ``None`` when ``delta`` is 0 or more than 100000 seeds would be needed.
    """
    if delta == 0 or sd <= 0:
        return None
    return _smallest_n(lambda n: power_paired_t(delta, sd, n, alpha) >= power)


def tost_power(delta: float, sd: float, n: int, margin: float, alpha: float) -> float:
    """Exact power of two one-sided paired t-tests (each at ``alpha``) for equivalence within ±margin.

    Rejecting both :math:`\\Delta \\le -m` and :math:`\\Delta \\ge m` means
    :math:`-m + c\\,s/\\sqrt n < \\bar d < m - c\\,s/\\sqrt n` with :math:`c = t_{1-\\alpha, n-1}`.
    With :math:`\\bar d \\sim N(\\delta, \\sigma^2/n)` independent of
    :math:`s \\sim \\sigma\\sqrt{\\chi^2_{n-1}/(n-1)}`, the power is the integral over ``s`` of the
    normal probability of that window (evaluated by quadrature).
    """
    if n < 2 or sd <= 0 or margin <= 0:
        raise ConfigError(f"TOST power needs n >= 2, sd > 0 and margin > 0, got n={n}, sd={sd}, margin={margin}")
    from scipy import integrate

    df = n - 1
    c = float(sps.t.isf(alpha, df))
    rn = math.sqrt(n)
    s_max = margin * rn / c  # beyond it the window is empty

    def integrand(u: float) -> float:  # u = s / sd, density of s/sd: chi_{df} / sqrt(df)
        s = u * sd
        hi = (margin - c * s / rn - delta) * rn / sd
        lo = (-margin + c * s / rn - delta) * rn / sd
        dens = sps.chi.pdf(u * math.sqrt(df), df) * math.sqrt(df)
        return max(0.0, float(sps.norm.cdf(hi) - sps.norm.cdf(lo))) * dens

    val, _ = integrate.quad(integrand, 0.0, s_max / sd, limit=200)
    return float(min(1.0, max(0.0, val)))


def seeds_for_equivalence(
    delta: float, sd: float, margin: float, alpha: float, power: float = POWER
) -> int | None:
    """About how many seeds show equivalence within ±margin when the true difference is ``delta``.

    ``None`` when ``|delta| >= margin`` (equivalence is then false) or beyond 100000 seeds.
    """
    if abs(delta) >= margin or sd <= 0:
        return None
    return _smallest_n(lambda n: tost_power(delta, sd, n, margin, alpha) >= power)


def tost_p(diffs: Sequence[float], margin: float) -> float:
    """p-value of two one-sided paired t-tests of :math:`|\\Delta| < m`: the larger one-sided p."""
    d = _as_finite_1d(diffs, "differences")
    n = d.size
    if n < 2:
        raise ConfigError(f"TOST needs at least two pairs, got {n}")
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    if sd == 0.0:
        return 0.0 if abs(mean) < margin else 1.0
    se = sd / math.sqrt(n)
    p_lower = float(sps.t.sf((mean + margin) / se, n - 1))  # H0: Δ <= -m
    p_upper = float(sps.t.cdf((mean - margin) / se, n - 1))  # H0: Δ >= m
    return max(p_lower, p_upper)


# ------------------------------------------------------------------------------------------------
# Per-image predictions and failures


def seeds_images_test(base_correct: np.ndarray, var_correct: np.ndarray) -> ImageTest:
    """Test the mean per-image correctness difference with seeds and images as crossed random factors.

    With :math:`D_{si} = \\text{var}_{si} - \\text{base}_{si}` (``S`` seeds × ``N`` images, the same
    images for every seed) and the two-way random-effects model
    :math:`D_{si} = \\mu + a_s + b_i + e_{si}`, the mean squares of seeds, images and residual
    have expectations :math:`N\\sigma_a^2 + \\sigma_e^2`, :math:`S\\sigma_b^2 + \\sigma_e^2` and
    :math:`\\sigma_e^2`. The variance of :math:`\\bar D` is estimated by
    :math:`(MS_{seed} + MS_{image}) / (SN)` — unbiased plus :math:`\\sigma_e^2/(SN)`, so slightly
    conservative, and never negative — and :math:`t = \\bar D / SE` is referred to a t
    distribution with Satterthwaite's degrees of freedom (the quasi-F of Clark, 1973). Counting
    each image once per seed as if independent (pooled McNemar) ignores both :math:`\\sigma_a^2`
    and :math:`\\sigma_b^2` and rejects far too often for two equal models.

    Raises:
        ConfigError: shapes differ, not 2-D, fewer than 2 seeds or 2 images.

    Shape:
        - base_correct, var_correct: ``(S, N)`` booleans
    """
    x = np.asarray(base_correct, dtype=np.float64)
    y = np.asarray(var_correct, dtype=np.float64)
    if x.ndim != 2 or x.shape != y.shape:
        raise ConfigError(f"need two (seeds, images) correctness arrays of one shape, got {x.shape} and {y.shape}")
    S, N = x.shape
    if S < 2 or N < 2:
        raise ConfigError(f"the seeds x images test needs at least 2 seeds and 2 images, got {S} x {N}")
    d = y - x  # (S, N)
    mean = float(d.mean())
    seed_means = d.mean(axis=1)  # (S,)
    image_means = d.mean(axis=0)  # (N,)
    ms_seed = N * float(np.sum((seed_means - mean) ** 2)) / (S - 1)
    ms_image = S * float(np.sum((image_means - mean) ** 2)) / (N - 1)
    var = (ms_seed + ms_image) / (S * N)
    if var == 0.0:
        p = 1.0 if mean == 0.0 else 0.0
        return ImageTest(S, N, mean, 0.0, math.inf, p, 0.0, 0.0)
    df = (ms_seed + ms_image) ** 2 / (ms_seed**2 / (S - 1) + ms_image**2 / (N - 1))
    se = math.sqrt(var)
    p = float(2.0 * sps.t.sf(abs(mean) / se, df))
    return ImageTest(S, N, mean, se, float(df), p, ms_seed / (S * N), ms_image / (S * N))


def failure_test(failed_variant: int, runs_variant: int, failed_base: int, runs_base: int) -> float:
    """Two-sided Boschloo exact test of equal failure rates (variant vs baseline).

    Boschloo's test (uniformly more powerful than Fisher's exact test) on the 2×2 table
    ``[[failed, finished] variant, [failed, finished] baseline]``, by ``scipy.stats.boschloo_exact``.
    """
    for what, v in (("failed_variant", failed_variant), ("runs_variant", runs_variant),
                    ("failed_base", failed_base), ("runs_base", runs_base)):
        if v < 0:
            raise ConfigError(f"{what} must be >= 0, got {v}")
    if failed_variant > runs_variant or failed_base > runs_base:
        raise ConfigError("failed runs cannot outnumber runs")
    if runs_variant == 0 or runs_base == 0 or failed_variant + failed_base == 0:
        return 1.0
    if failed_variant + failed_base == runs_variant + runs_base:
        return 1.0
    table = [[failed_variant, runs_variant - failed_variant], [failed_base, runs_base - failed_base]]
    return float(min(1.0, sps.boschloo_exact(table, alternative="two-sided").pvalue))


def holm(pvalues: Mapping[str, float]) -> dict[str, float]:
    """Holm's step-down adjustment (Holm, 1979) of a family of p-values.

    Sorted ascending, :math:`p_{(i)}` becomes :math:`\\max_{j \\le i} \\min(1, (m - j + 1)p_{(j)})`.

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
# From run rows to per-variant statistics


def _metric_value(run: RunRecord, metric: str) -> float | None:
    # "rotation.pct_angles_correct": a per-run analysis number (archlab.study.analyses)
    test = run.analysis if "." in metric else run.test
    if not isinstance(test, Mapping) or test.get(metric) is None:
        return None
    v = float(test[metric])
    return check_rate(run, metric, v) if math.isfinite(v) else None


def _first_not_none(runs: Sequence[RunRecord], key: str) -> int | None:
    for r in runs:
        if getattr(r, key) is not None:
            return int(getattr(r, key))
    return None


def _correctness(run: RunRecord) -> tuple[np.ndarray, np.ndarray] | None:
    preds, targets = run.test_predictions, run.test_targets
    if preds is None or targets is None:
        return None
    p = np.asarray(preds, dtype=np.int64)
    t = np.asarray(targets, dtype=np.int64)
    if p.shape != t.shape or p.ndim != 1:
        raise DataError(
            f"run ({run.dataset!r}, {run.variant!r}, seed {run.seed}) has "
            f"{p.size} test predictions but {t.size} test targets; they must match one to one"
        )
    return p == t, t


def _image_test_for(
    base_runs: Mapping[int, RunRecord], var_runs: Mapping[int, RunRecord],
    seeds: Sequence[int],
) -> tuple[ImageTest | None, bool]:
    """The seeds × images test over ``seeds``, and whether it was skipped because the test
    images differ between seeds (a split per seed)."""
    xs, ys, targets = [], [], None
    for s in seeds:
        bc, vc = _correctness(base_runs[s]), _correctness(var_runs[s])
        if bc is None or vc is None:
            return None, False
        if bc[1].shape != vc[1].shape or not np.array_equal(bc[1], vc[1]):
            raise DataError(
                f"seed {s}: variant {var_runs[s].variant!r} and the baseline were tested on "
                "different test targets; runs of one seed must share the split. Re-run the study "
                "so that every variant of a seed uses the same data split"
            )
        if targets is None:
            targets = bc[1]
        elif bc[1].shape != targets.shape or not np.array_equal(bc[1], targets):
            return None, True
        xs.append(bc[0])
        ys.append(vc[0])
    if len(xs) < 2:
        return None, False
    return seeds_images_test(np.stack(xs), np.stack(ys)), False


@dataclass(frozen=True)
class _Design:
    """The interval design shared by every comparison of one metric (see :func:`compare_variants`)."""

    baseline: str
    metric: str
    higher_is_better: bool
    percent: bool
    level: float  # per-comparison error rate of the deciding interval
    family: int
    interval: Interval
    margin: float | None
    primary: bool
    confidence: float
    min_pairs: int
    aso: bool
    seed: int


@dataclass
class _Side:
    """One (dataset, variant): its runs by seed and what they give on the metric."""

    runs: dict[int, RunRecord]
    values: dict[int, float]  # seed -> finite test value of the metric (finished runs)
    lost: set[int]  # failed, or finished without a finite value


def _side(by_seed: Mapping[int, RunRecord], metric: str) -> _Side:
    values = {s: v for s, r in by_seed.items()
              if r.status == "done" and (v := _metric_value(r, metric)) is not None}
    lost = {s for s, r in by_seed.items() if r.status == "failed"
            or (r.status == "done" and s not in values)}
    return _Side(dict(by_seed), values, lost)


def _group(runs: Sequence[RunRecord]) -> dict[str, dict[str, dict[int, RunRecord]]]:
    """``{dataset: {variant: {seed: run}}}`` in order of first appearance; a repeat is an error."""
    grouped: dict[str, dict[str, dict[int, RunRecord]]] = {}
    for r in runs:
        ds, var, s = str(r.dataset), str(r.variant), int(r.seed)
        by_seed = grouped.setdefault(ds, {}).setdefault(var, {})
        if s in by_seed:
            raise DataError(
                f"the results hold two runs of (dataset {ds!r}, variant {var!r}, seed {s}); each "
                "must appear once — the results database is inconsistent"
            )
        by_seed[s] = r
    return grouped


def _describe(ds: str, var: str, side: _Side, design: _Design) -> dict[str, Any]:
    """The per-variant fields of :class:`VariantStats`: counts, failures, values and costs."""
    seeds_sorted = sorted(side.runs)
    counts = {k_: 0 for k_ in _STATUSES}
    failures, missing = [], []
    for s in seeds_sorted:
        r = side.runs[s]
        st = str(r.status)
        counts[st] = counts.get(st, 0) + 1
        if st == "failed":
            failures.append((s, str(r.error or "no reason recorded")))
        elif st == "done" and s not in side.values:
            missing.append(s)
    done_runs = [side.runs[s] for s in seeds_sorted if side.runs[s].status == "done"]
    all_runs = done_runs + [side.runs[s] for s in seeds_sorted if side.runs[s].status != "done"]
    secs = [float(r.train_seconds) for r in done_runs if r.train_seconds is not None]
    sizes = {n for r in done_runs if (n := run_test_size(r))}
    values = [side.values[s] for s in sorted(side.values)]
    bounds = (0.0, 1.0) if design.percent else None
    return dict(
        dataset=ds, variant=var, metric=design.metric, baseline=design.baseline,
        is_baseline=var == design.baseline, status_counts=counts, failures=tuple(failures),
        seeds_done=tuple(sorted(side.values)), values=dict(sorted(side.values.items())),
        summary=summarize(values, design.confidence, bounds=bounds, seed=design.seed) if values else None,
        params=_first_not_none(all_runs, "params"), flops=_first_not_none(all_runs, "flops"),
        train_seconds=float(np.mean(secs)) if secs else None, n_test=min(sizes) if sizes else None,
        margin=design.margin, primary=design.primary, alpha=design.level, family=design.family,
        interval=design.interval, confidence=design.confidence, min_pairs=design.min_pairs,
        seeds_without_value=tuple(missing), notes=(Note.MISSING_VALUE,) if missing else (),
    )


def _deciding_interval(
    d: np.ndarray, decision: SequentialDecision | None, design: _Design, resolution: float | None = None
) -> tuple[tuple[float, float] | None, bool]:
    """The interval that decides (``None``: none possible) and whether only the sign test could."""
    n = d.size
    identical = n >= 2 and not np.any(d)
    ci = None
    sign_only = False
    if decision is not None:
        ci = decision.ci if decision.n_pairs == n and n >= 2 else None
    elif n >= design.min_pairs or identical:
        sd = paired_sd(d, resolution)
        mean = float(d.mean())
        if sd == 0.0 and mean != 0.0 and 2.0 ** (1 - n) > design.level:
            # the same non-zero difference on every pair (t is infinite): only the sign test is
            # left, and all n signs agreeing has p = 2^(1-n) under no difference
            sign_only = True
        elif sd == 0.0:
            ci = (mean, mean)
        else:
            half = float(sps.t.isf(design.level / 2.0, n - 1)) * sd / math.sqrt(n)
            ci = (mean - half, mean + half)
    if ci is not None and design.percent:
        ci = (max(ci[0], -1.0), min(ci[1], 1.0))  # a difference of rates lies in [-1, 1]
    return ci, sign_only


def _power(d: np.ndarray, design: _Design, resolution: float | None = None) -> dict[str, Any]:
    """What more seeds would do: the detectable difference and the seeds to detect / show equivalence."""
    n = d.size
    if n < 2 or paired_sd(d, resolution) == 0.0:
        return {}
    sd, mean = paired_sd(d, resolution), float(d.mean())
    margin = design.margin
    return dict(
        detectable=detectable_difference(sd, n, design.level),
        seeds_detect=seeds_to_detect(mean, sd, design.level),
        seeds_equivalence=(seeds_for_equivalence(mean, sd, margin, design.level / 2.0)
                           if margin is not None else None),
    )


def _why_inconclusive(d: np.ndarray, sign_only: bool, sequential: bool, design: _Design,
                      resolution: float | None = None, blocked: bool = False) -> dict[str, Any]:
    """The reason code (and power numbers) of an inconclusive comparison."""
    n = d.size
    if blocked:
        return dict(reasons=(Reason.FAILURES_NOT_SURVIVED,), **_power(d, design, resolution))
    identical = n >= 2 and not np.any(d)
    if n < 2 or (not sequential and n < design.min_pairs and not identical):
        reason = Reason.NO_PAIRS if n == 0 else Reason.TOO_FEW_PAIRS
        return dict(reasons=(reason,), **_power(d, design, resolution))
    if identical:
        return dict(reasons=(Reason.IDENTICAL_NO_MARGIN,))
    if sign_only:
        return dict(reasons=(Reason.NO_SPREAD_SIGN_TEST,),
                    sign_test_seeds=math.ceil(1 + math.log2(1 / design.level)))
    return dict(reasons=(Reason.INTERVAL_UNDECIDED,), **_power(d, design, resolution))


def _compare(var_side: _Side, base_side: _Side, decision: SequentialDecision | None,
             design: _Design, n_test: int | None) -> dict[str, Any]:
    """Pair the variant with the baseline by seed and decide: the comparison fields of
    :class:`VariantStats`."""
    if decision is not None:
        considered = [s for s in sorted(set(var_side.runs) | set(base_side.runs)) if s < decision.look]
    else:
        considered = sorted(s for s in set(var_side.runs) | set(base_side.runs)
                            if (s in var_side.values or s in var_side.lost)
                            and (s in base_side.values or s in base_side.lost))
    paired_seeds = tuple(s for s in considered if s in var_side.values and s in base_side.values)
    lost = tuple(s for s in considered if s in var_side.lost or s in base_side.lost)
    resolution = 1.0 / n_test if design.metric == "accuracy" and n_test else None
    n = len(paired_seeds)
    info: dict[str, Any] = dict(paired_seeds=paired_seeds, seeds_considered=len(considered),
                                lost_seeds=lost, sequential=decision)
    if n:
        info["paired"] = paired_test([base_side.values[s] for s in paired_seeds],
                                     [var_side.values[s] for s in paired_seeds],
                                     aso=design.aso and n >= 2, higher_is_better=design.higher_is_better,
                                     resolution=resolution, seed=design.seed)
    d = np.array([var_side.values[s] - base_side.values[s] for s in paired_seeds])
    if resolution:
        d = np.rint(d / resolution) * resolution
    if design.margin is not None and n >= 2:
        info["tost_p"] = tost_p(d, design.margin)
    info["identical"] = n >= 2 and not np.any(d)
    ci, sign_only = _deciding_interval(d, decision, design, resolution)
    info["ci"] = ci
    outcome = (interval_verdict(ci, design.margin, design.higher_is_better) if ci is not None
               else Verdict.INCONCLUSIVE)
    blocked = False
    if decision is not None:
        blocked = Reason.FAILURES_NOT_SURVIVED in decision.reasons
        if not decision.decided:
            outcome = Verdict.INCONCLUSIVE
    elif not survives_failures(outcome, d, _lost_by(lost, var_side, base_side), design.level,
                               design.higher_is_better, resolution):
        outcome, blocked = Verdict.INCONCLUSIVE, True  # a failure is an outcome (archlab.study.failures)
    info["outcome"] = outcome
    if outcome == Verdict.INCONCLUSIVE:
        info.update(_why_inconclusive(d, sign_only, decision is not None, design, resolution, blocked))
    return info


def _lost_by(lost: Sequence[int], var_side: _Side, base_side: _Side) -> dict[int, str]:
    """Who lost each lost seed: the variant, the baseline or both."""
    return {s: BOTH if s in var_side.lost and s in base_side.lost else VARIANT if s in var_side.lost
            else BASELINE for s in lost}


def _checks(var_side: _Side, base_side: _Side, info: dict[str, Any], design: _Design) -> dict[str, Any]:
    """The seeds × images test (accuracy) and the failure rates, with the notes they raise."""
    out: dict[str, Any] = {}
    notes = list(info["notes"])
    reasons = list(info.get("reasons", ()))
    if not base_side.runs:
        notes.append(Note.BASELINE_ABSENT)
    paired_seeds = info["paired_seeds"]
    if design.metric == "accuracy" and len(paired_seeds) >= 2:
        it, differ = _image_test_for(base_side.runs, var_side.runs, paired_seeds)
        out["image_test"] = it
        if differ:
            notes.append(Note.TEST_IMAGES_DIFFER)
        if it is not None and info["outcome"] in (Verdict.BETTER, Verdict.WORSE) and it.p >= design.level:
            reasons.append(Reason.NOT_CONFIRMED_BY_IMAGES)
    var_fail = sum(1 for r in var_side.runs.values() if r.status == "failed")
    base_fail = sum(1 for r in base_side.runs.values() if r.status == "failed")
    if var_fail or base_fail:
        nv = sum(1 for r in var_side.runs.values() if r.status in ("done", "failed"))
        nb = sum(1 for r in base_side.runs.values() if r.status in ("done", "failed"))
        out["failure_counts"] = (var_fail, nv, base_fail, nb)
        out["failure_p"] = failure_test(var_fail, nv, base_fail, nb)
        notes.append(Note.FAILURES)
    out.update(notes=tuple(notes), reasons=tuple(reasons))
    return out


def _check_comparison(alpha: float, confidence: float, min_pairs: int, margin: float | None, metric: str) -> None:
    _check_alpha(alpha)
    _check_confidence(confidence)
    if min_pairs < 2:
        raise ConfigError(f"min_pairs must be >= 2 (a paired t-test needs two pairs), got {min_pairs!r}")
    if margin is not None and not (margin > 0 and math.isfinite(margin)):
        raise ConfigError(f"the equivalence margin of {metric!r} must be a positive number, got {margin!r}")


def compare_variants(
    runs: Sequence[RunRecord],
    *,
    baseline: str,
    metric: str = "accuracy",
    alpha: float = 0.05,
    margin: float | None = None,
    primary: bool = True,
    family: int | None = None,
    looks: Sequence[int] | None = None,
    confidence: float = 0.95,
    min_pairs: int = 3,
    aso: bool = True,
    seed: int = 0,
    spend: str = DEFAULT_SPENDING,
) -> list[VariantStats]:
    """Group run rows by (dataset, variant), pair each variant with the baseline by seed, decide.

    Each run is a :class:`~archlab.study.record.RunRecord`; finished runs (``status == "done"``)
    carry ``test`` (metric -> value) and optionally ``params``,
    ``flops``, ``train_seconds``, ``test_predictions``/``test_targets``, ``provenance`` and
    ``error`` (failed). Only finished runs with a finite test value of ``metric`` enter the
    statistics; the others are counted by status, and a seed that either side lost is named.

    The steps: :func:`_group` the rows, :func:`_describe` each (dataset, variant), :func:`_compare`
    it with the baseline (pairs, tests, the deciding interval, the verdict and its reasons), then
    :func:`_checks` (seeds × images, failure rates); the body is ~35 lines, the rest is this
    docstring. Words: :mod:`archlab.study.wording`.

    Args:
        runs: the study's run records (:meth:`archlab.study.store.StudyStore.rows`).
        baseline: name of the baseline variant.
        metric: test metric to compare (``accuracy``, ``f1_macro``, ``dice``, ``loss``).
        alpha: the study's family-wise error rate.
        margin: the equivalence margin of ``metric`` (``None``: no "equivalent" verdict).
        primary: the metric is the study's primary metric (Bonferroni over ``family``); else
            exploratory (unadjusted level ``1 - confidence``).
        family: number of primary comparisons sharing ``alpha`` (default: the (dataset, variant)
            comparisons in ``runs``).
        looks: the planned looks of an adaptive study (:func:`archlab.study.sequential.plan_looks`);
            the primary verdict is then the sequential decision.
        confidence: level of the per-variant intervals and of exploratory comparisons.
        min_pairs: fewest paired seeds for a verdict in a fixed design (identical results on every
            pair are decided from two).
        aso: compute ASO both ways.
        seed: seed of the bootstrap and ASO.
        spend: the alpha-spending function of an adaptive design
            (:data:`archlab.study.sequential.SPENDING_FUNCTIONS`).

    Returns:
        One :class:`VariantStats` per (dataset, variant): datasets in order of first appearance,
        the baseline first within a dataset, then the other variants in order of appearance.

    Raises:
        UnknownNameError: ``baseline`` is not a variant of any run, or ``metric`` is unknown.
        DataError: the same (dataset, variant, seed) twice, or paired runs tested on different
            targets.
    """
    _check_comparison(alpha, confidence, min_pairs, margin, metric)
    higher_is_better, percent = metric_direction(metric)
    if not runs:
        return []
    variants_seen = list(dict.fromkeys(str(r.variant) for r in runs))
    if baseline not in variants_seen:
        raise UnknownNameError("baseline variant", baseline, variants_seen)
    grouped = _group(runs)
    k = family if family is not None else max(
        1, sum(1 for by_var in grouped.values() for v in by_var if v != baseline))
    seq = None
    if primary and looks is not None:
        seq = sequential_decisions(runs, baseline=baseline, metric=metric, margin=margin,
                                   alpha=alpha, looks=looks, family=k, spend=spend)
    interval = (Interval.EXPLORATORY if not primary else
                Interval.SEQUENTIAL if seq is not None else Interval.FIXED)
    design = _Design(baseline, metric, higher_is_better, percent, alpha / k if primary else 1.0 - confidence,
                     k, interval, margin, primary, confidence, min_pairs, aso, seed)
    out: list[VariantStats] = []
    for ds, by_var in grouped.items():
        order = ([baseline] if baseline in by_var else []) + [v for v in by_var if v != baseline]
        base_side = _side(by_var.get(baseline, {}), metric)
        for var in order:
            var_side = _side(by_var[var], metric)
            info = _describe(ds, var, var_side, design)
            if var == baseline:
                out.append(VariantStats(**info, outcome=Verdict.BASELINE))
                continue
            decision = seq.get((ds, var)) if seq is not None else None
            info.update(_compare(var_side, base_side, decision, design, info["n_test"]))
            info.update(_checks(var_side, base_side, info, design))
            out.append(VariantStats(**info))
    return out
