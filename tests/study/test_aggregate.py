"""Tests of archlab.study.aggregate: IQM, probability of improvement, Friedman/Nemenyi (Demšar 2006)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from archlab.errors import ConfigError
from archlab.study.aggregate import (
    aggregate_variants,
    friedman_nemenyi,
    iqm,
    nemenyi_q,
    probability_of_improvement,
    stratified_bootstrap_ci,
)


def test_iqm_is_the_25_percent_trimmed_mean():
    x = [1, 2, 3, 4, 5, 6, 7, 100]
    assert iqm(x) == pytest.approx(np.mean([3, 4, 5, 6]))
    with pytest.raises(ConfigError, match="at least one"):
        iqm([])


def test_stratified_bootstrap_keeps_each_dataset_weight():
    scores = {"a": [0.9, 0.91, 0.92], "b": [0.5, 0.52, 0.51, 0.49, 0.5, 0.53]}
    point, (lo, hi) = stratified_bootstrap_ci(scores, seed=1)
    assert point == pytest.approx(iqm(sum(scores.values(), [])))
    assert lo <= point <= hi
    # resampling within datasets: every resample holds 3 values of "a" and 6 of "b"
    assert stratified_bootstrap_ci(scores, seed=1) == stratified_bootstrap_ci(scores, seed=1)
    with pytest.raises(ConfigError, match="no finished runs"):
        stratified_bootstrap_ci({"a": []})


def test_probability_of_improvement_hand_values():
    v = {"a": [3.0, 1.0], "b": [2.0]}
    b = {"a": [2.0, 1.0], "b": [2.0]}
    # a: pairs (3,2)=1 (3,1)=1 (1,2)=0 (1,1)=1/2 -> 2.5/4; b: tie -> 1/2; mean = (0.625 + 0.5) / 2
    p, (lo, hi) = probability_of_improvement(v, b, seed=0)
    assert p == pytest.approx(0.5625) and lo <= p <= hi
    p_loss, _ = probability_of_improvement(v, b, higher_is_better=False)
    assert p_loss == pytest.approx(1 - 0.5625)
    with pytest.raises(ConfigError, match="same datasets"):
        probability_of_improvement({"a": [1.0]}, {"b": [1.0]})


@pytest.mark.parametrize("k, q", [(2, 1.960), (3, 2.343), (4, 2.569), (5, 2.728), (6, 2.850), (10, 3.164)])
def test_nemenyi_q_matches_demsar_table(k, q):
    assert nemenyi_q(k, 0.05) == pytest.approx(q, abs=1e-3)


def test_friedman_matches_scipy_with_ties():
    rng = np.random.default_rng(0)
    m = np.round(rng.normal(0.8, 0.05, (6, 4)), 2)
    m[2, 1] = m[2, 3]  # a tie on one dataset
    r = friedman_nemenyi(m, ["a", "b", "c", "d"])
    ref = sps.friedmanchisquare(*(-m).T)
    assert r.chi2 == pytest.approx(ref.statistic) and r.p == pytest.approx(ref.pvalue)
    assert r.cd == pytest.approx(2.569 * np.sqrt(4 * 5 / (6 * 6)), abs=1e-3)
    ranks = np.vstack([sps.rankdata(-row) for row in m]).mean(axis=0)
    assert r.avg_ranks == pytest.approx(tuple(ranks))


def test_ranking_groups_and_direction():
    m = np.array([[0.9, 0.8, 0.7], [0.91, 0.81, 0.7], [0.92, 0.79, 0.71]])
    r = friedman_nemenyi(m, ["x", "y", "z"])
    assert r.avg_ranks == (1.0, 2.0, 3.0)
    assert r.groups() == [("x", "y"), ("y", "z")]  # CD = 1.91 ranks at N=3
    loss = friedman_nemenyi(m, ["x", "y", "z"], higher_is_better=False)
    assert loss.avg_ranks == (3.0, 2.0, 1.0)
    with pytest.raises(ConfigError, match="finite"):
        friedman_nemenyi(np.array([[0.1, np.nan]]), ["a", "b"])


def test_aggregate_variants():
    values = {"base": {"d1": [0.8, 0.81], "d2": [0.6, 0.62]},
              "v": {"d1": [0.85, 0.86], "d2": [0.65, 0.66]},
              "partial": {"d1": [0.9]}}
    aggs, ranking = aggregate_variants(values, "base")
    by = {a.variant: a for a in aggs}
    assert by["v"].poi == 1.0 and by["base"].poi is None and by["partial"].poi is None
    assert ranking.variants == ("base", "v") and ranking.avg_ranks == (2.0, 1.0)
