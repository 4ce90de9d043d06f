"""Kill -9 at random points, Ctrl-C, and two `study run` of one study at once (SPEC §11).

Generalises tests/study/test_runner.py::test_kill_9_then_resume_equals_uninterrupted (one kill at
a chosen point, in-process runner) to several seeded random kill points of the real CLI, with one
and two workers, each followed by a re-run.
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest

from archlab.study.config import load_study
from archlab.study.runner import run_study
from archlab.study.store import StudyStore

from .conftest import fault_study, metrics, study_cli, write_study


def _wait_for(cond, proc, timeout=120.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        if proc.poll() is not None:
            raise AssertionError(f"study run exited ({proc.returncode}) before {what}: {proc.stderr.read()}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _holds_lock(out: Path, proc) -> bool:
    """True once ``proc`` holds the study lock (it writes its pid there), i.e. it starts training."""
    try:
        return (out / ".study.lock").read_text().strip() == str(proc.pid)
    except OSError:
        return False


def _trains(out: Path, since: float) -> bool:
    """True once a checkpoint was written after ``since`` (training has begun)."""
    runs = out / "runs"
    return runs.exists() and any(ck.stat().st_mtime > since for ck in runs.rglob("checkpoint"))


def _counts(db: Path) -> dict[str, int]:
    store = StudyStore(db)
    try:
        return store.status_counts()
    finally:
        store.close()


def _mid_run(out: Path) -> list[Path]:
    """Run folders holding a checkpoint but no result: runs a kill caught half-way."""
    return [
        ck.parent for ck in (out / "runs").rglob("checkpoint") if ck.is_dir() and not (ck.parent / "result.json").exists()
    ]


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid``: worker processes are forked by the fork server, the study's child."""
    try:
        kids = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
    return kids + [g for k in kids for g in _children(k)]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_kill_9_at_random_points_then_rerun_equals_uninterrupted(tmp_path, reference):
    path, ref, seconds = reference
    out = tmp_path / "out"
    db = out / "results.sqlite"
    rng = random.Random(9)  # seeded: the same kill delays every time
    caught_mid_run = 0
    for attempt in range(3):
        workers = 1 + attempt % 2  # the second kill hits a study with two worker processes
        since = time.time()
        proc = study_cli("run", path, "--out", out, "--workers", workers)
        _wait_for(lambda since=since, p=proc: _trains(out, since) or p.poll() is not None, proc, what="a checkpoint")
        if proc.poll() is not None:  # the earlier attempts got far enough to finish the study here
            assert proc.wait() == 0, proc.stderr.read()
            break
        # each delay is at most 25 % of the uninterrupted study's training time
        time.sleep(rng.uniform(0.0, 0.25) * seconds)
        kids = _children(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
        caught_mid_run += bool(_mid_run(out))
        _counts(db)  # the database opens (integrity check) after every kill
        deadline = time.monotonic() + 30  # orphaned workers notice their dead parent and stop
        while any(_alive(k) for k in kids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(k) for k in kids), "a worker outlived the killed study process"
    assert caught_mid_run >= 1, "no kill interrupted a run half-way; the delays are too short"

    store = run_study(load_study(path), out, report=False)  # the last re-run goes to the end
    assert metrics(store) == ref
    rows = store.rows()
    assert len(rows) == len({(r.dataset, r.variant, r.seed) for r in rows}) == len(ref)
    epochs = store.conn.execute("SELECT run_id, COUNT(DISTINCT epoch) FROM epoch_metrics GROUP BY run_id").fetchall()
    assert sorted(n for _, n in epochs) == [2] * len(ref)  # every epoch stored once per run


def test_ctrl_c_stops_cleanly_and_resumes(tmp_path, reference):
    path, ref, _ = reference
    out = tmp_path / "out"
    proc = study_cli("run", path, "--out", out, "--workers", "2")
    _wait_for(lambda: _holds_lock(out, proc) and bool(_mid_run(out)), proc, what="a checkpoint mid-run")
    workers = _children(proc.pid)
    assert workers, "expected worker processes"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "run the same command again" in err
    assert "Traceback" not in err
    deadline = time.monotonic() + 10
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(w) for w in workers), "worker processes kept running after Ctrl-C"
    counts = _counts(out / "results.sqlite")
    assert counts["failed"] == 0 and counts["running"] == 0  # interrupted runs are pending again
    assert counts["done"] < len(ref)
    assert not (out / ".study.lock").exists() or _lock_is_free(out)

    store = run_study(load_study(path), out, report=False)
    assert metrics(store) == ref


def _lock_is_free(out: Path) -> bool:
    import fcntl

    fd = os.open(out / ".study.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def test_second_concurrent_run_is_refused(tmp_path):
    # long enough that the first is still training when the second has started up
    path = write_study(tmp_path / "s.yaml", fault_study(train={"epochs": 60, "batch_size": 10, "threads": 1}))
    out = tmp_path / "out"
    first = study_cli("run", path, "--out", out, "--workers", "1")
    _wait_for(lambda: _holds_lock(out, first), first, what="the study lock")
    second = study_cli("run", path, "--out", out)
    _, err2 = second.communicate(timeout=120)
    assert second.returncode == 2, err2
    assert f"being run by another process (pid {first.pid})" in " ".join(err2.split())
    assert "Traceback" not in err2
    assert first.poll() is None  # the first one goes on undisturbed
    first.kill()
    first.communicate()


def test_ctrl_c_in_the_single_process_runner_leaves_the_run_resumable(tmp_path, monkeypatch, reference):
    """workers=1 trains in the study process itself: KeyboardInterrupt arrives inside train()."""
    from archlab.train import engine

    path, ref, _ = reference
    real, saves = engine.save_checkpoint, []

    def save_then_interrupt(*args, **kwargs):  # Ctrl-C right after the 3rd checkpoint of the study
        out = real(*args, **kwargs)
        saves.append(out)
        if len(saves) == 3:
            raise KeyboardInterrupt
        return out

    monkeypatch.setattr(engine, "save_checkpoint", save_then_interrupt)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_study(load_study(path), out, report=False)
    monkeypatch.undo()
    store = StudyStore(out / "results.sqlite")
    rows = store.rows()
    assert [r.status for r in rows] == ["pending"] * len(ref)  # interrupted, not failed
    assert rows[0].error is None and rows[0].attempts == 1
    assert _lock_is_free(out)
    store.close()
    assert metrics(run_study(load_study(path), out, report=False)) == ref
