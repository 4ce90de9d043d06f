"""A full disk, a NaN loss mid-run and a corrupt database: recorded, nothing lost, resumable (SPEC §11)."""

from __future__ import annotations

import errno
import sqlite3

import pytest
import torch
from torch import nn

import archlab.train.checkpoint as checkpoint_mod
from archlab.cli import main
from archlab.study.config import Study, load_study
from archlab.study.runner import run_dir, run_study
from archlab.study.store import StudyStore
from archlab.train import losses
from archlab.train.checkpoint import load_checkpoint, recover_checkpoint

from .conftest import fault_study, metrics

KEY_B0 = ("synthetic28", "b", 0)


def _disk_full_after(monkeypatch, path_part: str, writes: int):
    """Make checkpoint writes under ``path_part`` fail with ENOSPC after ``writes`` good ones."""
    real = checkpoint_mod._write_synced
    seen = {"n": 0}

    def write(path, data):
        if path_part in str(path):
            seen["n"] += 1
            if seen["n"] > writes:
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, data)

    monkeypatch.setattr(checkpoint_mod, "_write_synced", write)
    return seen


def test_full_disk_fails_the_run_keeps_everything_and_a_rerun_finishes(tmp_path, monkeypatch, reference):
    path, ref, _ = reference
    out = tmp_path / "out"
    # each checkpoint writes 4 files: the 3rd checkpoint of b/seed0 hits the full disk
    seen = _disk_full_after(monkeypatch, "/b/seed0/", writes=8)
    store = run_study(load_study(path), out, report=False)
    assert seen["n"] > 8
    rows = {(r.dataset, r.variant, r.seed): r for r in store.rows()}
    failed = rows[KEY_B0]
    assert failed.status == "failed"
    assert "OSError" in failed.error and "No space left on device" in failed.error
    # the other runs went on and are exactly the uninterrupted ones
    others = {k: v for k, v in metrics(store).items() if k != KEY_B0}
    assert others == {k: v for k, v in ref.items() if k != KEY_B0}
    # the failed run's last complete checkpoint (the 2nd) is intact and loadable; no staging left over
    ck = run_dir(out, load_study(path).grid()[0].model_copy(update={"variant": "b"})) / "checkpoint"
    assert recover_checkpoint(ck)
    assert not ck.with_name("checkpoint.new").exists()
    _, state = load_checkpoint(ck, model=_model_for(path, "b"))
    assert state["progress"]["global_step"] == 4
    store.close()

    monkeypatch.undo()  # space freed
    store = run_study(load_study(path), out, report=False, retry_failed=True)
    assert metrics(store) == ref  # resumed from step 4, identical to never failing
    assert {r.attempts for r in store.rows() if r.variant == "b" and r.seed == 0} == {2}


def _model_for(path, variant):
    from archlab.study.execute import load_splits
    from archlab.train.engine import build_run_model

    study = load_study(path)
    key = next(k for k in study.grid() if k.variant == variant)
    cfg = study.resolve(key)
    return build_run_model(cfg, load_splits(cfg.data.model_dump_json()))


def test_full_disk_in_the_database_stops_clearly_and_a_rerun_finishes(tmp_path, monkeypatch, capsys, reference):
    path, ref, _ = reference
    out = tmp_path / "out"
    real = StudyStore.record_result
    calls = {"n": 0}

    def record_result(self, run_id, result):
        calls["n"] += 1
        if calls["n"] == 2:  # what sqlite3 raises for SQLITE_FULL, from inside the transaction
            with self.tx() as c:
                c.execute("DELETE FROM epoch_metrics WHERE run_id = ?", (run_id,))
                raise sqlite3.OperationalError("database or disk is full")
        return real(self, run_id, result)

    monkeypatch.setattr(StudyStore, "record_result", record_result)
    code = main(["study", "run", str(path), "--out", str(out), "--workers", "1"])  # one run in flight
    err = capsys.readouterr().err
    assert code == 1, err
    assert "could not write the study database (database or disk is full)" in " ".join(err.split())
    assert "Traceback" not in err
    monkeypatch.undo()

    store = StudyStore(out / "results.sqlite")  # opens: integrity check passes
    counts = store.status_counts()
    assert counts["done"] == 1 and counts["running"] == 1  # the first result kept, the second resumable
    store.close()
    store = run_study(load_study(path), out, report=False)
    assert metrics(store) == ref


class _NanAfter(nn.Module):
    """Cross-entropy that turns NaN after ``after`` training calls (a run diverging mid-way)."""

    def __init__(self, num_classes: int, after: int):
        super().__init__()
        self.after, self.calls = after, 0

    def forward(self, logits, target):
        loss = nn.functional.cross_entropy(logits, target)
        if torch.is_grad_enabled():
            self.calls += 1
            if self.calls > self.after:
                return loss * float("nan")
        return loss


def test_nan_loss_mid_run_is_recorded_and_the_others_go_on(tmp_path, monkeypatch, reference):
    _, ref, _ = reference
    monkeypatch.setitem(losses._LOSSES, "nan_after", (_NanAfter, ("after",)))
    study = fault_study()
    study["variants"]["c"] = {"model": {"head": "linear"}, "train": {"loss": "nan_after", "loss_kwargs": {"after": 25}}}
    s = Study.model_validate(study)
    store = run_study(s, tmp_path / "out", report=False)
    rows = {(r.variant, r.seed): r for r in store.rows()}
    for seed in (0, 1):
        r = rows[("c", seed)]
        assert r.status == "failed"
        assert "TrainingFailed" in r.error and "nan" in r.error.lower()
        assert "epoch 2" in r.error  # step 25 of 36: in the second epoch, after a full first one
        assert r.test is None and r.history == []
    assert {k: v for k, v in metrics(store).items() if k[1] != "c"} == ref
    # a plain re-run keeps the recorded failures and trains nothing
    events = []
    run_study(s, tmp_path / "out", report=False, on_event=lambda kind, key, info: events.append(kind))
    assert events == ["skip"] * 6


def _corrupt_middle(db):
    data = bytearray(db.read_bytes())
    page = 4096
    assert len(data) > 3 * page
    data[page : 3 * page] = b"\xa5" * (2 * page)  # garble the first b-tree pages after the header
    db.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["truncated", "garbled pages", "not sqlite"])
def test_corrupt_database_is_reported_by_every_command_and_never_overwritten(tmp_path, capsys, damage, reference):
    path, _, _ = reference
    out = tmp_path / "out"
    store = run_study(Study.model_validate(fault_study(seeds=[0], variants={"a": {}})), out, report=False)
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    db = out / "results.sqlite"
    if damage == "truncated":
        db.write_bytes(db.read_bytes()[: len(db.read_bytes()) // 2 + 100])
    elif damage == "garbled pages":
        _corrupt_middle(db)
    else:
        db.write_bytes(b"SQLite format 2\x00" + b"junk" * 2000)
    before = db.read_bytes()
    for args in (["study", "run", str(path), "--out", str(out)], ["study", "status", str(out)], ["study", "report", str(out)]):
        code = main(args)
        err = " ".join(capsys.readouterr().err.split())
        assert code == 2, (args, err)
        assert "results.sqlite" in err and ("not a readable study database" in err or "integrity check" in err), err
        assert "left untouched" in err and "Traceback" not in err
        assert db.read_bytes() == before
