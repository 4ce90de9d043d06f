"""Across datasets: interquartile mean, probability of improvement and a critical-difference ranking.

When a study runs the same grid on several datasets, three summaries answer "which variant is
better overall?" (shown by the report when there are at least two datasets):

- **Interquartile mean (IQM)** of a variant's scores over every (dataset, seed) run — the mean of
  the middle 50 %, robust to one outlying run yet using half the runs (Agarwal et al., 2021, "Deep
  Reinforcement Learning at the Edge of the Statistical Precipice", NeurIPS; the ``rliable``
  library) — with a **stratified bootstrap** interval: seeds are resampled *within* each dataset,
  so every dataset keeps its weight.
- **Probability of improvement** :math:`P(X > Y)` of the variant over the baseline: per dataset
  the Mann–Whitney probability that a random run of the variant beats a random run of the
  baseline (ties count 1/2), averaged over datasets, with the same stratified bootstrap (as
  ``rliable``'s ``probability_of_improvement``). 0.5 means no systematic difference.
- **Critical-difference ranking** (Demšar, 2006, "Statistical Comparisons of Classifiers over
  Multiple Data Sets", JMLR 7:1–30): variants are ranked on each dataset by their mean score
  (ties get mid-ranks), the Friedman test checks whether the average ranks differ at all, and
  the Nemenyi critical difference :math:`CD = q_\\alpha \\sqrt{k(k+1)/(6N)}` says which pairs
  of average ranks are far enough apart (``q_alpha`` from the studentized range distribution
  divided by :math:`\\sqrt 2`). With few datasets the Friedman test has little power; the ranks are
  then descriptive.

The bootstrap intervals are percentile intervals, as ``rliable`` gives them; with a handful of
seeds per dataset they are descriptive, not a test (the per-dataset verdicts are the tests).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from archlab.errors import ConfigError

__all__ = [
    "iqm",
    "stratified_bootstrap_ci",
    "probability_of_improvement",
    "Ranking",
    "friedman_nemenyi",
    "nemenyi_q",
    "VariantAggregate",
    "aggregate_variants",
]


def iqm(x: Sequence[float]) -> float:
    """Interquartile mean: the 25 %-trimmed mean (``scipy.stats.trim_mean(x, 0.25)``, as rliable)."""
    arr = np.asarray(x, dtype=np.float64).ravel()
    if arr.size == 0:
        raise ConfigError("IQM needs at least one value")
    return float(sps.trim_mean(arr, 0.25))


def _check_scores(scores: Mapping[str, Sequence[float]], what: str) -> dict[str, np.ndarray]:
    out = {}
    for task, vals in scores.items():
        arr = np.asarray(vals, dtype=np.float64).ravel()
        if arr.size == 0:
            raise ConfigError(f"{what}: dataset {task!r} has no finished runs")
        if not np.all(np.isfinite(arr)):
            raise ConfigError(f"{what}: dataset {task!r} has non-finite scores")
        out[task] = arr
    if not out:
        raise ConfigError(f"{what}: no datasets")
    return out


def stratified_bootstrap_ci(
    scores: Mapping[str, Sequence[float]], *, confidence: float = 0.95, n_boot: int = 2000, seed: int = 0
) -> tuple[float, tuple[float, float]]:
    """IQM over all runs of all datasets, and its stratified-bootstrap percentile interval.

    Args:
        scores: dataset -> the variant's scores on it (one per seed).

    Returns:
        ``(iqm, (low, high))``.
    """
    data = _check_scores(scores, "IQM")
    point = iqm(np.concatenate(list(data.values())))
    rng = np.random.default_rng(seed)
    parts = []
    for arr in data.values():  # resample seeds within each dataset
        idx = rng.integers(0, arr.size, size=(n_boot, arr.size))
        parts.append(arr[idx])  # (B, n_task)
    boot = np.concatenate(parts, axis=1)  # (B, total)
    stats = sps.trim_mean(boot, 0.25, axis=1)  # (B,)
    lo, hi = np.quantile(stats, [0.5 - confidence / 2, 0.5 + confidence / 2])
    return point, (float(lo), float(hi))


def _poi(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) + P(X = Y)/2 over the last axis pairs. Shape: x (..., n), y (..., m) -> (...)."""
    gt = (x[..., :, None] > y[..., None, :]).mean(axis=(-1, -2))
    eq = (x[..., :, None] == y[..., None, :]).mean(axis=(-1, -2))
    return gt + 0.5 * eq


def probability_of_improvement(
    variant: Mapping[str, Sequence[float]],
    baseline: Mapping[str, Sequence[float]],
    *,
    higher_is_better: bool = True,
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> tuple[float, tuple[float, float]]:
    """Average over datasets of P(variant run beats baseline run), with a stratified bootstrap CI.

    Returns:
        ``(probability, (low, high))``.

    Raises:
        ConfigError: the two mappings cover different datasets, or a dataset has no scores.
    """
    v = _check_scores(variant, "probability of improvement")
    b = _check_scores(baseline, "probability of improvement")
    if set(v) != set(b):
        raise ConfigError(f"variant and baseline must cover the same datasets, got {sorted(v)} and {sorted(b)}")
    sign = 1.0 if higher_is_better else -1.0
    tasks = sorted(v)
    point = float(np.mean([_poi(sign * v[t], sign * b[t]) for t in tasks]))
    rng = np.random.default_rng(seed)
    boots = []
    for t in tasks:
        xv = sign * v[t][rng.integers(0, v[t].size, size=(n_boot, v[t].size))]
        xb = sign * b[t][rng.integers(0, b[t].size, size=(n_boot, b[t].size))]
        boots.append(_poi(xv, xb))  # (B,)
    stats = np.mean(boots, axis=0)
    lo, hi = np.quantile(stats, [0.5 - confidence / 2, 0.5 + confidence / 2])
    return point, (float(lo), float(hi))


def nemenyi_q(k: int, alpha: float = 0.05) -> float:
    """Nemenyi's :math:`q_\\alpha` for ``k`` classifiers: studentized range quantile / sqrt(2).

    Reproduces Demšar (2006), Table 5(a) (e.g. ``k = 4``, ``alpha = 0.05``: 2.569).
    """
    if k < 2:
        raise ConfigError(f"a ranking needs at least 2 variants, got {k}")
    return float(sps.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2))


