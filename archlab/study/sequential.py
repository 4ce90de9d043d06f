"""Seeds until conclusive: a group-sequential design with repeated confidence intervals.

``seeds: {min, max, step, until: conclusive}`` trains seeds in rounds and looks at the paired
differences ``variant - baseline`` after every round ("look"). Looking repeatedly at a growing
sample and stopping when something looks significant inflates the error rate of a fixed-n test
(Armitage, McPherson & Rowe, 1969); this module keeps it at ``alpha`` with:

- **Lan–DeMets alpha spending** (Lan & DeMets, 1983, "Discrete sequential boundaries for clinical
  trials", Biometrika 70:659–663) with the **O'Brien–Fleming-type** spending function, two-sided
  with :math:`\\alpha/2` per side: :math:`\\alpha(\\tau) = 4 - 4\\Phi(z_{1-\\alpha/4}/\\sqrt{\\tau})`.
  ``tau`` is the information fraction: complete pairs at this look / the planned maximum of seeds. The last
  planned look spends whatever is left (``tau = 1``), so lost seeds make the design conservative,
  never liberal. Early looks spend almost nothing (the boundary is wide), the final look is close
  to the fixed-n test: little power is lost against a fixed design of ``max`` seeds, and large or
  clearly absent differences stop early.
- The boundaries :math:`c_1, \\dots, c_K` (Z scale) solve
  :math:`P_0(|Z_j| < c_j\\ \\forall j < k,\\ |Z_k| \\ge c_k) = \\alpha(\\tau_k) - \\alpha(\\tau_{k-1})`
  for the canonical joint distribution of the Z statistics
  (:math:`\\operatorname{corr}(Z_j, Z_k) = \\sqrt{\\tau_j / \\tau_k}`), by the recursive numerical
  integration of Armitage et al. (1969) on a grid (:func:`spending_boundaries`). They depend only
  on the information observed so far, so a later look never changes an earlier decision.
- **Unknown variance** (a handful of seeds): the spending is applied to the paired *t*
  statistics themselves. Under no difference their joint law does not depend on the unknown
  variance, so it is simulated once per design (200 000 paths, a fixed seed: a deterministic
  function of the pair counts) and each boundary is the quantile that spends exactly
  :math:`\\alpha(\\tau_k) - \\alpha(\\tau_{k-1})` among the paths still running
  (:func:`calibrated_t_boundaries`). The textbook shortcut — carry each Z boundary to
  :math:`t_{n_k-1}` at equal nominal significance (Jennison & Turnbull, 2000, "Group Sequential
  Methods with Applications to Clinical Trials", §11.4) — keeps the marginal levels but not the
  joint one: measured 5.46 % ± 0.16 % false "better/worse" at alpha = 5 % with 18 looks at 3..20
  seeds. It is used only above 60 pairs, where the t is close to normal.
- **Repeated confidence intervals** (Jennison & Turnbull, 1989, JRSS B 51:305–361): at look ``k``
  the interval :math:`\\bar d \\pm t_k\\, s_d / \\sqrt{n_k}`. These intervals hold the true mean
  difference at *all* looks simultaneously with probability :math:`\\ge 1 - \\alpha`, whatever the
  stopping rule, so every claim read off them keeps its error rate under optional stopping:

  - **better / worse**: the interval excludes 0 (sign by the metric's direction);
  - **equivalent within ±m**: the interval lies inside :math:`(-m, m)` — the repeated-CI form of
    two one-sided tests (each at ``alpha / 2``), which makes stopping for equivalence (futility)
    as valid as stopping for a difference;
  - otherwise the comparison continues, and is **inconclusive** when ``max`` is reached.

  A wrong claim (a difference when there is none, a wrong sign, equivalence when
  :math:`|\\Delta| \\ge m`) needs the true difference outside the interval at the look that
  stopped, so its probability is at most ``alpha`` per comparison.
- **Multiplicity**: the study's ``alpha`` is split over the comparisons of the primary metric
  (Bonferroni: ``alpha / k`` for ``k`` (dataset, variant) comparisons), so the family-wise error
  rate of all primary verdicts is at most ``alpha``.

No spread: identical results on every pair (the same model under two names) give the interval
[0, 0], hence "equivalent"; the same *non-zero* difference on every pair (a discrete metric, +1 image
on every seed) makes t infinite, so it is decided only by the exact sign test (all ``k`` signs agree:
:math:`p = 2^{1-k}`) at the look's nominal level. Differences are rounded to the metric's grid
(``1/N`` for an accuracy on ``N`` test images) so that float noise neither creates nor hides spread.

A look uses only **complete pairs of the first n seeds**: seeds ``< n`` that finished for both the
variant and the baseline with a finite value. A seed lost by either side (failed run, NaN) is named
in the decision and the comparison uses the remaining pairs ("on k of n seeds"). A look is taken
only once every seed ``< n`` of both sides has finished or failed (nothing pending or running),
so the decisions are a deterministic function of the stored rows: the runner after a round and
the report later compute the same thing.

A :class:`SequentialDecision` holds numbers and :class:`~archlab.study.verdicts.Reason` codes
(``STOPPED``; ``CONTINUING`` or ``MAX_SEEDS_REACHED`` with the cause; ``WAITING_FIRST_LOOK``);
:func:`archlab.study.wording.sequential_reason` says it in words.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats as sps

from archlab.errors import ConfigError
from archlab.study.failures import BASELINE, BOTH, VARIANT, survives_failures
from archlab.study.metrics import check_rate, metric_direction, run_test_size
from archlab.study.record import RunRecord
from archlab.study.verdicts import Reason, Verdict

__all__ = [
    "SequentialDecision",
    "Verdict",
    "plan_looks",
    "spending",
    "spending_boundaries",
    "t_boundary",
    "interval_verdict",
    "sequential_path",
    "sequential_decisions",
    "family_size",
    "calibrated_t_boundaries",
    "paired_sd",
    "DEFAULT_SPENDING",
    "LEGACY_SPENDING",
    "SPENDING_FUNCTIONS",
    "SPREAD_TOLERANCE",
]

@dataclass(frozen=True)
class SequentialDecision:
    """The state of one comparison (variant vs baseline on one dataset and metric), in numbers.

    Words: :func:`archlab.study.wording.sequential_reason`.

    Attributes:
        verdict: ``better``, ``worse``, ``equivalent`` or ``inconclusive``.
        decided: whether the comparison stopped with a decision (the runner adds no more seeds).
        n_pairs: complete pairs the decision used.
        look: the number of seeds (``n``, a planned look) the decision was taken at; 0 before the
            first complete look.
        reasons: why it stopped or continues: :attr:`Reason.STOPPED`; or :attr:`Reason.CONTINUING` /
            :attr:`Reason.MAX_SEEDS_REACHED` followed by the cause (:attr:`Reason.TOO_FEW_PAIRS`,
            :attr:`Reason.NO_NEW_PAIRS`, :attr:`Reason.INTERVAL_UNDECIDED`,
            :attr:`Reason.NO_SPREAD_SIGN_TEST`); or :attr:`Reason.WAITING_FIRST_LOOK`.
        lost_seeds: seeds ``< look`` lost by the variant or the baseline (failed, no finite value).
        mean_diff: mean of ``variant - baseline`` over the pairs (``None`` without pairs).
        ci: the repeated confidence interval of the mean difference at this look.
        t_crit: the critical t value of this look (``inf`` when nothing may be spent yet).
        alpha: the per-comparison level (after the multiplicity split).
        analyses: ``(n_seeds, n_pairs, t_crit)`` of every look analysed so far.
        first_look: the first planned look (seeds).
        max_seeds: the last planned look (seeds).
    """

    verdict: Verdict
    decided: bool
    n_pairs: int
    look: int
    reasons: tuple[Reason, ...]
    lost_seeds: list[int] = field(default_factory=list)
    mean_diff: float | None = None
    ci: tuple[float, float] | None = None
    t_crit: float | None = None
    alpha: float | None = None
    analyses: tuple[tuple[int, int, float], ...] = ()
    first_look: int = 0
    max_seeds: int = 0


# ------------------------------------------------------------------------------------------------
# Design


def plan_looks(min_seeds: int, max_seeds: int, step: int) -> list[int]:
    """The seed counts at which the comparisons are looked at: ``min, min+step, ..., max``.

    The last look is always ``max`` (added when the steps do not land on it).

    Raises:
        ConfigError: ``min < 2``, ``max < min`` or ``step < 1``.
    """
    for name, v in (("min", min_seeds), ("max", max_seeds), ("step", step)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ConfigError(f"seeds.{name} must be an integer, got {v!r}")
    if min_seeds < 2:
        raise ConfigError(f"seeds.min must be at least 2 (a paired test needs two pairs), got {min_seeds}")
    if max_seeds < min_seeds:
        raise ConfigError(f"seeds.max ({max_seeds}) must be at least seeds.min ({min_seeds})")
    if step < 1:
        raise ConfigError(f"seeds.step must be at least 1, got {step}")
    looks = list(range(int(min_seeds), int(max_seeds) + 1, int(step)))
    if looks[-1] != max_seeds:
        looks.append(int(max_seeds))
    return looks


def spending(tau: float, alpha: float, kind: str = "obrien_fleming") -> float:
    """Cumulative two-sided alpha spent by information fraction ``tau`` (Lan & DeMets, 1983).

    ``obrien_fleming``: :math:`4 - 4\\Phi(z_{1-\\alpha/4}/\\sqrt\\tau)` (``alpha / 2`` per side,
    each spent by the one-sided O'Brien–Fleming-type function; the convention of ``ldbounds`` and
    ``gsDesign``, whose published boundaries the tests reproduce);
    ``pocock``: :math:`\\alpha \\ln(1 + (e - 1)\\tau)`;
    ``linear``, ``quadratic``, ``cubic``: the power family :math:`\\alpha\\tau^\\rho`, ``rho`` = 1, 2, 3
    (Kim & DeMets, 1987; ``gsDesign::sfPower``).
    """
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha must be in (0, 1), got {alpha!r}")
    if tau <= 0.0:
        return 0.0
    tau = min(float(tau), 1.0)
    if kind == "obrien_fleming":  # alpha/2 per side, each side spent as Lan & DeMets' one-sided OBF
        return float(4.0 * sps.norm.sf(sps.norm.isf(alpha / 4.0) / math.sqrt(tau)))
    if kind == "pocock":
        return float(alpha * math.log(1.0 + (math.e - 1.0) * tau))
    if kind in _POWER_FAMILY:
        return float(alpha * tau ** _POWER_FAMILY[kind])
    raise ConfigError(f"unknown spending function {kind!r}; use one of {', '.join(SPENDING_FUNCTIONS)}")


#: Kim & DeMets (1987) power-family spending :math:`\alpha\tau^\rho` by name.
_POWER_FAMILY = {"linear": 1.0, "quadratic": 2.0, "cubic": 3.0}
#: The spending functions a study may name (``seeds: {..., spending: quadratic}``).
SPENDING_FUNCTIONS = ("obrien_fleming", "pocock", *_POWER_FAMILY)
#: The default, chosen by simulation (``bench/verdicts.py``, docs/statistics.md): the quadratic
#: power family decides a difference of tens of standard deviations at the first look (the
#: O'Brien–Fleming type needs t ≈ 500 at 3 of 12 seeds) for ~2–5 points of power at 1 sd.
DEFAULT_SPENDING = "quadratic"
#: What a study stored before ``spending`` existed was run with.
LEGACY_SPENDING = "obrien_fleming"


_BIG = 40.0  # a boundary that nothing crosses (no alpha to spend at this look)


def _simpson(a: float, b: float, h_max: float) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and Simpson weights on [a, b] with spacing at most ``h_max`` (odd node count)."""
    m = max(2, int(math.ceil((b - a) / h_max)))
    m += m % 2
    x = np.linspace(a, b, m + 1)
    w = np.ones(m + 1)
    w[1:-1:2], w[2:-1:2] = 4.0, 2.0
    return x, w * (b - a) / (3.0 * m)


