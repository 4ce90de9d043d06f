"""Verdicts in words: the one module that writes the sentences of a study's statistics.

:mod:`archlab.study.stats` and :mod:`archlab.study.sequential` return numbers and codes
(:class:`~archlab.study.stats.VariantStats`, :class:`~archlab.study.sequential.SequentialDecision`,
:mod:`archlab.study.verdicts`); this module turns them into the verdict cell of a table
(:func:`verdict_text`), the answer line at the top of the report (:func:`answer_line`), the
"why it stopped" of an adaptive comparison (:func:`sequential_reason`), the notes on anomalous
runs (:func:`notes`), the label of the deciding interval (:func:`interval_label`) and the
Methods paragraphs (:func:`methods`). The report only lays these strings out.

Numbers are written the same way everywhere: :func:`format_diff` for a signed difference
(percentage points for rates), :func:`format_p` for a p-value, :func:`format_margin` for ±m.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from archlab.study.metrics import metric_direction
from archlab.study.sequential import SequentialDecision
from archlab.study.stats import MAX_SEEDS, POWER, VariantStats
from archlab.study.verdicts import Interval, Note, Reason, Verdict

__all__ = [
    "format_p",
    "format_diff",
    "format_abs",
    "format_margin",
    "verdict_text",
    "answer_line",
    "sequential_reason",
    "notes",
    "interval_label",
    "methods",
    "equal_budget_line",
    "budget_flips_line",
    "budget_intro_line",
    "budget_trend_line",
]


# ------------------------------------------------------------------------------------------------
# Numbers


def format_p(p: float | None) -> str:
    """``"<0.001"``, ``"0.004"``, ``"0.062"``, ``"0.43"``; ``"—"`` for ``None``."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "—"
    if p < 0.001:
        return "<0.001"
    if p >= 0.1:
        return f"{p:.2f}"
    return f"{p:.2g}"


def format_diff(diff: float, percent: bool = True) -> str:
    """A signed difference: percentage points for rate metrics (``+1.20 pp``), else raw."""
    if percent:
        return f"{diff * 100:+.2f} pp"
    return f"{diff:+.4g}"


def format_abs(x: float, percent: bool) -> str:
    """An unsigned size of a difference (``1.6 pp``)."""
    return f"{x * 100:.2g} pp" if percent else f"{x:.3g}"


def format_margin(m: float, percent: bool) -> str:
    """An equivalence margin (``±1 pp``)."""
    return f"±{m * 100:.2g} pp" if percent else f"±{m:.3g}"


def _seq_margin(m: float, percent: bool) -> str:
    # the sequential reasons have always shown a raw margin to 4 significant digits
    return f"±{m * 100:.2g} pp" if percent else f"±{m:.4g}"


def _plural(n: int) -> str:
    return "s" if n != 1 else ""


def _percent(vs: VariantStats) -> bool:
    return metric_direction(vs.metric)[1]


# ------------------------------------------------------------------------------------------------
# One comparison


def _on(vs: VariantStats) -> str:
    n = len(vs.paired_seeds)
    return f"on {n} of {vs.seeds_considered} seeds" if vs.lost_seeds else f"(n={n})"


def _lost(vs: VariantStats, lead: str) -> str:
    lost = vs.lost_seeds
    return f"{lead}lost seed{'s' if len(lost) > 1 else ''} {', '.join(map(str, lost))}" if lost else ""


def _mean(vs: VariantStats) -> float:
    return vs.paired.mean_diff if vs.paired is not None else 0.0


