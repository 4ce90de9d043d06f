"""Budget curves: ``budgets: [10, 50, 200]`` — the verdict at each declared training budget.

Declared before the study runs, the budgets go into every run's config (``train.budgets``); the
engine then evaluates the test split once at the end of each budget epoch with the
best-validation weights up to that epoch (:class:`archlab.train.hooks.BudgetTests`), into that
epoch's history row. Nothing selects on these values: the best epoch, early stopping and the
plateau schedule read the validation split as always, so "does the advantage grow with training?"
is answered without test-set selection. A budget after an early stop (or the last epoch) is the
run's final test, which used the same best-validation weights.

:func:`budget_rows` gives the study's rows with ``test`` replaced by the metrics at one budget;
the comparison is the study's own :func:`archlab.study.stats.compare_variants` on them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from archlab.study.record import RunRecord
from archlab.study.stats import VariantStats, compare_variants
from archlab.train.hooks import BUDGET_PREFIX

__all__ = ["budget_metrics", "budget_rows", "budget_verdicts"]


def budget_metrics(run: RunRecord, budget: int) -> Mapping[str, float] | None:
    """The test metrics of ``run`` at ``budget`` epochs (``None`` when the run has none there)."""
    if run.status != "done":
        return None
    for row in run.history:
        if int(row.get("epoch", -1)) == budget:
            got = {k[len(BUDGET_PREFIX):]: v for k, v in row.items() if k.startswith(BUDGET_PREFIX)}
            if got:
                return got
    if run.epochs_run is not None and budget >= run.epochs_run:  # stopped (early) before: the final test
        return run.test
    return None


def budget_rows(rows: Sequence[RunRecord], budget: int) -> list[RunRecord]:
    """``rows`` with each run's ``test`` at ``budget`` (per-image predictions dropped: they are the final test's)."""
    out = []
    for r in rows:
        m = budget_metrics(r, budget)
        out.append(dataclasses.replace(r, test=m, test_predictions=None, test_targets=None))
    return out


def budget_verdicts(rows: Sequence[RunRecord], budgets: Sequence[int], *, baseline: str, metric: str,
                    alpha: float, margin: float | None) -> dict[int, list[VariantStats]]:
    """The comparison of every variant with the baseline at each budget (fixed-design, all seeds).

    The budgets share the study's ``alpha`` with its variants: the family is (variants × budgets),
    Bonferroni, so reading the verdict at every budget does not inflate the error rate.
    """
    n_var = len({(r.dataset, r.variant) for r in rows if r.variant != baseline})
    family = max(1, n_var * len(budgets))
    return {b: compare_variants(budget_rows(rows, b), baseline=baseline, metric=metric, alpha=alpha, margin=margin,
                                family=family, aso=False) for b in budgets}
