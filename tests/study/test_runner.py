"""The runner: skip done, resume interrupted, record failures, fairness (kill -9 = uninterrupted: tests/faults/)."""

import pytest

from archlab.errors import ConfigError
from archlab.study.backends.local import Pool
from archlab.study.config import Study
from archlab.study.runner import StudyLock, run_study
from archlab.study.store import StudyStore
from archlab.train import engine

from .conftest import SMALL_DATA, study_dict


def _metrics(store):
    return {
        (r.dataset, r.variant, r.seed): (r.status, r.test, r.test_predictions, len(r.history))
        for r in store.rows()
    }


def test_run_skip_and_identical_variants(tmp_path):
    s = Study.model_validate(study_dict(variants={"a": {}, "same": {}}))
    events = []
    store = run_study(s, tmp_path, report=False, on_event=lambda k, key, i: events.append((k, key.label)))
    rows = store.rows()
    assert len(rows) == 4 and all(r.status == "done" for r in rows)
    by = {(r.variant, r.seed): r for r in rows}
    for seed in (0, 1):
        assert by[("a", seed)].test == by[("same", seed)].test
        assert by[("a", seed)].history == [
            {**h, "seconds": by[("a", seed)].history[i]["seconds"]} for i, h in enumerate(by[("same", seed)].history)
        ]
    assert by[("a", 0)].test != by[("a", 1)].test or by[("a", 0)].history != by[("a", 1)].history
    # a second run trains nothing
    events.clear()
    run_study(s, tmp_path, report=False, on_event=lambda k, key, i: events.append(k))
    assert events == ["skip"] * 4


def test_failed_run_is_recorded_and_others_go_on(tmp_path):
    s = Study.model_validate(study_dict(variants={"a": {}, "boom": {"train": {"optim": {"name": "sgd", "lr": 1e12}}}}))
    store = run_study(s, tmp_path, report=False)
    rows = {(r.variant, r.seed): r for r in store.rows()}
    assert rows[("a", 0)].status == "done" and rows[("a", 1)].status == "done"
    assert rows[("boom", 0)].status == "failed"
    assert "TrainingFailed" in rows[("boom", 0)].error and "nan" in rows[("boom", 0)].error.lower()
    # failed runs keep their record unless retried
    run_study(s, tmp_path, report=False)
    assert {r.attempts for r in store.rows() if r.variant == "boom"} == {1}
    run_study(s, tmp_path, report=False, retry_failed=True)
    assert {r.attempts for r in StudyStore(tmp_path / "results.sqlite").rows() if r.variant == "boom"} == {2}


def test_changed_study_file_is_refused(tmp_path):
    run_study(Study.model_validate(study_dict(seeds=[0])), tmp_path, report=False)
    changed = Study.model_validate(study_dict(seeds=[0], train={"epochs": 3, "batch_size": 30}))
    with pytest.raises(ConfigError, match="another config"):
        run_study(changed, tmp_path, report=False)


def test_lock_refuses_a_second_runner(tmp_path):
    with StudyLock(tmp_path):
        with pytest.raises(ConfigError, match="being run by another process"):
            run_study(Study.model_validate(study_dict()), tmp_path, report=False)


def test_a_locked_folder_is_refused_before_any_worker_starts_or_any_dataset_loads(tmp_path, monkeypatch):
    """The lock comes first: a second `study run` of a folder does no start-up work before it is refused."""
    work = []
    monkeypatch.setattr(Pool, "warm", lambda self, workers: work.append(f"{workers} workers started"))
    monkeypatch.setattr(engine, "prepare_data", lambda *a, **k: work.append("a dataset loaded"))
    data = {**SMALL_DATA, "options": {**SMALL_DATA["options"], "seed": 12345}}  # never loaded (cached) before
    with StudyLock(tmp_path):
        with pytest.raises(ConfigError, match="being run by another process"):
            run_study(Study.model_validate(study_dict(data=data)), tmp_path, workers=2, report=False)
    assert work == []
    assert not (tmp_path / "results.sqlite").exists()


def test_corrupt_database_is_reported_not_overwritten(tmp_path):
    db = tmp_path / "results.sqlite"
    db.write_bytes(b"this is not sqlite" * 100)
    before = db.read_bytes()
    with pytest.raises(ValueError, match="not a readable study database"):
        run_study(Study.model_validate(study_dict()), tmp_path, report=False)
    assert db.read_bytes() == before


def test_workers_give_the_same_metrics(tmp_path):
    # bit-identical results need the same intra-op thread count (float reductions differ otherwise);
    # the runner shares cores out between workers, so the study pins threads here
    s = Study.model_validate(study_dict(train={"epochs": 2, "batch_size": 30, "threads": 1}))
    one = _metrics(run_study(s, tmp_path / "one", report=False))
    two = _metrics(run_study(s, tmp_path / "two", workers=2, report=False))
    assert one == two


# kill -9 at random points (CLI, one and two workers), Ctrl-C and concurrent runs: tests/faults/
