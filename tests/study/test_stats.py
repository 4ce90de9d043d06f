"""Tests of archlab.study.stats: hand-computed values, scipy references, degenerate cases."""

from __future__ import annotations

import math
import sys
import types

import numpy as np
import pytest
from scipy import stats as sps

from archlab.errors import ConfigError, DataError, UnknownNameError
from archlab.study.stats import (
    aso_eps_min,
    compare_variants,
    decide,
    format_p,
    holm,
    mcnemar_exact,
    mcnemar_pooled,
    paired_test,
    summarize,
    verdict,
)


def run(variant, seed, acc=None, *, dataset="digits", status="done", error=None, preds=None,
        targets=None, loss=None, params=1000):
    """A run row as the runner stores it (only the fields the statistics read are varied)."""
    test = None
    if status == "done":
        test = {"accuracy": acc, "f1_macro": acc, "dice": acc,
                "loss": loss if loss is not None else 1.0 - acc}
    return {
        "dataset": dataset, "variant": variant, "seed": seed, "status": status, "error": error,
        "params": params if status == "done" else None, "flops": 5000 if status == "done" else None,
        "train_seconds": 2.0 + seed if status == "done" else None, "test": test, "val": test,
        "best_epoch": 1 if status == "done" else None, "history": [],
        "test_predictions": preds, "test_targets": targets,
    }


def grid(accs: dict[str, list[float]], **kw):
    return [run(v, s, a, **kw) for v, vals in accs.items() for s, a in enumerate(vals)]


def by_variant(stats):
    return {vs.variant: vs for vs in stats}


# ------------------------------------------------------------------------------------------------
# summarize


def test_summarize_hand_values():
    s = summarize([1.0, 2.0, 3.0, 4.0, 5.0])
    assert s.n == 5 and s.mean == 3.0
    assert s.std == pytest.approx(math.sqrt(2.5))  # ddof=1
    # t_{0.975, 4} = 2.776445105; half-width = 2.776445105 * sqrt(2.5) / sqrt(5)
    half = 2.776445105 * math.sqrt(2.5) / math.sqrt(5)
    assert s.ci_t == pytest.approx((3.0 - half, 3.0 + half), abs=1e-8)


def test_summarize_matches_scipy_intervals():
    x = np.array([0.912, 0.934, 0.921, 0.951, 0.940, 0.928, 0.936])
    s = summarize(x, confidence=0.9, n_boot=20000, seed=3)
    ref_t = sps.t.interval(0.9, x.size - 1, loc=x.mean(), scale=sps.sem(x))
    assert s.ci_t == pytest.approx(ref_t, abs=1e-12)
    ref_b = sps.bootstrap((x,), np.mean, confidence_level=0.9, method="percentile",
                          n_resamples=20000, rng=np.random.default_rng(1)).confidence_interval
    # Independent resampling streams: the two percentile intervals agree to Monte-Carlo error.
    assert s.ci_boot == pytest.approx((ref_b.low, ref_b.high), abs=1.5e-3)
    assert x.min() <= s.ci_boot[0] < s.mean < s.ci_boot[1] <= x.max()


def test_summarize_bootstrap_is_seeded():
    x = [0.31, 0.52, 0.44, 0.47, 0.39, 0.58, 0.36]
    assert summarize(x, seed=1, n_boot=500).ci_boot == summarize(x, seed=1, n_boot=500).ci_boot
    assert summarize(x, seed=1, n_boot=500).ci_boot != summarize(x, seed=2, n_boot=500).ci_boot


def test_summarize_single_value_and_constant():
    one = summarize([0.9])
    assert (one.n, one.mean, one.std, one.ci_t, one.ci_boot) == (1, 0.9, None, None, None)
    const = summarize([0.5, 0.5, 0.5])
    assert const.std == 0.0 and const.ci_t == (0.5, 0.5) and const.ci_boot == (0.5, 0.5)