def spending_boundaries(
    taus: Sequence[float], spent: Sequence[float], *, grid: float = 0.125
) -> list[float]:
    """Two-sided Z boundaries ``c_k`` for looks at information times ``taus``.

    Solves :math:`P_0(\\text{no crossing before } k,\\ |Z_k| \\ge c_k) = \\text{spent}_k -
    \\text{spent}_{k-1}` under the canonical joint distribution (Brownian motion
    :math:`S(\\tau)`, :math:`Z_k = S(\\tau_k)/\\sqrt{\\tau_k}`) by recursive numerical integration
    of the density of :math:`S` on the continuation region (Armitage, McPherson & Rowe, 1969).

    Args:
        taus: strictly increasing information times in (0, 1] (any common scale works; only the
            ratios matter).
        spent: cumulative two-sided alpha to have spent at each look (non-decreasing, < 1).
        grid: largest grid spacing relative to the smallest standard deviation of an increment.

    Returns:
        The boundaries (``40.0`` where nothing is spent at a look).
    """
    return list(_boundaries(tuple(float(t) for t in taus), tuple(float(a) for a in spent), float(grid)))


@functools.lru_cache(maxsize=256)
def _boundaries(taus: tuple[float, ...], spent: tuple[float, ...], grid: float) -> tuple[float, ...]:
    taus = list(taus)
    if len(taus) != len(spent) or not taus:
        raise ConfigError(f"need one cumulative alpha per look, got {len(taus)} looks and {len(spent)} values")
    if taus[0] <= 0 or any(b <= a for a, b in zip(taus, taus[1:])):
        raise ConfigError(f"information times must be positive and strictly increasing, got {taus}")
    incs = np.diff([0.0] + list(spent))
    if np.any(incs < -1e-15) or spent[-1] >= 1.0:
        raise ConfigError(f"cumulative alpha must be non-decreasing and below 1, got {list(spent)}")
    sd_min = min(math.sqrt(b - a) for a, b in zip([0.0] + taus, taus))
    h = grid * sd_min if sd_min < 1.0 else grid
    h = max(h, 1e-3)
    out: list[float] = []
    x = w = f = None
    for k, (tau, inc) in enumerate(zip(taus, incs)):
        if k == 0:
            c = float(sps.norm.isf(inc / 2.0)) if inc > 0 else _BIG
            c = min(c, _BIG)
            half = min(c, 8.5) * math.sqrt(tau)
            x, w = _simpson(-half, half, h)
            f = sps.norm.pdf(x, scale=math.sqrt(tau))
        else:
            dt = tau - taus[k - 1]
            sd = math.sqrt(dt)
            mass = w * f  # (G,) probability weights of the continuation region

            def cross(c: float) -> float:
                bound = c * math.sqrt(tau)
                return float(np.sum(mass * (sps.norm.cdf((-bound - x) / sd) + sps.norm.sf((bound - x) / sd))))

            if inc <= 0 or cross(_BIG) >= inc:
                c = _BIG
            else:
                lo, hi = 0.0, _BIG
                if cross(lo) <= inc:  # spending more than the whole remaining mass: stop at 0
                    c = 0.0
                else:
                    for _ in range(80):  # bisection: cross() decreases in c
                        mid = 0.5 * (lo + hi)
                        lo, hi = (mid, hi) if cross(mid) > inc else (lo, mid)
                    c = 0.5 * (lo + hi)
            half = min(c, 8.5) * math.sqrt(tau)
            y, wy = _simpson(-half, half, h)
            kern = sps.norm.pdf((y[:, None] - x[None, :]) / sd) / sd  # (G', G)
            f = kern @ mass  # (G',) density of S(tau) on the continuation region
            x, w = y, wy
        out.append(c)
    return tuple(out)