def _power_parts(vs: VariantStats, percent: bool) -> list[str]:
    """What more seeds would do (an inconclusive comparison with spread)."""
    mean, margin = _mean(vs), vs.margin
    parts = [f"these seeds detect only differences ≥ {format_abs(vs.detectable, percent)} "
             f"at {100 * POWER:g} % power"]
    if vs.seeds_detect is not None:
        parts.append(f"≈{vs.seeds_detect} seeds would detect the observed {format_diff(mean, percent)}")
    elif mean != 0.0:
        parts.append(f"more than {MAX_SEEDS} seeds would be needed to detect {format_diff(mean, percent)}")
    if vs.seeds_equivalence is not None:
        parts.append(f"≈{vs.seeds_equivalence} would show equivalence within {format_margin(margin, percent)}")
    elif margin is not None and abs(mean) >= margin:
        parts.append(f"the observed difference is outside {format_margin(margin, percent)}, so equivalence "
                     "is not expected")
    elif margin is None:
        parts.append("no equivalence margin is set for this metric")
    return parts


def _inconclusive(vs: VariantStats, percent: bool) -> str:
    reason = vs.reasons[0] if vs.reasons else Reason.INTERVAL_UNDECIDED
    n, on = len(vs.paired_seeds), _on(vs)
    if reason == Reason.NO_PAIRS:
        return "inconclusive: no seed finished for both this variant and the baseline"
    if reason == Reason.TOO_FEW_PAIRS:
        text = (f"inconclusive: only {n} paired seed{_plural(n)}"
                + ("" if vs.sequential is not None else f" (need at least {vs.min_pairs})"))
        return text + ("; " + "; ".join(_power_parts(vs, percent)) if vs.detectable is not None else "")
    if reason == Reason.IDENTICAL_NO_MARGIN:
        return f"inconclusive {on}: identical on every paired seed, but {vs.metric} has no equivalence margin"
    if reason == Reason.NO_SPREAD_SIGN_TEST:
        return (f"inconclusive {on}: the same difference {format_diff(_mean(vs), percent)} on every "
                f"paired seed; with no spread only the sign test applies, which needs "
                f"{vs.sign_test_seeds} seeds")
    if reason == Reason.FAILURES_NOT_SURVIVED:
        return (f"inconclusive {on}: the surviving seeds differ by {format_diff(_mean(vs), percent)}, "
                "but not once the failed seeds count as the worst outcome")
    if vs.detectable is None:
        return f"inconclusive {on}"
    return f"inconclusive {on}: " + "; ".join(_power_parts(vs, percent))


def verdict_text(vs: VariantStats) -> str:
    """The plain-language verdict of one comparison (the "Verdict" cell of the report's tables).

    Examples: ``"better by +2.00 pp (n=5)"``, ``"equivalent within ±1 pp on 4 of 5 seeds; lost seed 2"``,
    ``"inconclusive (n=5): these seeds detect only differences ≥ 1.5 pp at 80 % power; ..."``.
    """
    if vs.outcome == Verdict.BASELINE:
        return "baseline"
    percent = _percent(vs)
    on, ci, margin = _on(vs), vs.ci, vs.margin
    if vs.outcome in (Verdict.BETTER, Verdict.WORSE):
        extra = (f", inside the {format_margin(margin, percent)} margin"
                 if margin is not None and ci is not None and -margin < ci[0] and ci[1] < margin else "")
        text = f"{vs.outcome} by {format_diff(_mean(vs), percent)} {on}{extra}{_lost(vs, '; ')}"
    elif vs.outcome == Verdict.EQUIVALENT:
        ident = ", identical on every paired seed" if vs.identical else ""
        text = f"equivalent within {format_margin(margin, percent)} {on}{ident}{_lost(vs, '; ')}"
    else:
        text = _inconclusive(vs, percent) + _lost(vs, "; ")
    dec = vs.sequential
    if dec is not None and dec.look == 0:  # no complete look yet
        text = f"inconclusive: {sequential_reason(dec, margin, vs.metric)}"
    elif dec is not None:
        text += f" — {sequential_reason(dec, margin, vs.metric)}"
    if Reason.NOT_CONFIRMED_BY_IMAGES in vs.reasons and vs.image_test is not None:
        it = vs.image_test
        text += f"; not confirmed beyond these {it.images} test images (seeds × images p={format_p(it.p)})"
    return text


