"""Expected validation performance after k tuning trials (Dodge et al. 2019, "Show your work").

With ``n`` trials of one variant, each trial a draw of a hyperparameter config and its validation
score, the expected best validation score of ``k <= n`` trials drawn with replacement from them is

    E[max_k] = sum_i v_(i) * ((i / n)^k - ((i - 1) / n)^k)

over the sorted scores ``v_(1) <= ... <= v_(n)`` (the empirical CDF raised to the k-th power gives
the CDF of the maximum). Its spread is ``sqrt(E[max_k^2] - E[max_k]^2)`` from the same weights.
A lower-is-better metric (a loss) uses the minimum: the same formula on negated scores.

Curves of two variants that cross mean that the ranking depends on the tuning budget:
:func:`ranking_flips` names the budgets at which the order of the variants changes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from archlab.errors import DataError

__all__ = ["EVPCurve", "expected_max", "evp_curve", "ranking_flips", "leader_at"]


@dataclass(frozen=True)
class EVPCurve:
    """Expected best validation score after k = 1..n trials of one variant.

    Attributes:
        variant: the variant's name.
        ks: budgets 1..n.
        mean: expected best score at each k; std: its standard deviation.
        higher_is_better: the direction of the metric.
    """

    variant: str
    ks: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    higher_is_better: bool = True


def _scores(values: Sequence[float], higher_is_better: bool) -> np.ndarray:
    v = np.asarray(list(values), dtype=float)
    if v.ndim != 1 or v.size == 0:
        raise DataError(f"expected validation performance needs at least one trial score, got {list(values)!r}")
    if not np.all(np.isfinite(v)):
        raise DataError(f"trial scores must be finite, got {v.tolist()}")
    return np.sort(v if higher_is_better else -v)


def expected_max(values: Sequence[float], k: int, *, higher_is_better: bool = True) -> tuple[float, float]:
    """Expected best of ``k`` trials drawn with replacement from ``values``, and its std.

    Args:
        values: validation scores of the observed trials.
        k: the budget (number of trials), ``k >= 1``.
        higher_is_better: ``False`` for a loss (the expected minimum).

    Returns:
        ``(mean, std)`` of the best score among ``k`` draws.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise DataError(f"k must be an integer of at least 1, got {k!r}")
    v = _scores(values, higher_is_better)
    n = v.size
    i = np.arange(1, n + 1, dtype=float)
    w = (i / n) ** k - ((i - 1) / n) ** k  # P(max_k = v_(i))
    mean = float(np.sum(w * v))
    var = max(float(np.sum(w * v * v)) - mean * mean, 0.0)
    sign = 1.0 if higher_is_better else -1.0
    return sign * mean, float(np.sqrt(var))


def evp_curve(variant: str, values: Sequence[float], *, higher_is_better: bool = True,
              max_k: int | None = None) -> EVPCurve:
    """The curve ``k -> E[best of k]`` for ``k = 1 .. max_k`` (default: the number of trials)."""
    n = len(values)
    top = n if max_k is None else max_k
    pairs = [expected_max(values, k, higher_is_better=higher_is_better) for k in range(1, top + 1)]
    return EVPCurve(variant, tuple(range(1, top + 1)), tuple(m for m, _ in pairs), tuple(s for _, s in pairs),
                    higher_is_better)


def leader_at(curves: Mapping[str, EVPCurve], k: int) -> list[str]:
    """Variants ordered best first by expected best score at budget ``k`` (ties by name)."""
    def key(name: str) -> tuple[float, str]:
        c = curves[name]
        m = c.mean[k - 1]
        return (-m if c.higher_is_better else m, name)

    return sorted(curves, key=key)


def ranking_flips(curves: Mapping[str, EVPCurve], *, tol: float = 0.0) -> list[tuple[int, list[str], list[str]]]:
    """Budgets at which the ranking of the variants changes.

    Two variants swap only when their expected scores differ by more than ``tol`` in the new order
    (so float noise between near-equal curves is not a flip).

    Returns:
        ``(k, order before, order at k)`` for every ``k`` whose order differs from ``k - 1``'s, over
        the budgets all curves share.
    """
    if not curves:
        return []
    top = min(len(c.ks) for c in curves.values())
    flips = []
    prev = leader_at(curves, 1)
    for k in range(2, top + 1):
        now = leader_at(curves, k)
        if now != prev and _strictly_reordered(curves, prev, now, k, tol):
            flips.append((k, prev, now))
            prev = now
    return flips


def _strictly_reordered(curves: Mapping[str, EVPCurve], prev: list[str], now: list[str], k: int, tol: float) -> bool:
    """True when some pair ordered one way in ``prev`` is ordered the other way at ``k`` by more than ``tol``."""
    pos = {v: i for i, v in enumerate(prev)}
    for i, a in enumerate(now):
        for b in now[i + 1:]:
            if pos[a] > pos[b]:  # a now ahead of b, behind before
                gap = curves[a].mean[k - 1] - curves[b].mean[k - 1]
                if abs(gap) > tol:
                    return True
    return False