def t_boundary(z: float, df: int) -> float:
    """The t critical value of the same two-sided nominal significance as ``z`` (``df`` >= 1)."""
    if df < 1:
        raise ConfigError(f"a t boundary needs at least one degree of freedom, got {df}")
    if z >= _BIG:
        return math.inf
    p_half = float(sps.norm.sf(z))
    if p_half <= 0.0:
        return math.inf
    return float(sps.t.isf(p_half, df))


# ------------------------------------------------------------------------------------------------
# Decisions

#: A spread below this fraction of the metric's resolution is float noise, not spread.
SPREAD_TOLERANCE = 1e-3


def paired_sd(d: np.ndarray, resolution: float | None = None) -> float:
    """The sample standard deviation of the paired differences, 0.0 when it is float noise.

    ``np.full(7, 1e-4).std(ddof=1)`` is about 1.5e-20, not 0: a constant difference must not get
    t = 1e16 and a zero-width interval, bypassing the no-spread rule (the sign test). Differences on
    a grid of step ``resolution`` (``1/N`` for an accuracy on ``N`` test images; else 1e-12) that
    are not all equal have a spread of at least ``resolution / sqrt(2 n)``; anything below
    :data:`SPREAD_TOLERANCE` ``* resolution`` (plus 1e-12 of the largest ``|d|``) is zero.

    Shape:
        - d: ``(n,)``, ``n >= 2``
    """
    sd = float(np.std(d, ddof=1))
    step = resolution if resolution else 1e-12
    tol = SPREAD_TOLERANCE * step + 1e-12 * float(np.max(np.abs(d)))
    return 0.0 if sd <= tol else sd