def answer_line(vs: VariantStats, *, with_dataset: bool = False) -> str:
    """The one-line answer for the top of the report and the console (``"spinal: worse than
    linear by 0.40 pp (n=3), inside the ±1 pp margin; not confirmed beyond these 2000 test
    images"``); ``with_dataset`` names the dataset after the variant. ``""`` for the baseline.

    The line keeps every qualifier of the table's verdict that changes its meaning (a difference
    inside the equivalence margin, one the seeds × images test does not confirm, lost seeds, a
    sequential comparison still waiting or stopped without a decision, exploratory); the size
    after "better"/"worse" is unsigned, since the word already says the direction.
    """
    if vs.outcome == Verdict.BASELINE:
        return ""
    percent = _percent(vs)
    on, base, margin, ci = _on(vs), vs.baseline, vs.margin, vs.ci
    who = f"{vs.variant} ({vs.dataset})" if with_dataset else vs.variant
    dec = vs.sequential
    if dec is not None and dec.look == 0:  # no complete look yet
        answer = f"{who}: inconclusive vs {base}, {sequential_reason(dec, margin, vs.metric)}"
    elif vs.outcome in (Verdict.BETTER, Verdict.WORSE):
        rel = "better than" if vs.outcome == Verdict.BETTER else "worse than"
        size = format_diff(abs(_mean(vs)), percent).lstrip("+")
        answer = f"{who}: {rel} {base} by {size} {on}"
        if margin is not None and ci is not None and -margin < ci[0] and ci[1] < margin:
            answer += f", inside the {format_margin(margin, percent)} margin"
    elif vs.outcome == Verdict.EQUIVALENT:
        answer = f"{who}: equivalent to {base} within {format_margin(margin, percent)} {on}"
        if vs.identical:
            answer += ", identical on every paired seed"
    else:
        answer = f"{who}: inconclusive vs {base} {on}"
        if vs.detectable is not None:
            answer += f" (detectable ≥ {format_abs(vs.detectable, percent)})"
        if dec is not None and Reason.MAX_SEEDS_REACHED in dec.reasons:
            answer += f", max of {dec.max_seeds} seeds reached"
    answer += _lost(vs, ", ")
    if Reason.NOT_CONFIRMED_BY_IMAGES in vs.reasons and vs.image_test is not None:
        answer += f"; not confirmed beyond these {vs.image_test.images} test images"
    if not vs.primary:
        answer += " [exploratory]"
    return answer


def sequential_reason(dec: SequentialDecision, margin: float | None, metric: str) -> str:
    """Why an adaptive comparison stopped at its look, or why it continues (the "Why it stopped"
    column), e.g. ``"stopped at 6 seeds: better at n=6, repeated interval [+0.50 pp, +3.10 pp]
    excludes 0"``."""
    percent = metric_direction(metric)[1]
    n, k = dec.look, dec.n_pairs
    if Reason.WAITING_FIRST_LOOK in dec.reasons:
        return f"waiting for the first look ({dec.first_look} seeds finished on both sides)"
    final = Reason.MAX_SEEDS_REACHED in dec.reasons
    if Reason.TOO_FEW_PAIRS in dec.reasons or Reason.NO_NEW_PAIRS in dec.reasons:
        why = (f"only {k} complete pair{_plural(k)}" if Reason.TOO_FEW_PAIRS in dec.reasons
               else "no complete pair added since the previous look")
        return f"look at {n} seeds: {why}" + (" — max reached" if final else "; continuing")
    ci = dec.ci
    on = f"on {k} of {n} seeds" if dec.lost_seeds else f"at n={k}"
    rng = f"[{format_diff(ci[0], percent)}, {format_diff(ci[1], percent)}]"
    if not dec.decided:
        if Reason.FAILURES_NOT_SURVIVED in dec.reasons:
            why = (f"interval {rng} excludes 0 on the surviving pairs, but not once the failed seeds "
                   "count as the worst outcome")
        elif Reason.NO_SPREAD_SIGN_TEST in dec.reasons:
            why = f"the same difference {format_diff(dec.mean_diff, percent)} on every pair; the sign test needs more pairs"
        else:
            why = f"interval {rng} includes 0" + (
                f" and is not inside {_seq_margin(margin, percent)}" if margin is not None else " (no equivalence margin)")
        return (f"max of {dec.max_seeds} seeds reached without a decision ({why})" if final
                else f"not decided at {n} seeds ({why}); continuing")
    if dec.verdict == Verdict.EQUIVALENT:
        return f"stopped at {n} seeds: equivalent {on}, repeated interval {rng} inside {_seq_margin(margin, percent)}"
    return f"stopped at {n} seeds: {dec.verdict} {on}, repeated interval {rng} excludes 0"