@pytest.mark.parametrize(
    "values, kwargs, match",
    [
        ([], {}, "at least one"),
        ([0.1, float("nan")], {}, "non-finite"),
        ([0.1, float("inf")], {}, "non-finite"),
        ([0.1, 0.2], {"confidence": 1.5}, "confidence"),
        ([0.1, 0.2], {"n_boot": 0}, "n_boot"),
        ([[0.1, 0.2]], {}, "flat"),
    ],
)
def test_summarize_bad_input(values, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        summarize(values, **kwargs)


# ------------------------------------------------------------------------------------------------
# paired_test


def test_paired_test_matches_scipy():
    base = np.array([0.951, 0.948, 0.955, 0.944, 0.950, 0.947])
    var = np.array([0.957, 0.949, 0.961, 0.953, 0.952, 0.955])
    r = paired_test(base, var, aso=False)
    ref = sps.ttest_rel(var, base)
    d = var - base
    assert r.n == 6
    assert r.mean_diff == pytest.approx(d.mean())
    assert r.t_stat == pytest.approx(ref.statistic)
    assert r.t_p == pytest.approx(ref.pvalue)
    ci = ref.confidence_interval(0.95)
    assert r.ci_diff == pytest.approx((ci.low, ci.high))
    assert r.wilcoxon_p == pytest.approx(sps.wilcoxon(var, base).pvalue)
    assert r.effect_size == pytest.approx(d.mean() / d.std(ddof=1))
    assert r.aso_eps_min is None


def test_wilcoxon_exact_hand_value():
    # d = (1, 2, 3, 4, -5): W- = 5. Subsets of {1..5} with rank sum <= 5: {}, 5 singletons,
    # {1,2}, {1,3}, {1,4}, {2,3} = 10 of 32, so the exact two-sided p = 2 * 10 / 32.
    r = paired_test([0, 0, 0, 0, 0], [1, 2, 3, 4, -5], aso=False)
    assert r.wilcoxon_p == pytest.approx(0.625)


def test_wilcoxon_floor_at_five_seeds():
    # All five differences negative: the smallest exact two-sided p is 2 / 2**5.
    r = paired_test([0.95, 0.96, 0.94, 0.95, 0.955], [0.30, 0.31, 0.28, 0.33, 0.29], aso=False)
    assert r.wilcoxon_p == pytest.approx(0.0625)
    assert r.t_p < 1e-5


def test_paired_identical_gives_zero_and_p_one():
    x = [0.91, 0.93, 0.92, 0.95, 0.94]
    r = paired_test(x, list(x), aso=False)
    assert (r.mean_diff, r.std_diff, r.t_p, r.wilcoxon_p, r.effect_size) == (0.0, 0.0, 1.0, 1.0, 0.0)
    assert r.ci_diff == (0.0, 0.0)


def test_paired_constant_shift_is_degenerate_not_nan():
    r = paired_test([1.0, 2.0, 3.0], [1.5, 2.5, 3.5], aso=False)
    assert r.t_p == 0.0 and r.t_stat == math.inf and r.effect_size == math.inf
    assert 0.0 < r.wilcoxon_p <= 1.0


def test_paired_single_pair():
    r = paired_test([0.9], [0.8], aso=False)
    assert r.n == 1 and r.mean_diff == pytest.approx(-0.1)
    assert r.t_p is None and r.wilcoxon_p is None and r.ci_diff is None and r.effect_size is None


@pytest.mark.parametrize(
    "a, b, match",
    [
        ([0.1, 0.2], [0.1], "same length"),
        ([], [], "at least one"),
        ([0.1, 0.2], [0.1, math.nan], "non-finite"),
    ],
)
def test_paired_bad_input(a, b, match):
    with pytest.raises(ConfigError, match=match):
        paired_test(a, b)


# ------------------------------------------------------------------------------------------------
# ASO (deepsig is optional: a stand-in module checks the call, the real one is not required)


def test_aso_none_without_deepsig(monkeypatch):
    monkeypatch.setitem(sys.modules, "deepsig", None)  # makes `import deepsig` raise ImportError
    assert aso_eps_min([1, 2, 3], [0, 1, 2]) is None
    assert paired_test([0, 1, 2], [1, 2, 4]).aso_eps_min is None


def test_aso_calls_deepsig_with_variant_first(monkeypatch):
    calls = []

    def aso(scores_a, scores_b, confidence_level=0.95, show_progress=True, seed=None):
        calls.append((list(scores_a), list(scores_b), show_progress, seed))
        return 0.125

    monkeypatch.setitem(sys.modules, "deepsig", types.SimpleNamespace(aso=aso))
    r = paired_test([1.0, 2.0, 3.0], [2.0, 3.0, 5.0], seed=7)
    assert r.aso_eps_min == 0.125
    assert calls[-1] == ([2.0, 3.0, 5.0], [1.0, 2.0, 3.0], False, 7)
    # Lower is better (loss): both score lists are negated so that higher = better for deepsig.
    paired_test([1.0, 2.0, 3.0], [2.0, 3.0, 5.0], higher_is_better=False)
    assert calls[-1][:2] == ([-2.0, -3.0, -5.0], [-1.0, -2.0, -3.0])


def test_aso_failure_is_logged_not_raised(monkeypatch, caplog):
    def aso(a, b, show_progress=True):
        raise RuntimeError("boom")

    monkeypatch.setitem(sys.modules, "deepsig", types.SimpleNamespace(aso=aso))
    assert aso_eps_min([1.0, 2.0], [0.0, 1.0]) is None
    assert "boom" in caplog.text


# ------------------------------------------------------------------------------------------------
# McNemar and Holm


def test_mcnemar_hand_values():
    base = np.array([1, 1, 0, 0, 0, 0, 0, 0, 1, 1], dtype=bool)
    var = np.array([1, 0, 1, 1, 1, 1, 1, 1, 1, 1], dtype=bool)
    b, c, p = mcnemar_exact(base, var)
    # b = 1 (base right, variant wrong), c = 6: p = 2 * P(X <= 1 | n=7, 1/2) = 2 * 8 / 128.
    assert (b, c) == (1, 6) and p == pytest.approx(0.125)
    assert mcnemar_exact(base, base) == (0, 0, 1.0)
    assert mcnemar_exact([True] * 5 + [False] * 5, [False] * 5 + [True] * 5) == (5, 5, 1.0)


@pytest.mark.parametrize("b, c", [(0, 9), (3, 17), (12, 11), (40, 25)])
def test_mcnemar_matches_binomial_formula(b, c):
    base = [True] * b + [False] * c + [True] * 4
    var = [False] * b + [True] * c + [True] * 4
    n, k = b + c, min(b, c)
    ref = min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)
    assert mcnemar_exact(base, var) == (b, c, pytest.approx(ref))


