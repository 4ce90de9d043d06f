"""Real trainings through the runner: a crippled variant is found significantly worse at 5 seeds."""

from archlab.study.config import Study
from archlab.study.runner import run_study
from archlab.study.stats import compare_variants

from .conftest import study_dict


def test_learning_rate_1e6_is_significantly_worse(tmp_path):
    s = Study.model_validate(
        study_dict(
            seeds=5,
            train={"epochs": 3, "batch_size": 15, "optim": {"name": "adam", "lr": 3e-3}},
            variants={"a": {}, "same": {}, "frozen": {"train": {"optim": {"lr": 1e-6}}}},
        )
    )
    store = run_study(s, tmp_path, report=True)
    stats = {v.variant: v for v in compare_variants(store.rows(), baseline="a")}
    assert stats["same"].outcome == "no_difference"
    assert stats["frozen"].outcome == "worse"
    assert (tmp_path / "report.html").is_file() and (tmp_path / "report.md").is_file()
    assert "significantly worse" in (tmp_path / "report.md").read_text()