def notes(vs: VariantStats) -> tuple[str, ...]:
    """The anomalies of one comparison's runs, one sentence each (in the order they were found)."""
    out: list[str] = []
    for note in vs.notes:
        if note == Note.MISSING_VALUE:
            out += [f"seed {s} finished without a finite test {vs.metric}; left out" for s in vs.seeds_without_value]
        elif note == Note.BASELINE_ABSENT:
            out.append(f"baseline {vs.baseline!r} has no runs on dataset {vs.dataset!r}")
        elif note == Note.TEST_IMAGES_DIFFER:
            out.append("the test images differ between seeds: no seeds × images test (the seed-level "
                       "interval already includes that variance)")
        elif note == Note.FAILURES and vs.failure_counts is not None:
            vf, nv, bf, nb = vs.failure_counts
            out.append(f"failure rate {vf}/{nv} vs baseline {bf}/{nb} (Boschloo p={format_p(vs.failure_p)})")
    return tuple(out)


def interval_label(vs: VariantStats) -> str:
    """Which interval decided, with its level and adjustment (``"97.5 % CI (Bonferroni over 2
    comparisons)"``)."""
    level, k = vs.alpha, vs.family
    if vs.interval == Interval.SEQUENTIAL:
        return (f"repeated {100 * (1 - level):.4g} % CI (group-sequential, Bonferroni over {k})"
                if k > 1 else f"repeated {100 * (1 - level):.4g} % CI (group-sequential)")
    if vs.interval == Interval.FIXED:
        return (f"{100 * (1 - level):.4g} % CI (Bonferroni over {k} comparisons)" if k > 1
                else f"{100 * (1 - level):.4g} % CI")
    return f"{100 * vs.confidence:.4g} % CI, unadjusted (exploratory)"


# ------------------------------------------------------------------------------------------------
# Methods


def resolution_note(sizes: Mapping[str, Any]) -> str:
    """The sentence a ``vary: [resolution]`` study's report carries (variant -> its ``resize``)."""
    own = ", ".join(f"{v} {'x'.join(map(str, s)) if isinstance(s, (list, tuple)) else f'{s}x{s}'}"
                    for v, s in sorted(sizes.items()) if s is not None)
    rest = sorted(v for v, s in sizes.items() if s is None)
    return (f"Resolution differs between variants (the variable under study): {own}"
            + (f"; {', '.join(rest)} at the dataset's own size" if rest else "")
            + ". Every variant trains on the same images, split and batch order, resized after the "
            "split; parameters and FLOPs are measured at each variant's own resolution.")