def test_mcnemar_pooled_sums_tables():
    assert mcnemar_pooled([(1, 3), (0, 3)]) == (1, 6, pytest.approx(0.125))
    assert mcnemar_pooled([]) == (0, 0, 1.0)
    with pytest.raises(ConfigError):
        mcnemar_pooled([(-1, 2)])


def test_mcnemar_bad_shapes():
    with pytest.raises(ConfigError, match="same samples"):
        mcnemar_exact([True, False], [True])


def test_holm_hand_values():
    adj = holm({"a": 0.01, "b": 0.04, "c": 0.03})
    # sorted a, c, b: 3 * 0.01 = 0.03; max(0.03, 2 * 0.03) = 0.06; max(0.06, 1 * 0.04) = 0.06.
    assert adj == pytest.approx({"a": 0.03, "b": 0.06, "c": 0.06})
    assert list(adj) == ["a", "b", "c"]
    assert holm({"x": 0.2, "y": 0.9}) == pytest.approx({"x": 0.4, "y": 0.9})
    assert holm({"x": 0.7, "y": 0.8}) == pytest.approx({"x": 1.0, "y": 1.0})  # capped at 1
    assert holm({"only": 0.02}) == {"only": 0.02}
    assert holm({}) == {}


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan")])
def test_holm_rejects_bad_p(p):
    with pytest.raises(ConfigError, match="'bad'"):
        holm({"ok": 0.1, "bad": p})


