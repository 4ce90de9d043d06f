"""Equal tuning (archlab.study.tuning): the protocol simulated on synthetic objectives.

Two variants share the same optimum (lr 1e-3, accuracy 0.90) but differ in lr sensitivity; the
study's lr (1e-2) suits neither exactly. Untuned, the sensitive variant loses by ~0.09 ("worse");
after 12 TPE trials each, both sit within the 1 pp margin ("equivalent"). Test data is never read
while tuning: a guard raises on any access.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

pytest.importorskip("optuna")

from archlab.errors import ConfigError
from archlab.study.record import RunRecord
from archlab.study.stats import compare_variants
from archlab.study.tuning import (TestSplitAccess, TuneConfig, guard_test, overrides_for, parse_space,
                                  propose_round, run_tuning, tuning_seeds)
from archlab.study.verdicts import Verdict

SPACE = {"train.optim.lr": "loguniform(1e-4, 1e-1)"}
SENSITIVITY = {"base": 0.01, "sensitive": 0.09}  # accuracy lost per decade² away from lr 1e-3
STUDY_LR = 1e-2
SEED_PHASE = [0, 1, 2, 3, 4, 5]


class FakeSplits:
    train, val = "train-data", "val-data"

    @property
    def test(self):  # the seed phase reads it
        return "test-data"


def score(variant: str, lr: float, seed: int, split: str) -> float:
    """A noisy accuracy: peak 0.90 at lr 1e-3, quadratic in log10(lr); split-specific noise."""
    rng = np.random.default_rng([seed, {"val": 1, "test": 2}[split], list(SENSITIVITY).index(variant)])
    return 0.90 - SENSITIVITY[variant] * (math.log10(lr) + 3.0) ** 2 + float(rng.normal(0, 0.002))


def evaluator(variant: str, reads: list[str], order_seed: int | None = None):
    def evaluate(batch):
        todo = list(batch)
        if order_seed is not None:  # workers finishing in another order
            random.Random(order_seed).shuffle(todo)
        got = {}
        for t in todo:
            splits = guard_test(FakeSplits(), f"{variant} trial {t.number}")
            reads.append(splits.val)
            got[t.number] = float(np.mean([score(variant, t.params["train.optim.lr"], s, "val") for s in t.seeds]))
        return [got[t.number] for t in batch]
    return evaluate


def seed_phase(lrs: dict[str, float]) -> list[RunRecord]:
    return [RunRecord("sim", v, s, "done", test={"accuracy": score(v, lr, s, "test")})
            for s in SEED_PHASE for v, lr in lrs.items()]


def verdict(rows) -> Verdict:
    stats = compare_variants(rows, baseline="base", metric="accuracy", margin=0.01, aso=False)
    return next(s for s in stats if s.variant == "sensitive").outcome


def test_equal_tuning_turns_worse_into_equivalent():
    cfg = TuneConfig(space=SPACE, trials=12, sampler="tpe")
    untuned = verdict(seed_phase({"base": STUDY_LR, "sensitive": STUDY_LR}))
    assert untuned is Verdict.WORSE
    best = {}
    for v in SENSITIVITY:
        res = run_tuning(cfg, v, evaluator(v, []), seed_phase=SEED_PHASE)
        assert len(res.trials) == 12 and res.best is not None
        best[v] = res.best.params["train.optim.lr"]
    assert all(abs(math.log10(lr) + 3) < 0.3 for lr in best.values()), best
    assert verdict(seed_phase(best)) is Verdict.EQUIVALENT


def test_tuning_never_reads_test_and_the_guard_raises():
    reads: list[str] = []
    run_tuning(TuneConfig(space=SPACE, trials=5, round=2), "base", evaluator("base", reads), seed_phase=SEED_PHASE)
    assert reads == ["val-data"] * 5
    guarded = guard_test(FakeSplits(), "base trial 0")
    with pytest.raises(TestSplitAccess, match="base trial 0: the test split was read"):
        guarded.test

    def leaky(batch):
        return [float(len(guard_test(FakeSplits()).test)) for _ in batch]

    with pytest.raises(TestSplitAccess):
        run_tuning(TuneConfig(space=SPACE, trials=2), "base", leaky, seed_phase=SEED_PHASE)


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_same_trials_under_any_schedule_and_on_resume(sampler):
    cfg = TuneConfig(space={**SPACE, "train.optim.weight_decay": [0, 5e-4]}, trials=10, round=3, sampler=sampler,
                     n_startup=3)
    a = run_tuning(cfg, "sensitive", evaluator("sensitive", []), seed_phase=SEED_PHASE)
    b = run_tuning(cfg, "sensitive", evaluator("sensitive", [], order_seed=7), seed_phase=SEED_PHASE)
    assert a == b
    # resume after round 1 (killed): round 2 is recomputed from the stored trials alone
    told = [t for t in a.trials if t.number < 6]
    random.Random(3).shuffle(told)
    assert propose_round(cfg, "sensitive", 2, told) == [t.params for t in a.trials if 6 <= t.number < 9]
    # another variant gets its own sampler stream but the same trial seeds
    c = run_tuning(cfg, "base", evaluator("base", []), seed_phase=SEED_PHASE)
    assert [t.params for t in c.trials] != [t.params for t in a.trials]
    assert [t.seeds for t in c.trials] == [t.seeds for t in a.trials]


def test_failed_trials_are_told_and_skipped():
    cfg = TuneConfig(space=SPACE, trials=6, round=3)
    res = run_tuning(cfg, "base", lambda batch: [None if t.number % 2 else 0.5 + t.number for t in batch],
                     seed_phase=SEED_PHASE)
    assert res.best.number == 4 and [t.value for t in res.trials][:2] == [0.5, None]


def test_tuning_seeds_are_disjoint_from_the_seed_phase():
    seeds = tuning_seeds(20, 3, SEED_PHASE)
    flat = [s for row in seeds for s in row]
    assert len(set(flat)) == 60 and not set(flat) & set(SEED_PHASE)
    first = seeds[0][0]
    assert first not in tuning_seeds(1, 1, [first])[0]  # a collision is re-derived


def test_overrides_and_bad_spaces():
    assert overrides_for({"train.optim.lr": 0.1, "model.head_kwargs.hidden": 8}) == {
        "train": {"optim": {"lr": 0.1}}, "model": {"head_kwargs": {"hidden": 8}}}
    assert parse_space({"train.optim.lr": "loguniform(1e-4, 1e-2)"})["train.optim.lr"].high == 1e-2
    assert parse_space({"train.optim.lr": {"loguniform": [1e-4, 1e-2]}})["train.optim.lr"].kind == "loguniform"
    for bad, msg in [({"data.val_fraction": [0.1]}, "under train. or model."),
                     ({"train.optim.lr": "loguniform(0, 1)"}, "positive low bound"),
                     ({"train.optim.lr": "uniform(1, 1)"}, "must be below"),
                     ({"train.optim.lr": "normal(1, 2)"}, "expected loguniform"),
                     ({"train.epochs": [1, 2]}, "cannot change train.epochs"),
                     ({"train.batch_size": "int(1.5, 4)"}, "integer bounds"),
                     ({"train.optim.lr": []}, "non-empty list"),
                     ({"train.optim.lr": "loguniform(1e-4"}, "the comma splits it: quote it")]:
        with pytest.raises(ConfigError, match=msg):
            parse_space(bad)
    with pytest.raises(ValueError, match="space"):
        TuneConfig(space={"train.optim.lr": "nope"})