def interval_verdict(
    ci: tuple[float, float], margin: float | None, higher_is_better: bool
) -> Verdict:
    """The verdict an interval of ``variant - baseline`` supports (see the module docstring)."""
    lo, hi = ci
    if lo > 0 or hi < 0:
        return Verdict.BETTER if (lo > 0) == higher_is_better else Verdict.WORSE
    if margin is not None and -margin < lo and hi < margin:
        return Verdict.EQUIVALENT
    return Verdict.INCONCLUSIVE


def sequential_path(
    diffs: Mapping[int, float],
    lost: Sequence[int],
    complete_through: int,
    *,
    looks: Sequence[int],
    margin: float | None,
    alpha: float,
    higher_is_better: bool = True,
    spend: str = DEFAULT_SPENDING,
    resolution: float | None = None,
    lost_by: Mapping[int, str] | None = None,
) -> SequentialDecision:
    """Walk the planned looks of one comparison and return its decision (pure, deterministic).

    Args:
        diffs: seed -> ``variant - baseline`` for seeds that finished for both.
        lost: seeds lost by either side (failed, or finished without a finite value).
        complete_through: every seed ``< complete_through`` has finished or failed on both sides.
        looks: the planned looks (seed counts, increasing; the last is the maximum).
        margin: the equivalence margin (``None``: no equivalence verdict).
        alpha: the per-comparison level (already split for multiplicity).
        higher_is_better: the metric's direction.
        spend: the spending function (:func:`spending`).
        resolution: the grid of the differences (:func:`paired_sd`).
        lost_by: who lost each lost seed (:data:`~archlab.study.failures.VARIANT`, ``BASELINE``,
            ``BOTH``; default: the variant). A better/worse decision must survive the failures
            counted as the worst outcome (:func:`archlab.study.failures.survives_failures`) at the
            look's nominal level; otherwise the comparison continues.

    Returns:
        The :class:`SequentialDecision` at the first look that decides, else at the last
        complete look.
    """
    if not looks or any(b <= a for a, b in zip(looks, looks[1:])) or looks[0] < 1:
        raise ConfigError(f"looks must be increasing positive seed counts, got {list(looks)}")
    n_max = looks[-1]
    lost_set = sorted(int(s) for s in lost)
    who = {s: VARIANT for s in lost_set} if lost_by is None else {int(s): str(w) for s, w in lost_by.items()}
    plan, ks, finals = _complete_looks(diffs, complete_through, looks)
    crits = _analysis_t_crits(tuple(ks), tuple(finals), n_max, float(alpha), spend) if ks else ()
    # Walk the looks; the first decision is final.
    analyses: list[tuple[int, int, float]] = []
    last: SequentialDecision | None = None
    for n, seeds, is_analysis in plan:
        k = len(seeds)
        lost_n = [s for s in lost_set if s < n]
        final = Reason.MAX_SEEDS_REACHED if n == n_max else Reason.CONTINUING
        mean = float(np.mean([diffs[s] for s in seeds])) if seeds else None
        if not is_analysis:
            why = Reason.TOO_FEW_PAIRS if k < 2 else Reason.NO_NEW_PAIRS
            last = SequentialDecision(
                Verdict.INCONCLUSIVE, False, k, n, (final, why), lost_n, mean,
                last.ci if last else None, last.t_crit if last else None, alpha, tuple(analyses),
                looks[0], n_max)
            continue
        t_crit = crits[len(analyses)]
        analyses.append((n, k, t_crit))
        d_look = np.array([diffs[s] for s in seeds])
        ci, sign_only = _repeated_interval(d_look, t_crit, resolution)
        verdict = interval_verdict(ci, margin, higher_is_better)
        nominal = 0.0 if math.isinf(t_crit) else float(2.0 * sps.t.sf(t_crit, k - 1))
        blocked = not survives_failures(verdict, d_look, {s: who.get(s, VARIANT) for s in lost_n},
                                        nominal, higher_is_better, resolution)
        if verdict == Verdict.INCONCLUSIVE or blocked:
            why = (Reason.FAILURES_NOT_SURVIVED if blocked else
                   Reason.NO_SPREAD_SIGN_TEST if sign_only else Reason.INTERVAL_UNDECIDED)
            last = SequentialDecision(Verdict.INCONCLUSIVE, False, k, n, (final, why), lost_n, mean, ci,
                                      t_crit, alpha, tuple(analyses), looks[0], n_max)
            continue
        return SequentialDecision(verdict, True, k, n, (Reason.STOPPED,), lost_n, mean, ci, t_crit, alpha,
                                  tuple(analyses), looks[0], n_max)
    if last is None:
        return SequentialDecision(Verdict.INCONCLUSIVE, False, 0, 0, (Reason.WAITING_FIRST_LOOK,),
                                  list(lost_set), None, None, None, alpha, (), looks[0], n_max)
    return last


