"""Small synthetic studies and helpers shared by the fault tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def fault_study(**over):
    """2 variants x 2 seeds, 2 epochs of 18 steps, a checkpoint every 2 steps (one thread: exact)."""
    d = {
        "name": "faults",
        "data": {
            "name": "synthetic",
            "options": {"num_classes": 3, "num_samples": 300, "image_size": 28, "channels": 1, "seed": 3},
            "val_fraction": 0.2,
            "test_fraction": 0.2,
        },
        "model": {"name": "mnist_cnn"},
        "train": {"epochs": 2, "batch_size": 10, "checkpoint_every_steps": 2, "threads": 1},
        "seeds": [0, 1],
        "baseline": "a",
        "variants": {"a": {"model": {"head": "linear"}}, "b": {"model": {"head": "mlp", "head_kwargs": {"hidden": [16]}}}},
    }
    d.update(over)
    return d


def write_study(path: Path, study: dict) -> Path:
    path.write_text(yaml.safe_dump(study))
    return path


def metrics(store):
    """What must not change when a study is interrupted and resumed: everything but timings."""
    out = {}
    for r in store.rows():
        history = [{k: v for k, v in h.items() if k != "seconds"} for h in r.history]
        out[(r.dataset, r.variant, r.seed)] = (
            r.status, r.test, r.val, r.test_predictions, history, r.best_epoch
        )
    return out


def study_cli(*args, **kw) -> subprocess.Popen:
    """``archlab study ...`` as a real subprocess (the installed CLI module, this interpreter)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "archlab.cli", "study", *map(str, args)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw,
    )


@pytest.fixture(scope="session")
def reference(tmp_path_factory):
    """The uninterrupted study, run once per test session: (study file, metrics, seconds of training)."""
    import time

    from archlab.study.config import load_study
    from archlab.study.runner import run_study

    root = tmp_path_factory.mktemp("reference")
    path = write_study(root / "study.yaml", fault_study())
    starts: list[float] = []

    def on_event(kind, key, info):
        if kind == "start" and not starts:
            starts.append(time.perf_counter())

    store = run_study(load_study(path), root / "out", report=False, on_event=on_event)
    seconds = time.perf_counter() - starts[0]
    ref = metrics(store)
    store.close()
    assert all(v[0] == "done" for v in ref.values())
    return path, ref, seconds
