"""Budget curves (archlab.study.budgets): the test split at each declared epoch budget, from the
best-validation weights up to it, and the verdict per budget."""

from __future__ import annotations

import pytest

from archlab.study.budgets import budget_metrics, budget_rows
from archlab.study.config import Study
from archlab.study.record import RunRecord
from archlab.study.runner import run_study
from archlab.train.config import TrainConfig

from .conftest import study_dict


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("budgets")
    d = study_dict(train={"epochs": 3, "batch_size": 30}, seeds=[0, 1])
    with_b = run_study(Study.model_validate({**d, "budgets": [1, 3]}), root / "b", report=True)
    plain = run_study(Study.model_validate(d), root / "p", report=False)
    return root, with_b.rows(), plain.rows()


def test_budgets_do_not_change_training_and_the_last_budget_is_the_final_test(runs):
    _, rows, plain = runs
    by = {(r.variant, r.seed): r for r in plain}
    for r in rows:
        p = by[(r.variant, r.seed)]
        assert r.val == p.val and r.test == p.test and r.best_epoch == p.best_epoch
        strip = lambda h: [{k: v for k, v in e.items() if k != "seconds" and not k.startswith("budget_")} for e in h]  # noqa: E731
        assert strip(r.history) == strip(p.history)  # the extra test passes change nothing
        assert r.config["budgets"] == [1, 3] and "budgets" not in p.config
        assert budget_metrics(r, 3) == pytest.approx(r.test)  # best-val weights up to the last epoch = final
        one = budget_metrics(r, 1)
        assert set(one) == set(r.test) and 0 <= one["accuracy"] <= 1
        assert not any(k.startswith("budget_") for e in r.history if e["epoch"] == 2 for k in e)


def test_budget_rows_and_an_early_stop():
    run = RunRecord("d", "v", 0, "done", test={"accuracy": 0.8}, epochs_run=2,
                    history=({"epoch": 1, "budget_test_accuracy": 0.5}, {"epoch": 2}))
    assert budget_metrics(run, 1) == {"accuracy": 0.5}
    assert budget_metrics(run, 5) == {"accuracy": 0.8}  # stopped at 2: the final test
    assert budget_rows([run], 1)[0].test == {"accuracy": 0.5} and budget_rows([run], 1)[0].test_predictions is None


def test_report_has_the_verdict_per_budget(runs):
    root, _, _ = runs
    md = (root / "b" / "report.md").read_text()
    assert "## Budget curves: the verdict per training budget" in md
    assert "| Variant | Dataset | 1 epochs | 3 epochs |" in md and "b (" in md


def test_bad_budgets():
    with pytest.raises(ValueError, match="increasing positive"):
        TrainConfig(epochs=5, budgets=[3, 2])
    with pytest.raises(ValueError, match="beyond epochs"):
        TrainConfig(epochs=5, budgets=[10])
    with pytest.raises(Exception, match="beyond epochs"):
        Study.model_validate({**study_dict(), "budgets": [50]}).resolve(Study.model_validate(
            {**study_dict(), "budgets": [50]}).grid()[0])


def test_study_budgets_are_checked_and_smoke_replaces_them():
    with pytest.raises(ValueError, match="budgets must be increasing positive"):
        Study.model_validate({**study_dict(), "budgets": [2, 2]})
    s = Study.model_validate({**study_dict(train={"epochs": 9, "batch_size": 30}), "budgets": [3, 9],
                              "smoke": {"train": {"epochs": 1}, "budgets": [1]}})
    assert s.resolve(s.grid()[0]).budgets == [3, 9]
    smoke = s.with_smoke()
    assert smoke.resolve(smoke.grid()[0]).budgets == [1]
