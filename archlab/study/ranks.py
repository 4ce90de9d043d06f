"""The exact Wilcoxon signed-rank test on a grid (ties and zeros exact), shared by stats and failures."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats as sps

from archlab.errors import DataError

__all__ = ["wilcoxon_signed_rank"]


def wilcoxon_signed_rank(diffs: Sequence[float], resolution: float | None = None) -> float:
    """Two-sided exact Wilcoxon signed-rank p-value, with ties and zeros handled exactly.

    The differences are first rounded to ``resolution`` (``1/N`` for an accuracy on ``N`` test
    images: equal image counts are ties even when the floats differ in the last bit; else 1e-12).
    Zeros are dropped (Wilcoxon's convention, scipy's ``zero_method="wilcox"``), the absolute
    values get mid-ranks, and the null distribution of :math:`W^+` (each sign ±1 with probability
    1/2) is enumerated exactly by convolution over the (doubled, integer) mid-ranks. The p-value is
    :math:`P(|W^+ - E W^+| \\ge |w - E W^+|)`.

    Returns:
        The p-value (1.0 when every difference is zero).

    Shape:
        - diffs: ``(n,)``
    """
    d = np.asarray(diffs, dtype=float).reshape(-1)
    if not np.all(np.isfinite(d)):
        raise DataError(f"differences must be finite numbers, got {d.tolist()}")
    step = resolution if resolution else 1e-12
    counts = np.rint(d / step).astype(np.int64)  # exact integers on the test-set grid
    counts = counts[counts != 0]
    n = counts.size
    if n == 0:
        return 1.0
    ranks2 = np.rint(2 * sps.rankdata(np.abs(counts))).astype(np.int64)  # doubled mid-ranks
    total = int(ranks2.sum())
    dist = np.zeros(total + 1)
    dist[0] = 1.0
    for r in ranks2:  # distribution of the sum of the ranks given a + sign
        shifted = np.zeros_like(dist)
        shifted[r:] = dist[: total + 1 - r]
        dist = 0.5 * (dist + shifted)
    w = int(ranks2[counts > 0].sum())
    dev = abs(2 * w - total)  # |2 W+ - total| = 2 |W+ - E W+|
    values = np.arange(total + 1)
    p = float(dist[np.abs(2 * values - total) >= dev].sum())
    return min(1.0, p)
