"""`workers="auto"`: one single-threaded worker per core, the same thread count however many runs are pending."""

import os

import pytest

from archlab.cli import main
from archlab.errors import ConfigError
from archlab.study.config import Study
from archlab.study.runner import choose_threads, choose_workers, run_study

from .conftest import study_dict


def test_choose_workers_one_per_core_at_most_one_per_run(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert choose_workers(6) == 2 and choose_workers(1) == 1 and choose_workers(0) == 1
    assert choose_threads(2) == 1 and choose_threads(1) == 2
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert choose_workers(6) == 1


def test_auto_runs_every_run_with_one_thread_even_when_resuming(tmp_path):
    s = Study.model_validate(study_dict(train={"epochs": 1, "batch_size": 30}))
    out = tmp_path / "auto"
    store = run_study(s, out, workers="auto", report=False)
    rows = store.rows()
    assert len(rows) == 4 and all(r.status == "done" for r in rows)
    per_core = choose_threads(os.cpu_count() or 1)
    assert {r.provenance["threads"] for r in rows} == {per_core}
    store.close()
    # a resumed study with one run left (one worker, in this process) keeps the per-core thread count,
    # so its numbers are the ones an uninterrupted auto study gets
    (out / "runs").rename(tmp_path / "old_runs")
    import sqlite3

    with sqlite3.connect(out / "results.sqlite") as c:
        c.execute("UPDATE runs SET status = 'pending' WHERE variant = 'a' AND seed = 0")
    first = {(r.variant, r.seed): r for r in rows}
    again = run_study(s, out, workers="auto", report=False)
    redone = {(r.variant, r.seed): r for r in again.rows()}[("a", 0)]
    assert redone.provenance["threads"] == per_core
    assert redone.test == first[("a", 0)].test
    assert redone.test_predictions == first[("a", 0)].test_predictions
    again.close()


@pytest.mark.parametrize("bad", ["three", 0, -1, True, 1.5])
def test_bad_workers_value(tmp_path, bad):
    s = Study.model_validate(study_dict())
    with pytest.raises(ConfigError, match="workers"):
        run_study(s, tmp_path, workers=bad, report=False)


def test_cli_workers_option(tmp_path, write_study, capsys):
    path = write_study(train={"epochs": 1, "batch_size": 30}, seeds=[0])
    assert main(["study", "run", str(path), "--out", str(tmp_path / "o"), "--workers", "many"]) == 2
    assert "--workers must be a positive integer or 'auto'" in capsys.readouterr().err
    assert main(["study", "run", str(path), "--out", str(tmp_path / "o"), "--workers", "auto"]) == 0
