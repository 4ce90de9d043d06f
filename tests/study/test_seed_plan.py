"""Study settings of issue 13: `split: per_seed`, `seeds: {min, max, until}`, margins and alpha."""

from __future__ import annotations

import hashlib

import pytest

from archlab.errors import ConfigError
from archlab.study.config import DEFAULT_MARGINS, Study, load_study
from archlab.study.execute import load_splits

from .conftest import study_dict


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
