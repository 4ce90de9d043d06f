"""The tuning phase of ``study run``: trials as stored runs; resume, kill -9 and --workers invariant."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytest.importorskip("optuna")

from archlab.study.config import Study, load_study
from archlab.study.runner import run_study
from archlab.study.store import StudyStore
from archlab.study.tune_phase import TUNE_DB

REPO = Path(__file__).resolve().parents[2]
DATA = {"name": "synthetic", "options": {"num_classes": 3, "num_samples": 90, "image_size": 16, "channels": 1,
                                         "seed": 5}, "val_fraction": 0.2, "test_fraction": 0.25}


def tuned_study(**over) -> dict:
    d = {
        "name": "tuned", "data": DATA, "model": {"name": "mnist_cnn"},
        "train": {"epochs": 1, "batch_size": 16, "threads": 1, "optim": {"name": "adam", "lr": 1e-3}},
        "seeds": [0, 1], "baseline": "a",
        "variants": {"a": {"model": {"head": "linear"}}, "b": {"model": {"head": "mlp", "head_kwargs": {"hidden": [8]}}}},
        "tune": {"space": {"train.optim.lr": "loguniform(1e-4, 3e-2)", "train.optim.weight_decay": [0, 5e-4]},
                 "trials": 3, "round": 2, "sampler": "tpe", "n_startup": 2},
    }
    d.update(over)
    return d


def stored(out: Path) -> tuple[dict, dict, dict]:
    """(trial values, seed-phase values, recorded tuning) — everything but timings."""
    trials = StudyStore(out / TUNE_DB)
    seeds = StudyStore(out / "results.sqlite")
    t = {(r.variant, r.seed): (r.status, r.val, r.test, r.config["optim"]) for r in trials.rows()}
    s = {(r.variant, r.seed): (r.status, r.val, r.test, r.config["optim"]) for r in seeds.rows()}
    return t, s, seeds.get_meta("tuning")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "out"
    run_study(Study.model_validate(tuned_study()), out, report=True)
    return out, stored(out)


def test_trials_are_stored_runs_that_never_read_test_and_the_seed_phase_uses_the_best(reference):
    out, (trials, seeds, tuning) = reference
    assert len(trials) == 6 and {v[0] for v in trials.values()} == {"done"}
    assert all(not test for _, _, test, _ in trials.values())  # no test metric was computed in a trial
    assert not set(s for _, s in trials) & {0, 1}  # tuning seeds are disjoint from the seed phase's
    assert len(seeds) == 4 and all(v[2] for v in seeds.values())
    for cell in tuning["cells"]:
        values = [t["value"] for t in cell["trials"]]
        best = cell["trials"][cell["best"]]
        assert best["value"] == max(values) and all(math.isfinite(v) for v in values)
        for seed in (0, 1):  # every seed-phase run trains at the chosen trial's config
            optim = seeds[(cell["variant"], seed)][3]
            assert optim["lr"] == best["params"]["train.optim.lr"]
            assert optim["weight_decay"] == best["params"]["train.optim.weight_decay"]
    assert (out / "tuning" / "runs" / "synthetic16" / "a").is_dir()
    report = (out / "report.md").read_text()
    assert "## Equal effort: tuning budget" in report and "Every tuned variant got 3 trials" in report
    assert "synthetic16: the ranking" in report and (out / "evp_synthetic16.png").is_file()


def test_matched_variant_in_a_study_run_is_recorded_and_reported(tmp_path):
    d = {k: v for k, v in tuned_study(seeds=[0]).items() if k != "tune"}
    d["variants"]["b"]["match"] = {"params": "a", "key": "model.head_kwargs.hidden.0"}
    store = run_study(Study.model_validate(d), tmp_path, report=True)
    rows = {r.variant: r for r in store.rows()}
    (m,) = store.get_meta("matches")
    assert rows["b"].config["model"]["head_kwargs"]["hidden"] == [m["value"]] and m["count"] == rows["b"].params
    assert abs(rows["b"].params - rows["a"].params) <= 0.02 * rows["a"].params and m["target"] == rows["a"].params
    report = (tmp_path / "report.md").read_text()
    assert "## Equal effort: capacity-matched variants" in report and f"model.head_kwargs.hidden.0 = {m['value']}" in report


@pytest.mark.slow
def test_resume_trains_nothing_and_workers_change_nothing(reference, tmp_path):
    out, ref = reference
    events = []
    run_study(Study.model_validate(tuned_study()), out, report=False, on_event=lambda k, key, i: events.append(k))
    assert set(events) <= {"skip", "trial_skip", "round"} and events.count("skip") == 4
    assert events.count("trial_skip") == 6
    assert stored(out) == ref
    run_study(Study.model_validate(tuned_study()), tmp_path / "w2", workers=2, report=False)
    assert stored(tmp_path / "w2") == ref


@pytest.mark.slow
def test_kill_9_during_tuning_gives_the_same_trials(reference, tmp_path):
    _, ref = reference
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(tuned_study()))
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "archlab.cli", "study", "run", str(path), "--out", str(out),
                             "--workers", "1"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if list((out / "tuning" / "runs").glob("*/*/seed*/result.json")) if (out / "tuning").exists() else []:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the study ended before a trial finished"
    assert not (out / "results.sqlite").exists() or not StudyStore(out / "results.sqlite").rows()
    run_study(load_study(path), out, report=False)
    assert stored(out) == ref


def test_per_variant_tune_and_an_untuned_study_has_no_tuning_db(tmp_path):
    d = tuned_study(seeds=[0])
    d["variants"]["b"]["tune"] = {**d.pop("tune"), "trials": 2}
    run_study(Study.model_validate(d), tmp_path / "o", report=False)
    trials, _, tuning = stored(tmp_path / "o")
    assert {v for v, _ in trials} == {"b"} and len(trials) == 2 and [c["variant"] for c in tuning["cells"]] == ["b"]
    d.pop("variants")
    plain = {k: v for k, v in tuned_study(seeds=[0]).items() if k != "tune"}
    run_study(Study.model_validate(plain), tmp_path / "p", report=False)
    assert not (tmp_path / "p" / TUNE_DB).exists()
    assert StudyStore(tmp_path / "p" / "results.sqlite").get_meta("tuning") is None


def test_a_trial_that_reads_the_test_split_fails_with_the_guard(tmp_path, monkeypatch):
    from archlab.study.config import RunKey
    from archlab.study.execute import execute_run
    from archlab.train import engine

    cfg = Study.model_validate(tuned_study()).resolve(RunKey(dataset="synthetic16", variant="a", seed=7))
    real = engine.build_run
    monkeypatch.setattr(engine, "build_run", lambda *a, **k: real(*a, **{**k, "test": True}))  # a leaky engine
    owner = {"study_id": "x", "dataset": "synthetic16", "variant": "a", "seed": 7, "phase": "tune"}
    got = execute_run(cfg.model_dump_json(), str(tmp_path / "run"), owner)
    assert not got["ok"] and got["error"].startswith("TestSplitAccess: tuning trial 'a' seed 7: the test split was read")
    owner.pop("phase")
    assert execute_run(cfg.model_dump_json(), str(tmp_path / "run2"), owner)["ok"]
