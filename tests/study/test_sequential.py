"""Tests of archlab.study.sequential: published boundaries, Monte-Carlo error rates, decisions from rows."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from archlab.errors import ConfigError
from archlab.study.record import RunRecord
from archlab.study.sequential import (
    SequentialDecision,
    interval_verdict,
    plan_looks,
    sequential_decisions,
    sequential_path,
    spending,
    spending_boundaries,
    t_boundary,
)
from archlab.study.verdicts import Reason
from archlab.study.wording import sequential_reason

# ------------------------------------------------------------------------------------------------
# Design


def test_plan_looks():
    assert plan_looks(3, 8, 1) == [3, 4, 5, 6, 7, 8]
    assert plan_looks(3, 10, 3) == [3, 6, 9, 10]  # the maximum is always a look
    assert plan_looks(5, 5, 2) == [5]


@pytest.mark.parametrize("args, match", [((1, 5, 1), "min"), ((4, 3, 1), "max"), ((3, 5, 0), "step"),
                                         ((3.0, 5, 1), "integer")])
def test_plan_looks_bad(args, match):
    with pytest.raises(ConfigError, match=match):
        plan_looks(*args)


def test_obrien_fleming_boundaries_match_published_values():
    """Lan-DeMets O'Brien-Fleming-type, 5 equally spaced looks, two-sided alpha 0.05 (ldbounds/gsDesign)."""
    taus = [0.2, 0.4, 0.6, 0.8, 1.0]
    b = spending_boundaries(taus, [spending(t, 0.05) for t in taus])
    assert b == pytest.approx([4.8769, 3.3569, 2.6803, 2.2898, 2.0310], abs=2e-3)


def test_pocock_boundaries_match_published_values():
    taus = [0.2, 0.4, 0.6, 0.8, 1.0]
    b = spending_boundaries(taus, [spending(t, 0.05, "pocock") for t in taus])
    assert b == pytest.approx([2.4380, 2.4268, 2.4101, 2.3966, 2.3859], abs=2e-3)


def test_one_look_is_the_fixed_test():
    assert spending_boundaries([1.0], [0.05]) == pytest.approx([sps.norm.isf(0.025)], abs=1e-9)
    assert spending(1.0, 0.05) == pytest.approx(0.05) and spending(1.0, 0.05, "pocock") == pytest.approx(0.05)
    assert spending(0.0, 0.05) == 0.0


def test_boundaries_cross_with_the_spent_probability_monte_carlo():
    """Brownian motion at unequal looks crosses the boundaries with total probability alpha."""
    taus = np.array([3, 5, 8, 12, 20]) / 20
    b = np.array(spending_boundaries(taus, [spending(t, 0.05) for t in taus]))
    rng = np.random.default_rng(0)
    inc = rng.normal(size=(200_000, taus.size)) * np.sqrt(np.diff(np.r_[0, taus]))
    z = np.cumsum(inc, axis=1) / np.sqrt(taus)  # (sims, looks)
    crossed = (np.abs(z) >= b).any(axis=1).mean()
    assert crossed == pytest.approx(0.05, abs=3 * math.sqrt(0.05 * 0.95 / 200_000))


def test_t_boundary_has_the_same_nominal_level():
    z = 2.5
    t = t_boundary(z, 4)
    assert sps.t.sf(t, 4) == pytest.approx(sps.norm.sf(z), rel=1e-9)
    assert t_boundary(40.0, 4) == math.inf
    with pytest.raises(ConfigError, match="degree"):
        t_boundary(2.0, 0)


def test_bad_boundary_inputs():
    with pytest.raises(ConfigError, match="increasing"):
        spending_boundaries([0.5, 0.5], [0.01, 0.02])
    with pytest.raises(ConfigError, match="non-decreasing"):
        spending_boundaries([0.5, 1.0], [0.03, 0.02])
    with pytest.raises(ConfigError, match="spending function"):
        spending(0.5, 0.05, "haybittle")


def test_interval_verdict():
    assert interval_verdict((0.01, 0.02), 0.05, True) == "better"
    assert interval_verdict((0.01, 0.02), 0.05, False) == "worse"  # a loss went up
    assert interval_verdict((-0.02, 0.01), 0.05, True) == "equivalent"
    assert interval_verdict((-0.02, 0.06), 0.05, True) == "inconclusive"
    assert interval_verdict((-0.02, 0.01), None, True) == "inconclusive"  # no margin, no equivalence


# ------------------------------------------------------------------------------------------------
# Decisions