# ------------------------------------------------------------------------------------------------
# verdict


def test_format_p():
    assert [format_p(p) for p in (0.0004, 0.004, 0.0625, 0.43, 1.0, None)] == [
        "<0.001", "0.004", "0.062", "0.43", "1.00", "—"]


def test_verdict_texts():
    assert verdict(0.001, 0.43, 5) == "no significant difference at n=5 (paired t p=0.43)"
    assert verdict(0.012, 0.004, 5, adjusted=True) == (
        "significantly better (+1.20 pp, paired t p=0.004 Holm-adjusted)")
    assert verdict(-0.65, 1e-6, 5, mcnemar_p=1e-9).startswith("significantly worse (-65.00 pp")
    assert verdict(0.02, 0.01, 2) == "inconclusive: only 2 paired seeds (need at least 3)"
    assert verdict(None, None, 0).startswith("inconclusive: no seed finished")
    # Lower is better (loss): a negative difference is an improvement; raw units, not pp.
    assert verdict(-0.05, 0.01, 5, higher_is_better=False, percent=False).startswith(
        "significantly better (-0.05, paired t")


def test_verdict_mcnemar_must_agree():
    outcome, text = decide(0.01, 0.01, 5, mcnemar_p=0.4)
    assert outcome == "inconclusive"
    assert "paired t-test" in text and "McNemar" in text
    assert decide(0.01, 0.01, 5, mcnemar_p=0.01)[0] == "better"
    assert decide(0.01, 0.2, 5, mcnemar_p=0.0001)[0] == "no_difference"


def test_verdict_bad_args():
    with pytest.raises(ConfigError, match="alpha"):
        verdict(0.1, 0.01, 5, alpha=0.0)
    with pytest.raises(ConfigError, match="min_pairs"):
        verdict(0.1, 0.01, 5, min_pairs=1)


# ------------------------------------------------------------------------------------------------
# compare_variants


BASE = [0.951, 0.946, 0.955, 0.949, 0.953]


def test_identical_variants_no_difference():
    stats = by_variant(compare_variants(grid({"base": BASE, "twin": list(BASE)}), baseline="base"))
    twin = stats["twin"]
    assert twin.paired.mean_diff == 0.0 and twin.paired.t_p == 1.0 and twin.paired.wilcoxon_p == 1.0
    assert twin.outcome == "no_difference"
    assert twin.verdict.startswith("no significant difference at n=5")
    assert stats["base"].outcome == "baseline" and stats["base"].paired is None


def test_identical_at_two_seeds_is_no_difference_not_inconclusive():
    stats = by_variant(compare_variants(grid({"base": BASE[:2], "twin": BASE[:2],
                                              "near": [BASE[0], BASE[1] + 0.01]}), baseline="base"))
    assert stats["twin"].outcome == "no_difference"
    assert stats["twin"].verdict == (
        "no significant difference at n=2 (identical on every paired seed, paired t p=1.00)")
    assert stats["near"].outcome == "inconclusive"  # not identical: two seeds are too few
    one = by_variant(compare_variants(grid({"base": BASE[:1], "twin": BASE[:1]}), baseline="base"))
    assert one["twin"].outcome == "inconclusive"  # one seed is an anecdote, identical or not


def test_min_pairs_is_configurable():
    runs = grid({"base": BASE[:2], "v": [0.5, 0.52]})
    assert by_variant(compare_variants(runs, baseline="base", min_pairs=2))["v"].outcome == "worse"