@dataclass(frozen=True)
class Ranking:
    """Friedman test and Nemenyi critical difference over datasets.

    Attributes:
        variants: the ranked variants.
        avg_ranks: average rank per variant (1 = best), same order as ``variants``.
        datasets: number of datasets ``N``.
        chi2: Friedman statistic (tie-corrected, as ``scipy.stats.friedmanchisquare``).
        p: its p-value (chi-square, ``k - 1`` df); ``None`` with fewer than 3 variants.
        cd: Nemenyi critical difference at ``alpha``.
        alpha: the level.
    """

    variants: tuple[str, ...]
    avg_ranks: tuple[float, ...]
    datasets: int
    chi2: float | None
    p: float | None
    cd: float
    alpha: float

    def groups(self) -> list[tuple[str, ...]]:
        """Maximal sets of variants whose average ranks lie within one CD (not told apart)."""
        order = sorted(zip(self.avg_ranks, self.variants))
        out: list[tuple[str, ...]] = []
        for i in range(len(order)):
            j = i
            while j + 1 < len(order) and order[j + 1][0] - order[i][0] < self.cd:
                j += 1
            group = tuple(v for _, v in order[i:j + 1])
            if len(group) > 1 and not any(set(group) <= set(g) for g in out):
                out.append(group)
        return out


def friedman_nemenyi(
    means: np.ndarray, variants: Sequence[str], *, higher_is_better: bool = True, alpha: float = 0.05
) -> Ranking:
    """Average ranks, Friedman test and Nemenyi CD from a (datasets, variants) matrix of means.

    Shape:
        - means: ``(N, k)`` — one row per dataset, one column per variant
    """
    m = np.asarray(means, dtype=np.float64)
    if m.ndim != 2 or m.shape[1] != len(variants):
        raise ConfigError(f"means must be (datasets, {len(variants)} variants), got shape {m.shape}")
    N, k = m.shape
    if N < 1 or k < 2:
        raise ConfigError(f"a ranking needs at least 1 dataset and 2 variants, got {N} x {k}")
    if not np.all(np.isfinite(m)):
        raise ConfigError("every variant needs a finite mean on every dataset for the ranking")
    score = -m if higher_is_better else m  # rank 1 = best
    ranks = np.vstack([sps.rankdata(row) for row in score])  # (N, k)
    avg = ranks.mean(axis=0)
    chi2 = p = None
    if k >= 3 and N >= 2:
        # Friedman with the tie correction (scipy.stats.friedmanchisquare's form).
        ssr = float(np.sum((ranks.sum(axis=0) - N * (k + 1) / 2.0) ** 2))
        ties = 0.0
        for row in ranks:
            _, counts = np.unique(row, return_counts=True)
            ties += float(np.sum(counts**3 - counts))
        denom = N * k * (k + 1) / 12.0 - ties / (12.0 * (k - 1))
        if denom > 0:
            chi2 = ssr / denom
            p = float(sps.chi2.sf(chi2, k - 1))
    cd = nemenyi_q(k, alpha) * math.sqrt(k * (k + 1) / (6.0 * N))
    return Ranking(tuple(variants), tuple(float(a) for a in avg), N, chi2, p, cd, alpha)


@dataclass(frozen=True)
class VariantAggregate:
    """Across-dataset summary of one variant (see the module docstring)."""

    variant: str
    runs: int
    iqm: float
    iqm_ci: tuple[float, float]
    poi: float | None
    poi_ci: tuple[float, float] | None


def aggregate_variants(
    values: Mapping[str, Mapping[str, Sequence[float]]],
    baseline: str,
    *,
    higher_is_better: bool = True,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[list[VariantAggregate], Ranking | None]:
    """IQM, probability of improvement and the ranking from ``{variant: {dataset: scores}}``.

    Variants missing a dataset get no probability of improvement and are left out of the
    ranking (it needs every variant on every dataset).
    """
    datasets = sorted({d for per in values.values() for d in per})
    out = []
    for var, per in values.items():
        per = {d: s for d, s in per.items() if len(s)}
        if not per:
            continue
        point, ci = stratified_bootstrap_ci(per, seed=seed)
        poi = poi_ci = None
        base = {d: s for d, s in values.get(baseline, {}).items() if len(s)}
        if var != baseline and set(per) == set(base):
            poi, poi_ci = probability_of_improvement(per, base, higher_is_better=higher_is_better, seed=seed)
        out.append(VariantAggregate(var, sum(len(s) for s in per.values()), point, ci, poi, poi_ci))
    complete = [v for v, per in values.items() if all(len(per.get(d, ())) for d in datasets)]
    ranking = None
    if len(complete) >= 2 and len(datasets) >= 2:
        means = np.array([[float(np.mean(values[v][d])) for v in complete] for d in datasets])
        ranking = friedman_nemenyi(means, complete, higher_is_better=higher_is_better, alpha=alpha)
    return out, ranking
