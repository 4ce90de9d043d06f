"""`archlab study run --ray`: runs as Ray tasks on a local instance, results in the driver's database."""

from __future__ import annotations

import os
import pickle
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from archlab.cli import main
from archlab.study.config import Study, load_study
from archlab.study.runner import run_study
from archlab.study.store import StudyStore

from .conftest import study_dict

# one thread per run: bit-identical to the in-process runner (float reductions depend on it)
TRAIN = {"epochs": 2, "batch_size": 10, "threads": 1, "checkpoint_every_steps": 2}


def _metrics(store):
    return {
        (r.dataset, r.variant, r.seed): (
            r.status, r.test, r.val, r.test_predictions, r.best_epoch,
            [{k: v for k, v in h.items() if k != "seconds"} for h in r.history],
        )
        for r in store.rows()
    }


@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_runs_equal_the_in_process_runner(tmp_path, ray_instance, capsys):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(study_dict(train=TRAIN)))
    ref = _metrics(run_study(load_study(path), tmp_path / "local", report=False))
    # "local" reuses the instance this test started (the CLI would start one itself otherwise)
    code = main(["study", "run", str(path), "--out", str(tmp_path / "ray"), "--ray", "local"])
    assert code == 0, capsys.readouterr().err
    store = StudyStore(tmp_path / "ray" / "results.sqlite")
    assert _metrics(store) == ref
    assert all(r.attempts == 1 for r in store.rows())
    assert (tmp_path / "ray" / "report.html").is_file()


def _ray_task_pids() -> list[int]:
    """Ray worker processes busy with a run (Ray titles them ``ray::<task function>``)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if (proc / "cmdline").read_bytes().startswith(b"ray::_ray_execute"):
                    pids.append(int(proc.name))
            except OSError:
                pass
    return pids


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds Ray workers through /proc")
def test_a_lost_worker_is_retried_and_resumes_from_its_checkpoint(tmp_path, ray_instance):
    study = Study.model_validate(study_dict(train={**TRAIN, "epochs": 3}, seeds=[0], variants={"a": {}}))
    ref = _metrics(run_study(study, tmp_path / "local", report=False))
    out = tmp_path / "ray"
    ckpt = out / "runs" / "synthetic28" / "a" / "seed0" / "checkpoint"
    killed: list[tuple[int, int]] = []
    later_steps: list[int] = []

    def step_on_disk() -> int | None:
        import torch

        from archlab.train.checkpoint import STATE_FILE

        try:
            return torch.load(ckpt / STATE_FILE, weights_only=True)["progress"]["global_step"]
        except (OSError, RuntimeError, KeyError, EOFError, pickle.UnpicklingError):  # absent or mid-swap
            return None

    def kill_mid_run() -> None:  # kill -9 the worker once the run has checkpointed mid-way
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (ckpt.parent / "result.json").exists():
            pids = _ray_task_pids()
            step = step_on_disk()
            if not killed and pids and step is not None:
                os.kill(pids[0], signal.SIGKILL)
                killed.append((pids[0], step))
            elif killed and step is not None:
                later_steps.append(step)  # what the retry checkpoints
            time.sleep(0.005)

    killer = threading.Thread(target=kill_mid_run)
    killer.start()
    store = run_study(study, out, report=False, ray_address="local")
    killer.join()
    assert killed, "the run ended before its worker could be killed"
    assert killed[0][1] > 0  # it died after a checkpoint ...
    assert all(step >= killed[0][1] for step in later_steps)  # ... and the retry went on from there
    assert _metrics(store) == ref


def test_missing_ray_is_a_clear_usage_error(tmp_path, monkeypatch, capsys):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(study_dict()))
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    code = main(["study", "run", str(path), "--out", str(tmp_path / "o"), "--ray", "local"])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2
    assert "pip install -e '.[ray]'" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()  # nothing started


@pytest.mark.slow
def test_ctrl_c_on_a_ray_study_stops_and_resumes(tmp_path):
    """`--ray local` in a real subprocess (its own Ray instance): SIGINT cancels the tasks, exit 130."""
    import subprocess

    pytest.importorskip("ray")
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(study_dict(train={**TRAIN, "epochs": 3})))
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "archlab.cli", "study", "run", str(path), "--out", str(out), "--ray", "local"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / "runs").exists() and any((out / "runs").rglob("checkpoint")):
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1]
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    store = StudyStore(out / "results.sqlite")
    counts = store.status_counts()
    assert counts["running"] == 0 and counts["failed"] == 0 and counts["done"] < 4
    store.close()
    deadline = time.monotonic() + 30  # the Ray instance it started is gone with its workers
    while _ray_task_pids() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _ray_task_pids()
    ref = _metrics(run_study(load_study(path), tmp_path / "ref", report=False))
    assert _metrics(run_study(load_study(path), out, report=False)) == ref


@pytest.mark.slow
def test_more_threads_than_any_node_has_is_a_clear_error(tmp_path, ray_instance):
    study = Study.model_validate(study_dict(train={**TRAIN, "threads": 3}, seeds=[0]))  # the instance has 2 CPUs
    with pytest.raises(ValueError, match="largest node"):
        run_study(study, tmp_path / "out", report=False, ray_address="local")
    rows = StudyStore(tmp_path / "out" / "results.sqlite").rows()
    assert {r.status for r in rows} == {"pending"}  # nothing was marked running or failed