def test_clearly_worse_variant_is_significantly_worse():
    rng = np.random.default_rng(0)
    good = (0.95 + 0.005 * rng.standard_normal(5)).tolist()
    bad = (0.30 + 0.02 * rng.standard_normal(5)).tolist()
    vs = by_variant(compare_variants(grid({"base": good, "lr1e-6": bad}), baseline="base"))["lr1e-6"]
    assert vs.outcome == "worse"
    assert vs.verdict.startswith("significantly worse (-6") and "paired t" in vs.verdict
    # Wilcoxon cannot decide at n=5: its exact floor is 0.0625.
    assert vs.paired.wilcoxon_p == pytest.approx(0.0625)


def test_holm_across_variants_within_dataset():
    runs = grid({
        "base": BASE,
        "a": [0.955, 0.950, 0.961, 0.950, 0.958],
        "b": [0.940, 0.947, 0.950, 0.943, 0.949],
        "c": [0.952, 0.944, 0.957, 0.950, 0.951],
    })
    stats = by_variant(compare_variants(runs, baseline="base"))
    raw = {v: sps.ttest_rel(np.array([r["test"]["accuracy"] for r in runs if r["variant"] == v]),
                            np.array(BASE)).pvalue for v in "abc"}
    ref = holm(raw)
    for v in "abc":
        assert stats[v].paired.t_p == pytest.approx(raw[v])
        assert stats[v].t_p_holm == pytest.approx(ref[v])
        assert stats[v].holm_family == 3
    assert "Holm-adjusted" in stats["a"].verdict


def test_holm_is_per_dataset():
    runs = grid({"base": BASE, "a": [x + 0.01 for x in BASE[:4]] + [0.9]}, dataset="d1")
    b = [0.950, 0.944, 0.955, 0.946, 0.950]
    runs += grid({"base": BASE, "a": [x + 0.01 for x in BASE[:4]] + [0.9], "b": b}, dataset="d2")
    stats = compare_variants(runs, baseline="base")
    assert [(vs.dataset, vs.variant) for vs in stats] == [
        ("d1", "base"), ("d1", "a"), ("d2", "base"), ("d2", "a"), ("d2", "b")]
    d1a, d2a = stats[1], stats[3]
    assert d1a.t_p_holm == pytest.approx(d1a.paired.t_p) and d1a.holm_family == 1
    ref = holm({"a": d2a.paired.t_p, "b": sps.ttest_rel(b, BASE).pvalue})
    assert d2a.holm_family == 2 and d2a.t_p_holm == pytest.approx(ref["a"])
    d2b = stats[4]  # the smaller p of the two: Holm doubles it
    assert d2b.t_p_holm == pytest.approx(ref["b"]) == pytest.approx(2 * d2b.paired.t_p)


def test_partial_study_counts_and_pairs_by_seed():
    runs = grid({"base": BASE, "v": [0.96, 0.95, 0.96, 0.95, 0.96]})
    runs[2] = run("base", 2, status="pending")  # baseline seed 2 not finished
    runs[6] = run("v", 1, status="failed", error="TrainingFailed: loss is NaN at epoch 2")
    runs[9] = run("v", 4, status="running")
    runs.append(run("v", 7, 0.97))  # a seed the baseline never ran
    stats = by_variant(compare_variants(runs, baseline="base"))
    v = stats["v"]
    assert v.status_counts == {"done": 4, "failed": 1, "pending": 0, "running": 1}
    assert v.failures == ((1, "TrainingFailed: loss is NaN at epoch 2"),)
    assert v.seeds_done == (0, 2, 3, 7)
    assert v.paired_seeds == (0, 3)  # seeds finished for both
    assert v.paired.n == 2 and v.outcome == "inconclusive"
    assert v.verdict == "inconclusive: only 2 paired seeds (need at least 3)"
    assert stats["base"].status_counts["pending"] == 1
    assert stats["v"].train_seconds == pytest.approx(np.mean([2.0, 4.0, 5.0, 9.0]))


def test_single_seed_and_single_variant():
    one = by_variant(compare_variants(grid({"base": [0.9], "v": [0.8]}), baseline="base"))
    assert one["base"].summary.std is None and one["v"].outcome == "inconclusive"
    solo = compare_variants(grid({"base": BASE}), baseline="base")
    assert len(solo) == 1 and solo[0].outcome == "baseline" and solo[0].summary.n == 5
    assert compare_variants([], baseline="base") == []


