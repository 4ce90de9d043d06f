"""The analysis phase of a study: per-run analyses stored once, compared like accuracy (issue 15)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from archlab.errors import ConfigError, UnknownNameError
from archlab.study.analyses import (
    ANALYSIS_METRICS,
    _a_convergence,
    _Context,
    _pareto,
    AnalysisRun,
    check_analyses,
    gate_consistency,
)
from archlab.study.config import Study
from archlab.study.record import RunRecord
from archlab.study.runner import run_study
from archlab.study.stats import compare_variants
from archlab.study.store import DB_NAME, StudyStore
from archlab.study.wording import verdict_text

TINY = {
    "name": "synthetic",
    "options": {"num_classes": 3, "num_samples": 60, "image_size": 16, "channels": 3},
    "val_fraction": 0.2,
    "test_fraction": 0.25,
}
TINY_VGG = {"name": "mini_vgg", "kwargs": {"widths": [4, 8], "fc_width": 16}}


def tiny_study(analyses, **over) -> Study:
    raw = {
        "name": "an",
        "data": TINY,
        "model": TINY_VGG,
        "train": {"epochs": 1, "batch_size": 15},
        "seeds": [0, 1],
        "baseline": "plain",
        "variants": {"plain": {}, "rot4": {"model": {"kwargs": {"rot_convs": 4, "rotations": 4}}}},
        "analyses": analyses,
    }
    raw.update(over)
    return Study.model_validate(raw)


@pytest.mark.slow  # three study runs (train, re-run, changed options): ~11 s on a busy 2-core machine
def test_smoke_study_with_analyses(tmp_path):
    """The issue's smoke study: rotation, transplant, convergence, efficiency on every run."""
    study = tiny_study(["rotation", "transplant", "convergence", "efficiency"])
    events = []
    store = run_study(study, tmp_path, workers=1, on_event=lambda k, key, info: events.append((k, info)))
    rows = store.rows()
    assert len(rows) == 4 and all(r.status == "done" for r in rows)
    for r in rows:
        a = r.analysis
        for key in ("rotation.pct_angles_correct", "rotation.mean_prob", "transplant.accuracy",
                    "transplant.pct_angles_correct", "convergence.val_auc", "efficiency.metric_per_mparam"):
            assert key in a and np.isfinite(a[key]), (r.variant, key)
        assert 0 <= a["rotation.pct_angles_correct"] <= 100 and 0 <= a["rotation.mean_prob"] <= 1
        # the baseline's "transplant" is its own weights: the same numbers as its rotation analysis
        if r.variant == "plain":
            assert a["transplant.pct_angles_correct"] == pytest.approx(a["rotation.pct_angles_correct"])
            assert a["transplant.accuracy"] == pytest.approx(r.test["accuracy"], abs=1e-6)  # float32 metric
        # efficiency = test metric / (params / 1e6)
        assert a["efficiency.metric_per_mparam"] == pytest.approx(r.test["accuracy"] / (r.params / 1e6))
    data = store.analysis_data()
    assert len(data) == 4 * 4
    rot = data[(rows[0].id, "rotation")]
    assert rot["angles"] == [float(a) for a in range(0, 360, 5)] and len(rot["curve"]) == 72
    assert rot["images"] == len(rot["per_image_pct"]) == 15  # the whole test split (25 % of 60 < 200)
    assert np.mean(rot["per_image_pct"]) == pytest.approx(rows[0].analysis["rotation.pct_angles_correct"])
    assert sum(1 for k, _ in events if k == "analysis") == 16
    # the same paired statistics as accuracy, on an analysis metric
    stats = compare_variants(rows, baseline="plain", metric="rotation.pct_angles_correct")
    assert [s.variant for s in stats] == ["plain", "rot4"] and stats[1].paired.n == 2
    # the report carries the sections, their figures and verdicts
    md = (tmp_path / "report.md").read_text()
    for title in ("Analysis: rotation", "Analysis: transplant", "Analysis: convergence", "Analysis: efficiency"):
        assert f"## {title}" in md
    assert (tmp_path / "rotation_synthetic16_box.png").is_file()
    assert (tmp_path / "efficiency_synthetic16.png").is_file()
    html = (tmp_path / "report.html").read_text()
    assert "Analysis: transplant" in html and html.count("data:image/png;base64") >= 5
    # a second run computes nothing again
    events.clear()
    run_study(study, tmp_path, workers=1, on_event=lambda k, key, info: events.append((k, info)))
    assert not [e for e in events if e[0].startswith("analysis")]
    # changed options: that analysis is recomputed on every run (replaced, never mixed), the others kept
    events.clear()
    changed = tiny_study({"rotation": {"step": 90}, "transplant": {}, "convergence": {}, "efficiency": {}})
    store = run_study(changed, tmp_path, workers=1, report=False,
                      on_event=lambda k, key, info: events.append((k, info)))
    assert [i["analysis"] for k, i in events if k == "analysis"] == ["rotation"] * 4
    data = store.analysis_data()
    assert len(data) == 16 and data[(rows[0].id, "rotation")]["angles"] == [0.0, 90.0, 180.0, 270.0]
    assert data[(rows[0].id, "rotation")]["options"] == {"images": 200, "step": 90, "batch_size": 512}
    n = store.conn.execute("SELECT COUNT(*) FROM final_metrics WHERE split = 'analysis' AND key LIKE 'rotation.%'")
    assert n.fetchone()[0] == 4 * 2