def test_path_stops_and_stays_decided():
    looks = plan_looks(3, 8, 1)
    diffs = {s: 0.3 + 0.001 * s for s in range(8)}  # a clear, almost constant improvement
    first = sequential_path(diffs, [], 3, looks=looks, margin=0.01, alpha=0.05)
    assert first.decided and first.verdict == "better" and first.look == 3 and first.n_pairs == 3
    later = sequential_path({**diffs, 5: -5.0}, [], 8, looks=looks, margin=0.01, alpha=0.05)
    assert later == first  # a later seed never changes a decision already taken
    assert first.reasons == (Reason.STOPPED,)
    assert sequential_reason(first, 0.01, "accuracy").startswith("stopped at 3 seeds: better at n=3, repeated interval [")


def test_path_waits_for_complete_looks_and_names_lost_seeds():
    looks = plan_looks(3, 5, 1)
    d = sequential_path({0: 0.1, 1: -0.1}, [], 2, looks=looks, margin=0.01, alpha=0.05)
    assert not d.decided and d.look == 0 and d.reasons == (Reason.WAITING_FIRST_LOOK,)
    assert sequential_reason(d, 0.01, "accuracy") == "waiting for the first look (3 seeds finished on both sides)"
    rng = np.random.default_rng(1)
    diffs = {s: float(rng.normal(0, 0.05)) for s in (0, 2, 4)}
    d = sequential_path(diffs, [1, 3], 5, looks=looks, margin=0.001, alpha=0.05)
    assert d.lost_seeds == [1, 3] and d.n_pairs == 3 and d.look == 5 and not d.decided
    assert d.reasons == (Reason.MAX_SEEDS_REACHED, Reason.INTERVAL_UNDECIDED)
    assert sequential_reason(d, 0.001, "accuracy").startswith("max of 5 seeds reached without a decision (interval [")
    # looks 3 and 4 add no second pair / no new pair: not analyses, nothing spent
    assert [a[0] for a in d.analyses] == [3, 5]


def test_a_constant_shift_waits_for_the_sign_test():
    """The same +1 image on every seed: t is infinite, only the sign test (p = 2^(1-k)) may decide."""
    looks = plan_looks(3, 12, 1)
    d = sequential_path({s: 1 / 30 for s in range(12)}, [], 12, looks=looks, margin=0.01, alpha=0.05)
    assert d.verdict == "better" and d.look > 3
    k = d.n_pairs
    assert 2.0 ** (1 - k) <= 2 * sps.t.sf(d.t_crit, k - 1)  # the sign test passed this look's level
    early = sequential_path({s: 1 / 30 for s in range(3)}, [], 3, looks=looks, margin=0.01, alpha=0.05)
    assert not early.decided and early.reasons == (Reason.CONTINUING, Reason.NO_SPREAD_SIGN_TEST)
    assert sequential_reason(early, 0.01, "accuracy") == (
        "not decided at 3 seeds (the same difference +3.33 pp on every pair; the sign test needs more pairs); continuing")


def test_identical_results_are_equivalent_at_the_first_look():
    d = sequential_path({s: 0.0 for s in range(3)}, [], 3, looks=plan_looks(3, 20, 1), margin=0.01, alpha=0.05)
    assert (d.verdict, d.decided, d.look, d.ci) == ("equivalent", True, 3, (0.0, 0.0))


def _simulate(delta: float, reps: int, looks: list[int], margin: float | None, seed: int):
    rng = np.random.default_rng(seed)
    n_max = looks[-1]
    verdicts, used = [], []
    for _ in range(reps):
        d = rng.normal(delta, 1.0, n_max)
        dec = sequential_path({i: float(d[i]) for i in range(n_max)}, [], n_max, looks=looks,
                              margin=margin, alpha=0.05)
        verdicts.append(dec.verdict)
        used.append(dec.look)
    return np.array(verdicts), np.array(used)


def test_error_rate_under_repeated_looks_is_at_most_alpha():
    """No true difference, 8 looks at 3..10 seeds: P(better or worse) <= alpha + Monte-Carlo error."""
    reps = 1500
    v, used = _simulate(0.0, reps, plan_looks(3, 10, 1), margin=0.5, seed=11)
    rate = np.isin(v, ["better", "worse"]).mean()
    assert rate <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / reps)
    # without correction, testing at 0.05 at every look would reject far more often:
    d = np.random.default_rng(11).normal(0, 1, (reps, 10))
    naive = np.zeros(reps, dtype=bool)
    for n in range(3, 11):
        naive |= sps.ttest_1samp(d[:, :n], 0, axis=1).pvalue < 0.05
    assert naive.mean() > 0.1


