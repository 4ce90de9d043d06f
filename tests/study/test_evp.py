"""Expected validation performance (Dodge et al. 2019) against exact enumeration and simulation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from archlab.errors import DataError
from archlab.study.evp import evp_curve, expected_max, leader_at, ranking_flips


@pytest.mark.parametrize("k", [1, 2, 3])
def test_expected_max_matches_enumeration_of_draws_with_replacement(k):
    v = [0.3, 0.9, 0.5, 0.5, 0.1]
    maxima = [max(c) for c in itertools.product(v, repeat=k)]
    mean, std = expected_max(v, k)
    assert mean == pytest.approx(np.mean(maxima), abs=1e-12)
    assert std == pytest.approx(np.std(maxima), abs=1e-12)
    lo_mean, lo_std = expected_max(v, k, higher_is_better=False)
    minima = [min(c) for c in itertools.product(v, repeat=k)]
    assert lo_mean == pytest.approx(np.mean(minima)) and lo_std == pytest.approx(np.std(minima))


def test_curve_matches_monte_carlo_and_rises_to_the_best():
    rng = np.random.default_rng(0)
    v = rng.normal(0.8, 0.05, size=12)
    c = evp_curve("a", v)
    draws = rng.choice(v, size=(100_000, 6)).max(axis=1)
    assert c.mean[5] == pytest.approx(draws.mean(), abs=1e-3)
    assert c.std[5] == pytest.approx(draws.std(), abs=1e-3)
    assert c.mean[0] == pytest.approx(v.mean()) and all(np.diff(c.mean) >= 0) and c.mean[-1] <= v.max()


def test_ranking_flip_when_a_robust_variant_loses_to_a_high_ceiling_one():
    robust = evp_curve("robust", [0.80, 0.81, 0.80, 0.81, 0.80, 0.81])  # every config is fine
    peaky = evp_curve("peaky", [0.50, 0.55, 0.60, 0.52, 0.90, 0.90])  # two configs are best
    flips = ranking_flips({"robust": robust, "peaky": peaky})
    assert leader_at({"robust": robust, "peaky": peaky}, 1) == ["robust", "peaky"]
    assert len(flips) == 1 and flips[0][2] == ["peaky", "robust"]
    assert ranking_flips({"robust": robust, "same": evp_curve("same", [0.80, 0.81] * 3)}, tol=1e-9) == []


def test_bad_inputs():
    for bad in ([], [0.1, float("nan")]):
        with pytest.raises(DataError):
            expected_max(bad, 1)
    with pytest.raises(DataError, match="k must be"):
        expected_max([0.1], 0)