def test_analysis_options_are_checked_before_training(tmp_path):
    with pytest.raises(UnknownNameError, match="rotaton"):
        check_analyses({"rotaton": {}})
    with pytest.raises(ConfigError, match=r"analyses\.rotation\.imgs; allowed: images, step, batch_size"):
        check_analyses({"rotation": {"imgs": 3}})
    with pytest.raises(ConfigError, match=r"analyses\.rotation\.step = 0"):
        check_analyses({"rotation": {"step": 0}})
    with pytest.raises(ConfigError, match=r"analyses\.rotation\.images = 'x' must be int"):
        check_analyses({"rotation": {"images": "x"}})
    with pytest.raises(ConfigError, match=r"analyses\.convergence\.metric = 'loss'"):
        check_analyses({"convergence": {"metric": "loss"}})
    assert check_analyses({"rotation": {"step": 90}})["rotation"] == {"images": 200, "step": 90, "batch_size": 512}
    with pytest.raises(ConfigError, match="imgs"):
        run_study(tiny_study({"rotation": {"imgs": 3}}), tmp_path, workers=1)
    assert not (tmp_path / DB_NAME).exists()  # nothing trained, nothing recorded


def test_every_stored_metric_has_a_direction():
    # keys the analyses store must be in ANALYSIS_METRICS (stats need the direction)
    src = Path(__file__).resolve().parents[2] / "archlab" / "study" / "analyses.py"
    assert len(ANALYSIS_METRICS) >= 10
    for key in ANALYSIS_METRICS:
        name, metric = key.split(".", 1)
        assert f'"{metric}"' in src.read_text(), key


def test_convergence_numbers_from_history():
    hist = [{"epoch": i + 1, "val_accuracy": v, "seconds": 2.0 * (i + 1)} for i, v in enumerate([0.5, 0.7, 0.9, 0.8])]
    run = AnalysisRun(RunRecord(dataset="d", variant="a", seed=0, status="done", history=hist), Path("."), "accuracy")
    ctx = _Context("b", "accuracy", {})
    m, d = _a_convergence(run, {"target": 0.75, "fraction_of_best": 0.95, "metric": None}, ctx)
    assert m["epochs_to_target"] == 3 and m["seconds_to_target"] == 6.0
    # trapezoid area over 3 epoch intervals, divided by 3: (0.6 + 0.8 + 0.85) / 3
    assert m["val_auc"] == pytest.approx((0.6 + 0.8 + 0.85) / 3)
    m, d = _a_convergence(run, {"target": None, "fraction_of_best": 0.75, "metric": None}, ctx)
    assert d["target"] == pytest.approx(0.675) and m["epochs_to_target"] == 2
    m, d = _a_convergence(run, {"target": 0.95, "fraction_of_best": 0.95, "metric": None}, ctx)
    assert "epochs_to_target" not in m and d["reached"] is False  # never reached: left out, not faked


def test_gate_consistency_is_mean_pairwise_correlation():
    rng = np.random.default_rng(0)
    vecs = [rng.random(12) for _ in range(4)]
    want = np.mean([np.corrcoef(vecs[i], vecs[j])[0, 1] for i in range(4) for j in range(i + 1, 4)])
    assert gate_consistency(vecs) == pytest.approx(want)
    assert gate_consistency([vecs[0], 2 * vecs[0] + 1]) == pytest.approx(1.0)
    assert gate_consistency([vecs[0]]) is None


def test_pareto_front():
    pts = {"a": (1.0, 0.5), "b": (2.0, 0.7), "c": (3.0, 0.6), "d": (2.0, 0.4), "e": (4.0, 0.9)}
    assert _pareto(pts) == ["a", "b", "e"]