def _complete_looks(
    diffs: Mapping[int, float], complete_through: int, looks: Sequence[int]
) -> tuple[list[tuple[int, list[int], bool]], list[int], list[bool]]:
    """The complete looks ``(n, paired seeds < n, is_analysis)``, and the pair counts and
    final-look flags of those that are analyses (at least two pairs, more than the previous one)."""
    plan: list[tuple[int, list[int], bool]] = []
    ks: list[int] = []
    finals: list[bool] = []
    prev = 0
    for n in looks:
        if n > complete_through:
            break
        seeds = sorted(s for s in diffs if s < n)
        k = len(seeds)
        is_analysis = k >= 2 and k > prev
        if is_analysis:
            prev = k
            ks.append(k)
            finals.append(n == looks[-1])
        plan.append((n, seeds, is_analysis))
    return plan, ks, finals


def _repeated_interval(d: np.ndarray, t_crit: float,
                       resolution: float | None = None) -> tuple[tuple[float, float], bool]:
    """The repeated confidence interval of the mean of ``d`` at ``t_crit``, and whether only the
    sign test could decide (the same non-zero difference on every pair)."""
    k = d.size
    mean = float(d.mean())
    sd = paired_sd(d, resolution)
    if sd == 0.0 and mean == 0.0:
        return (0.0, 0.0), False  # identical on every pair (the same model twice): a fact, not an estimate
    if sd == 0.0:
        # The same non-zero difference on every pair (a discrete metric: +1 image each seed) makes
        # t infinite; only the sign test is left: all k signs agree with p = 2^(1-k) under no
        # difference, compared with this look's nominal two-sided level.
        nominal = 0.0 if math.isinf(t_crit) else float(2.0 * sps.t.sf(t_crit, k - 1))
        sign_only = 2.0 ** (1 - k) > nominal
        return ((-math.inf, math.inf) if sign_only else (mean, mean)), sign_only
    if math.isinf(t_crit):
        return (-math.inf, math.inf), False
    half = t_crit * sd / math.sqrt(k)
    return (mean - half, mean + half), False