def test_baseline_without_finished_runs():
    runs = [run("base", s, status="pending") for s in range(3)] + grid({"v": BASE})
    v = by_variant(compare_variants(runs, baseline="base"))["v"]
    assert v.paired is None and v.outcome == "inconclusive"
    assert v.verdict.startswith("inconclusive: no seed finished")


def test_done_run_without_metric_is_noted():
    runs = grid({"base": BASE, "v": BASE})
    runs[5]["test"]["accuracy"] = float("nan")
    v = by_variant(compare_variants(runs, baseline="base"))["v"]
    assert v.seeds_done == (1, 2, 3, 4) and any("seed 0" in n for n in v.notes)


def test_loss_metric_lower_is_better():
    runs = [run("base", s, 0.9, loss=l) for s, l in enumerate([0.50, 0.52, 0.49, 0.51, 0.50])]
    runs += [run("v", s, 0.9, loss=l) for s, l in enumerate([0.30, 0.33, 0.31, 0.29, 0.30])]
    v = by_variant(compare_variants(runs, baseline="base", metric="loss"))["v"]
    assert v.outcome == "better" and v.verdict.startswith("significantly better (-0.198,")
    assert v.mcnemar is None  # McNemar tests correctness, i.e. accuracy only


def test_mcnemar_pooled_from_predictions():
    targets = [0, 1, 2, 3, 0, 1, 2, 3]
    base_pred = [[0, 1, 2, 3, 0, 1, 2, 0], [0, 1, 2, 3, 0, 1, 0, 0], [0, 1, 2, 3, 0, 1, 2, 3]]
    var_pred = [[0, 1, 2, 0, 0, 1, 2, 3], [0, 1, 2, 3, 0, 1, 2, 3], [0, 1, 2, 3, 0, 1, 2, 3]]
    runs = []
    for s in range(3):
        for v, preds in (("base", base_pred[s]), ("v", var_pred[s])):
            acc = float(np.mean(np.array(preds) == np.array(targets)))
            runs.append(run(v, s, acc, preds=preds, targets=targets))
    m = by_variant(compare_variants(runs, baseline="base"))["v"].mcnemar
    # seed 0: b=1 (index 3), c=1 (index 7); seed 1: b=0, c=2; seed 2: b=c=0 -> pooled (1, 3).
    assert m.per_seed == ((0, 1, 1, 1.0), (1, 0, 2, 0.5), (2, 0, 0, 1.0))
    assert (m.b, m.c, m.seeds) == (1, 3, (0, 1, 2))
    assert m.p == pytest.approx(2 * (1 + 4) / 16)


def test_mcnemar_needs_same_targets():
    runs = [run("base", s, 0.5, preds=[0, 1], targets=[0, 0]) for s in range(3)]
    runs += [run("v", s, 0.5, preds=[0, 1], targets=[0, 0]) for s in range(3)]
    runs[4]["test_targets"] = [1, 1]
    with pytest.raises(DataError, match="different test targets"):
        compare_variants(runs, baseline="base")
    runs[4]["test_targets"] = [0, 0, 0]
    with pytest.raises(DataError, match="3 test targets"):
        compare_variants(runs, baseline="base")


def test_compare_variants_bad_input():
    runs = grid({"base": BASE, "v": BASE})
    with pytest.raises(UnknownNameError, match="did you mean 'base'"):
        compare_variants(runs, baseline="bse")
    with pytest.raises(UnknownNameError, match="metric"):
        compare_variants(runs, baseline="base", metric="acc")
    with pytest.raises(DataError, match="seed 1"):
        compare_variants(runs + [run("v", 1, 0.9)], baseline="base")
    with pytest.raises(ConfigError, match="min_pairs"):
        compare_variants(runs, baseline="base", min_pairs=1)