def test_old_database_gets_the_table(tmp_path):
    path = tmp_path / DB_NAME
    store = StudyStore(path)
    store.conn.execute("DROP TABLE analysis_data")  # a database from before analyses
    store.close()
    store = StudyStore(path)  # opening it creates the table (defined once, in the store's schema)
    assert store.analysis_data() == {}
    store.close()
    assert StudyStore(path).analysis_data() == {}  # idempotent


_CHILD = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from test_analyses import tiny_study
    from archlab.study.runner import run_study
    study = tiny_study({{"rotation": {{"images": 200, "step": 1}}, "convergence": {{}}}}, seeds=[0, 1])
    run_study(study, {out!r}, workers=1, report=False)
    """
)


@pytest.mark.slow
def test_kill_9_during_the_analysis_phase_stores_each_result_once(tmp_path):
    """kill -9 while analyses are stored; the re-run completes them, each exactly once."""
    out = tmp_path / "study"
    run_study(tiny_study([], seeds=[0, 1]), out, workers=1, report=False)  # train only
    code = _CHILD.format(tests=str(Path(__file__).parent), out=str(out))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    db = out / DB_NAME
    deadline = time.time() + 120
    n_before = 0
    try:
        while time.time() < deadline and proc.poll() is None:
            try:
                with sqlite3.connect(db, timeout=5) as c:
                    n_before = c.execute("SELECT COUNT(*) FROM analysis_data").fetchone()[0]
            except sqlite3.OperationalError:
                n_before = 0
            if n_before >= 1:
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stdout.read().decode()[-2000:]
    with sqlite3.connect(db) as c:
        before = dict(((r, a), d) for r, a, d in c.execute("SELECT run_id, analysis, data FROM analysis_data"))
        metrics_before = c.execute("SELECT COUNT(*) FROM final_metrics WHERE split = 'analysis'").fetchone()[0]
    total = 4 * 2  # 4 runs x (rotation, convergence)
    assert 1 <= len(before) < total, "the kill must land inside the analysis phase"
    # every stored result is complete (numbers and curves in one transaction)
    assert metrics_before == sum(2 if a == "rotation" else 3 for (_, a) in before)

    events = []
    study = tiny_study({"rotation": {"images": 200, "step": 1}, "convergence": {}}, seeds=[0, 1])
    store = run_study(study, out, workers=1, report=False, on_event=lambda k, key, info: events.append((k, info)))
    stored_now = [e for e in events if e[0] == "analysis"]
    assert len(stored_now) == total - len(before)  # only the missing ones
    after = {(int(r), a): d for r, a, d in store.conn.execute("SELECT run_id, analysis, data FROM analysis_data")}
    assert len(after) == total
    assert all(after[k] == v for k, v in before.items())  # earlier results untouched
    per_run = store.conn.execute(
        "SELECT run_id, key, COUNT(*) FROM final_metrics WHERE split = 'analysis' GROUP BY run_id, key"
    ).fetchall()
    assert all(n == 1 for *_, n in per_run)
    assert {k for _, k, _ in per_run} >= {"rotation.pct_angles_correct", "rotation.mean_prob", "convergence.val_auc"}
    assert all("rotation.pct_angles_correct" in r.analysis for r in store.rows(with_predictions=False))


# ------------------------------------------------------------------------------------------------
# The seed-002 claim as a test: rotation-invariant convolutions are more robust to rotation.

_KEEP = (2, 9)  # synthetic classes "triangle" and "half-disc", both drawn apex/flat side up (+-15 deg)


def _register_shapes():
    from archlab.data._dataset import ImageDataset
    from archlab.data.datasets import register_dataset
    from archlab.data.datasets.synthetic import load_synthetic

    @register_dataset("upright_shapes")
    def upright(*, root=None, num_samples=400, image_size=16, seed=0):
        """Two shape classes, always upright in training: a rotated shape keeps its class."""
        ds = load_synthetic(num_classes=10, num_samples=num_samples * 5, image_size=image_size, seed=seed,
                            noise=0.02)["train"]
        idx = torch.isin(ds.labels, torch.tensor(_KEEP)).nonzero().flatten()
        sub = ds.subset(idx)
        remap = torch.full((10,), -1, dtype=torch.long)
        remap[list(_KEEP)] = torch.arange(len(_KEEP))
        return {"train": ImageDataset(sub.images, remap[sub.labels], ("triangle", "half-disc"), name="upright_shapes")}


@pytest.mark.slow
def test_rotation_invariant_conv_is_more_robust_to_rotation(tmp_path):
    """4 rotations in all convs vs the plain net, over the 4 exact quarter turns, 4 seeds -> "better".

    The classes keep their label under rotation (no class is a rotation of another); training
    images are upright, so the plain net fits them perfectly yet fails on turned copies, while
    the rotation-invariant convolutions see the same local features at every quarter turn.
    """
    _register_shapes()
    study = Study.model_validate({
        "name": "rot", "data": {"name": "upright_shapes", "val_fraction": 0.2, "test_fraction": 0.3},
        "model": {"name": "mini_vgg", "kwargs": {"widths": [8, 16], "fc_width": 32}},
        "train": {"epochs": 8, "batch_size": 16, "optim": {"name": "adam", "lr": 0.002}},
        "seeds": 4, "baseline": "plain",
        "variants": {"plain": {}, "rot4_all": {"model": {"kwargs": {"rot_convs": 4, "rotations": 4}}}},
        "analyses": {"rotation": {"images": 80, "step": 90}},
    })
    store = run_study(study, tmp_path, workers=1, report=False)
    rows = store.rows()
    stats = compare_variants(rows, baseline="plain", metric="rotation.pct_angles_correct")
    rot = next(s for s in stats if s.variant == "rot4_all")
    assert rot.outcome == "better", verdict_text(rot)
    assert rot.paired.mean_diff > 10  # percentage points of angles classified correctly
    # the plain net is near-perfect upright: robustness, not accuracy, is what differs
    plain_acc = np.mean([r.test["accuracy"] for r in rows if r.variant == "plain"])
    assert plain_acc > 0.9


@pytest.mark.slow
def test_gates_excitation_feature_reuse_and_generalization_gap(tmp_path):
    """The per-family analyses on the models they apply to; the others are marked not applicable."""
    study = Study.model_validate({
        "name": "fam", "data": TINY, "train": {"epochs": 2, "batch_size": 15}, "seeds": [0, 1],
        "model": {"name": "mini_vgg"}, "baseline": "plain",
        "variants": {
            "plain": {"model": {"kwargs": TINY_VGG["kwargs"]}},
            "connected": {"model": {"name": "connected_net", "kwargs": {"fc_width": 16}}},
            "se": {"model": {"name": "resnet18", "kwargs": {"se": True, "cifar_stem": True}}},
            "dense": {"model": {"name": "densenet_bc", "kwargs": {"depth": 10, "growth_rate": 4}}},
        },
        "analyses": {"gates": {}, "excitation": {"images": 15}, "feature_reuse": {}, "generalization_gap": {}},
    })
    store = run_study(study, tmp_path, workers=1)
    rows = store.rows()
    assert all(r.status == "done" for r in rows), [r.error for r in rows]
    data = store.analysis_data()
    by = {(r.variant, r.seed): r for r in rows}
    for (variant, seed), r in by.items():
        gg = r.analysis
        assert gg["generalization_gap.gap"] == pytest.approx(gg["generalization_gap.train"] - r.test["accuracy"])
        assert 0 <= gg["generalization_gap.train"] <= 1
        gates, exc, reuse = (data[(r.id, a)] for a in ("gates", "excitation", "feature_reuse"))
        assert ("skipped" in gates) == (variant != "connected")
        assert ("skipped" in exc) == (variant != "se")
        assert ("skipped" in reuse) == (variant != "dense")
    finals = []
    for seed in (0, 1):
        r = by[("connected", seed)]
        g = data[(r.id, "gates")]
        assert all(len(t) == 2 for t in g["trajectory"].values())  # one entry per epoch
        assert r.analysis["gates.mean_final"] == pytest.approx(np.mean(g["final"]))
        finals.append(g["final"])
        e = data[(by[("se", seed)].id, "excitation")]
        assert e["classes"] == [0, 1, 2] and all(len(v) == 3 for v in e["blocks"].values())
        assert all(0.0 <= x <= 1.0 for per in e["blocks"].values() for vec in per.values() for x in vec)
        reuse = data[(by[("dense", seed)].id, "feature_reuse")]
        assert len(reuse["blocks"]) == 3
    md = (tmp_path / "report.md").read_text()
    assert f"| synthetic16 | connected | 2 | {gate_consistency(finals):.3f} |" in md
    assert "Not applicable to some runs" in md
    for f in ("gates_synthetic16_connected.png", "excitation_synthetic16_se.png", "feature_reuse_synthetic16_dense.png"):
        assert (tmp_path / f).is_file(), f