@functools.lru_cache(maxsize=1024)
def _analysis_t_crits(
    pairs: tuple[int, ...], finals: tuple[bool, ...], n_max: int, alpha: float, spend: str
) -> tuple[float, ...]:
    """t critical values of analyses with ``pairs`` complete pairs (cached: a pure function).

    The information fraction is ``pairs / n_max``; the final planned look spends whatever alpha is
    left, so lost seeds cost power, never validity.
    """
    taus = [k / n_max for k in pairs]
    cum = [alpha if f else min(spending(t, alpha, spend), alpha) for t, f in zip(taus, finals)]
    if pairs[-1] <= MC_MAX_PAIRS:
        return calibrated_t_boundaries(pairs, cum)
    bounds = spending_boundaries(taus, cum)
    return tuple(t_boundary(z, k - 1) for z, k in zip(bounds, pairs))


#: Up to this many pairs the t boundaries are calibrated on the joint null distribution of the t
#: statistics (:func:`calibrated_t_boundaries`); above it (df >= 60) the equal-nominal-level
#: conversion of the Z boundaries is accurate.
MC_MAX_PAIRS = 60
_MC_PATHS = 200_000
_MC_SEED = 20231013  # fixed: the boundaries are a deterministic function of the design


def calibrated_t_boundaries(pairs: Sequence[int], cum_alpha: Sequence[float], *, paths: int = _MC_PATHS,
                            seed: int = _MC_SEED) -> tuple[float, ...]:
    """Two-sided t boundaries that spend ``cum_alpha`` exactly on the joint null law of the t statistics.

    Under no difference the vector of paired t statistics at ``pairs[0] < pairs[1] < ...`` pairs
    does not depend on the unknown variance, so its joint law is simulated once (``paths``
    standard-normal sequences, a fixed seed: deterministic) and each boundary is the quantile of
    ``|t_k|`` among the paths that crossed no earlier boundary, chosen so that
    :math:`P(\\text{first crossing at } k) = \\alpha(\\tau_k) - \\alpha(\\tau_{k-1})`. Converting the
    Z boundaries at equal nominal level instead (Jennison & Turnbull, 2000, §11.4) keeps each look's
    marginal level but not the joint one: with 18 looks at 3..20 seeds it rejected 5.46 % ± 0.16 %
    at alpha = 5 %. Monte-Carlo error of the spent alpha: about :math:`\\sqrt{\\alpha/\\text{paths}}`.

    Returns:
        One boundary per analysis (``inf`` where less than one path's worth may be spent).
    """
    pairs = [int(k) for k in pairs]
    if not pairs or pairs[0] < 2 or any(b <= a for a, b in zip(pairs, pairs[1:])):
        raise ConfigError(f"analyses need increasing pair counts of at least 2, got {pairs}")
    rng = np.random.default_rng(seed)
    total = np.zeros(paths)  # running sum and sum of squares of the null differences, (M,)
    total_sq = np.zeros(paths)
    alive = np.ones(paths, dtype=bool)
    out = []
    prev = 0.0
    done = 0
    for k, c_alpha in zip(pairs, cum_alpha):
        while done < k:  # one seed at a time: memory O(paths), not O(paths * seeds)
            x = rng.standard_normal(paths)
            total += x
            total_sq += x * x
            done += 1
        mean = total / k
        var = (total_sq - k * mean * mean) / (k - 1)
        t = np.abs(mean) / np.sqrt(var / k)  # (M,)
        inc = max(0.0, float(c_alpha) - prev)
        prev = float(c_alpha)
        m = int(math.floor(inc * paths + 1e-9))  # paths allowed to cross here
        cand = np.sort(t[alive])[::-1]
        if m < 1 or cand.size == 0:
            out.append(math.inf)
            continue
        m = min(m, cand.size)
        # the boundary sits between the m-th and (m+1)-th largest |t| of the paths still running
        c = float(cand[m - 1]) if m == cand.size else float(0.5 * (cand[m - 1] + cand[m]))
        out.append(c)
        alive &= t < c
    return tuple(out)


