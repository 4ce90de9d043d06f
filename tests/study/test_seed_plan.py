"""Study settings of issue 13: `split: per_seed`, `seeds: {min, max, until}`, margins and alpha."""

from __future__ import annotations

import hashlib

import pytest

from archlab.errors import ConfigError
from archlab.study.config import DEFAULT_MARGINS, Study, load_study
from archlab.study.execute import load_splits

from .conftest import SMALL_DATA, study_dict


def _digest(ds) -> str:
    return hashlib.sha256(ds.images.numpy().tobytes() + ds.labels.numpy().tobytes()).hexdigest()


def _split_ids(study: Study, key):
    splits = load_splits(study.resolve(key).data.model_dump_json())
    return (_digest(splits.train), _digest(splits.val)), _digest(splits.test)


def test_per_seed_split_is_shared_by_variants_and_redrawn_per_seed():
    study = Study.model_validate(study_dict(split="per_seed", seeds=[0, 1]))
    by_key = {(k.variant, k.seed): _split_ids(study, k) for k in study.grid()}
    assert by_key[("a", 0)] == by_key[("b", 0)] and by_key[("a", 1)] == by_key[("b", 1)]
    assert by_key[("a", 0)][0] != by_key[("a", 1)][0]  # train/val redrawn per seed
    assert by_key[("a", 0)][1] == by_key[("a", 1)][1]  # every seed is tested on the same images
    fixed = Study.model_validate(study_dict(seeds=[0, 1]))
    assert _split_ids(fixed, fixed.grid()[0]) == _split_ids(fixed, fixed.grid()[-1])


def test_seed_plan_parses_and_expands(write_study):
    study = load_study(write_study(seeds={"min": 3, "max": 6, "until": "conclusive"}))
    assert study.seeds == [0, 1, 2, 3, 4, 5]
    assert study.seeds_plan.min == 3 and study.seeds_plan.max == 6 and study.seeds_plan.step == 1
    assert load_study(write_study(seeds=4)).seeds_plan is None


@pytest.mark.parametrize(
    "seeds, needle",
    [
        ({"min": 5, "max": 3}, "max (3) is smaller than min (5)"),
        ({"min": 3, "max": 6, "until": "forever"}, "seeds.until"),
        ({"min": 1, "max": 6}, "seeds.min"),
        ({"min": 3, "max": 6, "stop": 1}, "seeds.stop"),
    ],
)
def test_bad_seed_plans_are_one_clear_line(write_study, seeds, needle):
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        load_study(write_study(seeds=seeds))


def test_margins_and_primary_metric(write_study):
    study = load_study(write_study(margins={"accuracy": 0.005}))
    assert study.margin("accuracy") == 0.005 and study.margin("f1_macro") == DEFAULT_MARGINS["f1_macro"]
    assert study.margin("loss") is None
    assert study.decisive_metric() == "accuracy"
    with pytest.raises(ConfigError, match="margins.accuracy"):
        load_study(write_study(margins={"accuracy": -1}))


def _adaptive(**over):
    data = {**SMALL_DATA, "options": {**SMALL_DATA["options"], "num_samples": 90, "image_size": 16}}
    d = study_dict(
        data=data,
        train={"epochs": 2, "batch_size": 15, "optim": {"lr": 0.005}},
        seeds={"min": 3, "max": 5, "until": "conclusive"},
        margins={"accuracy": 0.05},
        variants={
            "a": {"model": {"head": "linear"}},
            "same": {"model": {"head": "linear"}},  # builds the identical model under another name
            "broken": {"model": {"head": "linear"}, "train": {"optim": {"lr": 1.0e-7}}},
            "other": {"model": {"head": "mlp", "head_kwargs": {"hidden": [16]}}},
        },
    )
    d.update(over)
    return d


def _cells(store):
    return sorted((r.variant, r.seed, r.status) for r in store.rows())


def test_seeds_until_conclusive_stops_decided_comparisons(tmp_path):
    from archlab.study.runner import run_study
    from archlab.study.sequential import plan_looks, sequential_decisions

    events = []
    study = Study.model_validate(_adaptive())
    store = run_study(study, tmp_path / "one", workers=1, report=False,
                      on_event=lambda kind, key, info: events.append((kind, info)) if kind == "round" else None)
    rows = store.rows()
    seeds = {v: sorted(r.seed for r in rows if r.variant == v) for v in study.variants}
    # the identical twin is equivalent at the first look (every paired difference is 0)
    assert seeds["same"] == [0, 1, 2]
    # every variant that still runs gets the same seeds as the baseline, which runs the longest
    assert all(s == seeds["a"][: len(s)] for s in seeds.values())
    assert len(seeds["a"]) == max(len(s) for s in seeds.values())
    decisions = sequential_decisions(rows, baseline="a", metric="accuracy", margin=0.05, alpha=0.05,
                                     looks=plan_looks(3, 5, 1), family=3)
    assert decisions[("synthetic16", "same")].verdict == "equivalent"
    assert decisions[("synthetic16", "broken")].verdict == "worse"
    for (_, v), d in decisions.items():
        assert d.n_pairs == len(seeds[v]) and (d.decided or len(seeds[v]) == 5)
    assert events[0][1] == {"round": 1, "rounds": 3, "seeds": 3, "comparisons": 3, "max_runs": 20, "runs": 12}
    assert [e[1]["max_runs"] for e in events] == sorted((e[1]["max_runs"] for e in events), reverse=True)
    assert events[-1][1]["max_runs"] >= len(rows)
    # a re-run adds nothing; another schedule gives the same cells
    again = run_study(study, tmp_path / "one", workers=1, report=False)
    assert _cells(again) == _cells(store)
    two = run_study(study, tmp_path / "two", workers=2, report=False)
    assert _cells(two) == _cells(store)