def test_true_difference_is_found_better_early():
    v, used = _simulate(1.5, 300, plan_looks(3, 10, 1), margin=0.5, seed=12)
    assert (v == "better").mean() > 0.9 and not (v == "worse").any()
    assert used.mean() < 9  # stops before the maximum on average


def test_equal_variants_come_out_equivalent_with_a_wide_margin():
    v, _ = _simulate(0.0, 300, plan_looks(3, 20, 1), margin=1.5, seed=13)
    assert (v == "equivalent").mean() > 0.9 and np.isin(v, ["better", "worse"]).mean() < 0.05


def _row(variant, seed, acc, status="done"):
    return RunRecord(dataset="d", variant=variant, seed=seed, status=status,
                     test={"accuracy": acc} if status == "done" else None)


def test_decisions_from_rows_are_deterministic_and_split_alpha():
    rows = [_row("a", s, 0.8 + 0.01 * (s % 3)) for s in range(5)]
    rows += [_row("twin", s, 0.8 + 0.01 * (s % 3)) for s in range(3)]
    rows += [_row("bad", s, 0.3 + 0.01 * s) for s in range(5)]
    rows += [_row("noisy", s, 0.8 + (0.05 if s % 2 else -0.04)) for s in range(4)]
    rows += [_row("noisy", 4, None, status="failed")]
    looks = plan_looks(3, 5, 1)
    dec = sequential_decisions(rows, baseline="a", metric="accuracy", margin=0.01, alpha=0.05, looks=looks)
    assert set(dec) == {("d", "twin"), ("d", "bad"), ("d", "noisy")}
    assert dec[("d", "twin")].verdict == "equivalent" and dec[("d", "twin")].look == 3
    assert dec[("d", "bad")].verdict == "worse"
    assert dec[("d", "noisy")].lost_seeds == [4] and not dec[("d", "noisy")].decided
    assert all(isinstance(d, SequentialDecision) and d.alpha == pytest.approx(0.05 / 3) for d in dec.values())
    assert sequential_decisions(list(reversed(rows)), baseline="a", metric="accuracy", margin=0.01,
                                alpha=0.05, looks=looks) == dec
    # a pending seed holds the look back: the decision waits for it
    pending = [r for r in rows if not (r.variant == "bad" and r.seed == 1)] + [_row("bad", 1, None, "running")]
    d = sequential_decisions(pending, baseline="a", metric="accuracy", margin=0.01, alpha=0.05, looks=looks)
    assert d[("d", "bad")].look == 0


def test_decisions_bad_input():
    with pytest.raises(ConfigError, match="alpha"):
        sequential_decisions([], baseline="a", metric="accuracy", margin=0.01, alpha=1.5, looks=[3])
    with pytest.raises(ConfigError, match="margin"):
        sequential_decisions([], baseline="a", metric="accuracy", margin=-1, alpha=0.05, looks=[3])
    with pytest.raises(ConfigError, match="looks"):
        sequential_path({}, [], 0, looks=[5, 3], margin=None, alpha=0.05)


def test_calibrated_t_boundaries_single_look_is_the_t_quantile():
    from archlab.study.sequential import calibrated_t_boundaries

    for n in (3, 5, 12):
        (c,) = calibrated_t_boundaries([n], [0.05])
        assert c == pytest.approx(sps.t.isf(0.025, n - 1), rel=0.015)


def test_calibrated_t_boundaries_spend_alpha_on_fresh_paths():
    """Independent null paths cross the calibrated boundaries with total probability alpha."""
    from archlab.study.sequential import calibrated_t_boundaries

    pairs = [3, 4, 6, 9]
    cum = [spending(k / 9, 0.05) for k in pairs[:-1]] + [0.05]
    c = np.array(calibrated_t_boundaries(pairs, cum))
    x = np.random.default_rng(7).standard_normal((100_000, 9))
    t = np.stack([np.abs(sps.ttest_1samp(x[:, :k], 0, axis=1).statistic) for k in pairs], axis=1)
    rate = (t >= c).any(axis=1).mean()
    assert rate == pytest.approx(0.05, abs=3 * math.sqrt(0.05 * 0.95 / 100_000) + 0.0015)
    with pytest.raises(ConfigError, match="increasing"):
        calibrated_t_boundaries([3, 3], [0.01, 0.05])