def _value(row: RunRecord, metric: str) -> float | None:
    test = row.analysis if "." in metric else row.test  # analysis numbers have a "."
    if not isinstance(test, Mapping) or test.get(metric) is None:
        return None
    v = float(test[metric])
    return check_rate(row, metric, v) if math.isfinite(v) else None


def _resolution(a: RunRecord, b: RunRecord, metric: str) -> float:
    """The grid of a paired difference: 1/N for accuracy on N test images, else 1e-12."""
    if metric == "accuracy":
        n = run_test_size(a) or run_test_size(b)
        if n:
            return 1.0 / n
    return 1e-12


def family_size(rows: Sequence[RunRecord], baseline: str) -> int:
    """Number of (dataset, variant) comparisons against ``baseline`` in ``rows`` (at least 1)."""
    return max(1, len({(str(r.dataset), str(r.variant)) for r in rows if str(r.variant) != baseline}))


def comparison_inputs(
    rows: Sequence[RunRecord], *, baseline: str, metric: str
) -> dict[tuple[str, str], tuple[dict[int, float], dict[int, str], int, float]]:
    """Per (dataset, variant): paired differences by seed, lost seeds (seed -> who lost it:
    ``variant``, ``baseline`` or ``both``), the completeness bound and the differences' grid.

    ``complete_through`` is the smallest seed that is not finished-or-failed on both sides (seeds
    are taken in the runner's order 0, 1, 2, ...).
    """
    by: dict[str, dict[str, dict[int, RunRecord]]] = {}
    for r in rows:
        by.setdefault(str(r.dataset), {}).setdefault(str(r.variant), {})[int(r.seed)] = r
    out = {}
    for ds, variants in by.items():
        base = variants.get(baseline, {})
        for var, runs in variants.items():
            if var == baseline:
                continue
            diffs: dict[int, float] = {}
            lost: dict[int, str] = {}
            complete_through = 0
            step = 1e-12
            for s in sorted(set(runs) | set(base)):
                a, b = runs.get(s), base.get(s)
                terminal = a is not None and b is not None and a.status in ("done", "failed") \
                    and b.status in ("done", "failed")
                if terminal and s == complete_through:
                    complete_through = s + 1
                if a is None or b is None:
                    continue
                va = _value(a, metric) if a.status == "done" else None
                vb = _value(b, metric) if b.status == "done" else None
                if va is not None and vb is not None:
                    # on the metric's grid: an accuracy is a count of images / N, so equal counts give
                    # equal differences even when the floats differ in the last bit
                    step = _resolution(a, b, metric)
                    diffs[s] = round((va - vb) / step) * step
                elif terminal:
                    lost[s] = BOTH if va is None and vb is None else VARIANT if va is None else BASELINE
            out[(ds, var)] = (diffs, lost, complete_through, step)
    return out