def methods(
    *,
    primary: str,
    metrics: Sequence[str],
    margins: Mapping[str, float | None],
    alpha: float,
    family: int,
    looks: Sequence[int] | None,
    seeds_plan: Mapping[str, Any] | None,
    min_pairs: int,
    datasets: int,
) -> list[str]:
    """The Methods paragraphs of a report, filled in with the study's numbers.

    Longer than a function should be because it is the text itself (about 60 lines of prose with
    a few numbers in it); splitting it would only scatter the paragraphs.

    Args:
        primary: the primary metric.
        metrics: every metric compared.
        margins: equivalence margin per metric (``None``: none).
        alpha: the study's family-wise error rate.
        family: the number of primary comparisons sharing ``alpha``.
        looks: the planned looks of an adaptive study (``None``: fixed seeds).
        seeds_plan: the study's ``seeds`` mapping (``min``, ``max``, ``step``) of an adaptive study.
        min_pairs: fewest complete pairs for a verdict in a fixed design.
        datasets: the number of datasets (two or more add the across-datasets paragraph).
    """
    k = family
    margin_text = ", ".join(
        f"{m} {format_margin(mm, metric_direction(m)[1])}" for m in metrics
        if (mm := margins.get(m)) is not None) or "none"
    per = alpha / k
    out = [
        "Design. Every variant is trained with the same seeds as the baseline; run seed s of a "
        "variant and of the baseline share the data split, batch order and augmentation draws, so "
        "the comparison is paired by seed. A seed that failed (an error or a non-finite loss) on "
        "either side is reported as lost and the interval uses the complete pairs (“on k of n "
        "seeds”). A failure is an outcome, not missing data: a better or worse verdict stands only "
        "if it survives the failures counted as the worst outcome — each seed the variant lost "
        "enters as a difference worse for the variant than any observed, each seed the baseline "
        "lost as one worse for the baseline, and the exact Wilcoxon signed-rank test on these "
        "differences must reject at the same level in the same direction (simulated: under no "
        "difference, with a variant that fails on 80 % of the seeds where it would be worse by "
        "more than 0.5 sd, false “better” falls from 18 % to 1.7 % at 10 seeds). Failure rates are "
        "also compared with Boschloo's exact test.",
        f"Verdicts. For each variant, dataset and metric the mean paired difference Δ = variant − "
        f"baseline gets a confidence interval; the verdict is better or worse when the interval "
        f"excludes 0, equivalent when it lies inside ±m (equivalence margins: {margin_text}), and "
        f"inconclusive otherwise, in which case the report gives the smallest difference the seeds "
        f"detect at 80 % power and about how many seeds would detect the observed difference or "
        f"show equivalence (noncentral t; a fixed-design estimate). Reading equivalence off the "
        f"interval is the two one-sided tests procedure (TOST; Schuirmann 1987) at half the "
        f"interval's error rate per side. Identical results on every pair are equivalent; the same "
        f"non-zero difference on every pair (no spread, t infinite) is decided only by the exact "
        f"sign test, p = 2^(1−n), at the same level; a spread below a thousandth of the metric's "
        f"resolution (1/N for an accuracy on N test images) is float noise and counts as none.",
        f"Multiplicity. {primary} is the primary metric: its {k} comparison"
        f"{'s' if k != 1 else ''} share α = {alpha:g} by Bonferroni (α/{k} = {per:.4g} each), "
        f"so the probability of any wrong primary verdict is at most {alpha:g}; the Δ interval "
        f"shown is the one that decided. Other metrics are exploratory: unadjusted 95 % intervals.",
    ]
    if looks:
        plan = seeds_plan or {}
        spend = str(plan.get("spending", "obrien_fleming"))
        spend_text = {
            "obrien_fleming": "the O'Brien–Fleming-type function (Lan & DeMets 1983)",
            "pocock": "the Pocock-type function α·ln(1 + (e − 1)τ) (Lan & DeMets 1983)",
            "linear": "the power-family function α·τ (Kim & DeMets 1987)",
            "quadratic": "the power-family function α·τ² (Kim & DeMets 1987; chosen by simulation: "
                         "it decides differences of tens of standard deviations at the first look, "
                         "where the O'Brien–Fleming type needs t ≈ 500 at 3 of 12 seeds, for 2–5 "
                         "points of power at a 1-sd difference)",
            "cubic": "the power-family function α·τ³ (Kim & DeMets 1987)",
        }.get(spend, spend)
        out.append(
            f"Sequential design. Seeds were added in rounds (min {plan.get('min')}, max "
            f"{plan.get('max')}, step {plan.get('step', 1)}; looks at {', '.join(map(str, looks))} "
            "seeds) until the primary comparison was decided. Error rates are kept under the "
            f"repeated looks by Lan–DeMets alpha spending with {spend_text} on the information "
            "fraction (complete pairs / max; the final look spends the rest). Because the variance is estimated from a few seeds, the spending is "
            "applied to the paired t statistics directly: their joint null distribution, which does "
            "not depend on the variance, is simulated once per design (200 000 paths, fixed seed) "
            "and each boundary spends exactly its share (converting normal boundaries at equal "
            "nominal level, Jennison & Turnbull 2000 §11.4, exceeded alpha: 5.5 % at 5 %; it is "
            "used only above 60 pairs). The verdict is read off the repeated confidence interval "
            "(Jennison & Turnbull 1989) at the look that stopped, which keeps its coverage under "
            "any stopping rule, including stopping for equivalence.")
    else:
        out.append(
            f"Fixed seeds. The interval is the Student-t interval of the paired differences; fewer "
            f"than {min_pairs} complete pairs give “inconclusive” unless the results are identical "
            "on every pair.")
    out.append(
        "Also shown (not deciding): mean ± sample std and the 95 % t interval per variant (clipped "
        "to [0, 100] % for rates, marked ‡; no percentile bootstrap, which under-covers at a few "
        "seeds); Cohen's d_z; the unadjusted paired t p-value; the TOST p-value at the margin; the "
        "exact Wilcoxon signed-rank test on differences rounded to whole test images (ties and "
        "zeros enumerated exactly); Almost Stochastic Order ε_min in both directions (Dror et al. "
        "2019, deepsig's algorithm; below 0.2 the first almost stochastically dominates). For "
        "accuracy with stored predictions, the seeds × images test treats seeds and test images as "
        "crossed random factors (two-way mean squares, Satterthwaite df; Clark 1973): it asks "
        "whether a difference would hold on new test images; a better/worse verdict it does not "
        "confirm is flagged.")
    if datasets >= 2:
        out.append(
            "Across datasets. Interquartile mean with stratified bootstrap intervals and the "
            "probability of improvement over the baseline (Agarwal et al. 2021, rliable; percentile "
            "intervals, descriptive), and average ranks with the Friedman test and the Nemenyi "
            "critical difference (Demšar 2006).")
    return out


