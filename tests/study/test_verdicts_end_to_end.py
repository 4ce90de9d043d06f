"""Real trainings through the runner: a crippled variant is worse, an identical twin is equivalent."""

from archlab.study.config import Study
from archlab.study.runner import run_study
from archlab.study.stats import compare_variants

from .conftest import study_dict


def test_learning_rate_1e6_is_worse_and_a_twin_is_equivalent(tmp_path):
    s = Study.model_validate(
        study_dict(
            seeds=5,
            train={"epochs": 3, "batch_size": 15, "optim": {"name": "adam", "lr": 3e-3}},
            variants={"a": {"description": "the baseline head"}, "same": {}, "frozen": {"train": {"optim": {"lr": 1e-6}}}},
        )
    )
    store = run_study(s, tmp_path, report=True)
    stats = {v.variant: v for v in compare_variants(store.rows(), baseline="a", margin=0.01, family=2)}
    # the same model under another name: identical on every seed, never better or worse
    assert stats["same"].outcome == "equivalent" and stats["same"].ci == (0.0, 0.0)
    assert stats["frozen"].outcome == "worse"
    assert (tmp_path / "report.html").is_file() and (tmp_path / "report.md").is_file()
    md = (tmp_path / "report.md").read_text()
    answer = md.split("## Answer")[1].split("## ")[0]
    assert "- same: equivalent to a within ±1 pp (n=5)" in answer
    assert "- frozen: worse than a by" in answer
    assert "Variant a (baseline): the baseline head" in md
    assert "Split sizes (synthetic28): train" in md  # recorded by the engine (provenance.split_sizes)