def sequential_decisions(
    rows: Sequence[RunRecord],
    *,
    baseline: str,
    metric: str,
    margin: float | None,
    alpha: float,
    looks: Sequence[int],
    family: int | None = None,
    spend: str = DEFAULT_SPENDING,
) -> dict[tuple[str, str], SequentialDecision]:
    """The sequential decision of every (dataset, variant) comparison, from stored run rows.

    Args:
        rows: :meth:`archlab.study.store.StudyStore.rows` records (``dataset``, ``variant``,
            ``seed``, ``status``, ``test``).
        baseline: the baseline variant.
        metric: the primary metric.
        margin: its equivalence margin (``None``: no equivalence verdict).
        alpha: the study's family-wise error rate, split over the comparisons (Bonferroni).
        looks: :func:`plan_looks` of the study's seed plan.
        family: number of comparisons sharing ``alpha`` (default: those in ``rows``).
        spend: spending function (see :func:`spending`).

    Returns:
        ``{(dataset, variant): SequentialDecision}``.
    """
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha must be in (0, 1), e.g. 0.05; got {alpha!r}")
    if margin is not None and not (margin > 0 and math.isfinite(margin)):
        raise ConfigError(f"the equivalence margin of {metric!r} must be a positive number, got {margin!r}")
    higher, _ = metric_direction(metric)
    k = family if family is not None else family_size(rows, baseline)
    out = {}
    for key, (diffs, lost, through, step) in comparison_inputs(rows, baseline=baseline, metric=metric).items():
        out[key] = sequential_path(
            diffs, sorted(lost), through, looks=looks, margin=margin, alpha=alpha / k,
            higher_is_better=higher, spend=spend, resolution=step, lost_by=lost,
        )
    return out