# ------------------------------------------------------------------------------------------------
# Equal effort (archlab.study.effort_report)


def equal_budget_line(tuning: Mapping[str, Any]) -> str:
    """What the tuning phase did: the budget every variant got, and what the verdicts then mean."""
    budgets = sorted({len(c["trials"]) for c in tuning["cells"]})
    k = " or ".join(str(b) for b in budgets)
    return (f"Every tuned variant got {k} trials, selected on the validation {tuning['metric']} only (the test "
            f"split is never read in a trial); the verdicts above compare each variant at its own best trial, "
            f"i.e. at equal budget k = {k}, on seeds disjoint from the tuning seeds.")


def budget_flips_line(dataset: str, flips: Sequence[tuple[int, list[str], list[str]]], top: int) -> str:
    """Whether the ranking of the variants by expected best validation score changes with the budget."""
    if not flips:
        return f"{dataset}: the ranking by expected best validation score is the same at every budget k = 1..{top}."
    parts = [f"at k = {k} {' > '.join(now)} (was {' > '.join(before)})" for k, before, now in flips]
    return f"{dataset}: the ranking flips with the budget — " + "; ".join(parts) + "."


def budget_intro_line(metric: str, budgets: Sequence[int]) -> str:
    """What the budget table is."""
    return (f"Test {metric} at each declared budget ({', '.join(map(str, budgets))} epochs), each from the "
            "best-validation weights up to that epoch (nothing selects on these values); the budgets share "
            "the study's alpha with the variants (Bonferroni over variants × budgets).")


def budget_trend_line(dataset: str, variant: str, outcomes: Sequence[Verdict], budgets: Sequence[int]) -> str:
    """Whether a variant's verdict changes with the training budget."""
    if len(set(outcomes)) <= 1:
        return f"{variant} ({dataset}): the same verdict at every budget ({outcomes[0] if outcomes else 'none'})."
    path = " → ".join(f"{o} at {b}" for o, b in zip(outcomes, budgets))
    return f"{variant} ({dataset}): the verdict changes with the training budget: {path}."
