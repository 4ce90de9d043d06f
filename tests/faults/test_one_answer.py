"""One study, one answer (issue 14, items 1-6): results independent of scheduling, and no stored
result that was not computed as its recorded config says."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest
from archlab.cli import main
from archlab.errors import ConfigError
from archlab.study.config import Study, load_study
from archlab.study.runner import run_study
from archlab.study.store import StudyStore
from archlab.train.config import TrainConfig
from archlab.train.engine import train

from .conftest import fault_study, metrics, study_cli, write_study

SMALL = {
    "name": "synthetic",
    "options": {"num_classes": 3, "num_samples": 120, "image_size": 16, "channels": 1, "seed": 5},
    "val_fraction": 0.2,
    "test_fraction": 0.25,
}


def small_study(**over):
    d = {
        "name": "one",
        "data": SMALL,
        "model": {"name": "mnist_cnn", "kwargs": {}},
        "train": {"epochs": 2, "batch_size": 16},
        "seeds": [0, 1],
        "baseline": "a",
        "variants": {"a": {"model": {"head": "linear"}}, "b": {"model": {"head": "mlp", "head_kwargs": {"hidden": [16]}}}},
    }
    d.update(over)
    return d


# --- 1. --workers never changes a result ---------------------------------------------------------
def test_workers_do_not_change_any_stored_value(tmp_path):
    study = Study.model_validate(small_study(data={**SMALL, "options": {**SMALL["options"], "image_size": 28}}))
    one = run_study(study, tmp_path / "w1", workers=1, report=False)
    two = run_study(study, tmp_path / "w2", workers=2, report=False)
    a, b = metrics(one), metrics(two)
    assert a == b and len(a) == 4
    # the thread count is recorded in every run's config, fixed by the study, not by --workers
    threads = {json.dumps(r.config["threads"]) for r in one.rows() + two.rows()}
    assert threads == {"1"}
    assert {r.provenance["threads"] for r in one.rows() + two.rows()} == {1}


def test_study_threads_is_part_of_the_config(tmp_path):
    study = Study.model_validate(small_study(train={"epochs": 1, "batch_size": 16, "threads": 2}))
    key = study.grid()[0]
    assert study.resolve(key).threads == 2
    assert Study.model_validate(small_study()).resolve(key).threads == 1


# --- 2. a changed config never resumes an old run ------------------------------------------------
class _Stop(Exception):
    pass


def _interrupted_run(out: Path, cfg: TrainConfig, after_steps: int = 3) -> None:
    def stop(step):
        if step >= after_steps:
            raise _Stop

    with pytest.raises(_Stop):
        train(cfg, out, on_step=stop)
    assert (out / "checkpoint").is_dir() and not (out / "result.json").exists()


class _Res:
    def __init__(self, code, output):
        self.exit_code, self.output = code, output


@pytest.fixture
def cli(capsys):
    """``archlab ARGS`` in this process through the real entry point (exit codes, one-line errors)."""

    def run(*args):
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return _Res(code, " ".join((captured.out + captured.err).split()))

    return run


def test_train_into_existing_out_with_changed_lr_is_refused(tmp_path, cli):
    def _train_cli(*args):
        return cli("train", "--quiet", *args)

    out = tmp_path / "run"
    base = ["--model", "mnist_cnn", "--dataset", "synthetic", "--image-size", "16", "--epochs", "1", "--out", out]
    first = _train_cli(*base, "--lr", "0.001")
    assert first.exit_code == 0, first.output
    before = (out / "config.json").read_text()
    res = _train_cli(*base, "--lr", "0.01")
    assert res.exit_code == 2
    assert "optim.lr: 0.001 -> 0.01" in res.output and "--no-resume" in res.output
    assert (out / "config.json").read_text() == before  # the record still says what ran
    again = _train_cli(*base, "--lr", "0.001")  # the recorded config still gives its result
    assert again.exit_code == 0


def test_interrupted_run_resumed_with_another_lr_is_refused(tmp_path):
    out = tmp_path / "run"
    cfg = TrainConfig.model_validate(
        {"data": SMALL, "epochs": 2, "batch_size": 16, "threads": 1, "checkpoint_every_steps": 2}
    )
    _interrupted_run(out, cfg)
    before = (out / "config.json").read_text()
    changed = cfg.model_copy(update={"optim": cfg.optim.model_copy(update={"lr": 0.01})})
    with pytest.raises(ConfigError, match=r"optim\.lr: 0\.001 -> 0\.01"):
        train(changed, out)
    assert (out / "config.json").read_text() == before
    done = train(cfg, out)  # the recorded config resumes
    assert done.config["optim"]["lr"] == 0.001


def test_study_variant_changed_after_interrupt_is_refused(tmp_path):
    path = write_study(tmp_path / "s.yaml", small_study(seeds=[0]))
    study = load_study(path)
    # Ctrl-C while variant b trains: its run is pending again with a checkpoint in its folder
    run_study(study, tmp_path / "out", workers=1, report=False)
    store = StudyStore(tmp_path / "out" / "results.sqlite")
    b = next(r for r in store.rows() if r.variant == "b")
    folder = tmp_path / "out" / "runs" / "synthetic16" / "b" / "seed0"
    (folder / "result.json").unlink()
    with store.tx() as c:
        c.execute("UPDATE runs SET status = 'pending' WHERE id = ?", (b.id,))
    store.close()
    changed = small_study(seeds=[0])
    changed["variants"]["b"]["train"] = {"optim": {"lr": 0.01}}
    with pytest.raises(ConfigError, match=r"optim\.lr: 0\.001 -> 0\.01"):
        run_study(Study.model_validate(changed), tmp_path / "out", workers=1, report=False)
    store = StudyStore(tmp_path / "out" / "results.sqlite")
    assert next(r for r in store.rows() if r.variant == "b").config["optim"]["lr"] == 0.001


def test_pending_run_that_never_trained_takes_the_new_config(tmp_path):
    study = Study.model_validate(small_study(seeds=[0]))
    store = StudyStore(tmp_path / "results.sqlite")
    cfg = study.resolve(study.grid()[0]).model_dump(mode="json")
    store.ensure_run("synthetic16", "a", 0, {**cfg, "epochs": 5})  # recorded, never started
    store.close()
    store = run_study(study, tmp_path, workers=1, report=False)
    assert {r.config["epochs"] for r in store.rows()} == {2}


def test_config_recorded_before_an_option_existed_is_the_same_config(tmp_path):
    # an old study folder: its configs lack options added since (they default to the old behaviour)
    path = _run_once(tmp_path, seeds=[0])
    store = StudyStore(tmp_path / "out" / "results.sqlite")
    with store.tx() as c:
        for run_id, cfg in c.execute("SELECT id, config FROM runs").fetchall():
            old = json.loads(cfg)
            old.pop("drop_last")
            old["data"].pop("resample_seed")
            c.execute("UPDATE runs SET config = ? WHERE id = ?", (json.dumps(old), run_id))
    store.close()
    before = metrics(StudyStore(tmp_path / "out" / "results.sqlite"))
    store = run_study(load_study(path), tmp_path / "out", workers=1, report=False)
    assert metrics(store) == before
    assert all("drop_last" in r.config for r in store.rows())


# --- 3. two runs never share a folder ------------------------------------------------------------
@pytest.mark.parametrize("name", ["..", ".", ".hidden", "a/b", "-x", "+x"])
def test_unsafe_variant_names_are_refused(tmp_path, name):
    d = small_study()
    d["variants"][name] = {}
    with pytest.raises(ConfigError, match="variant name"):
        load_study(write_study(tmp_path / "s.yaml", d))


@pytest.mark.parametrize("label", ["..", ".", "a/b"])
def test_unsafe_dataset_labels_are_refused(tmp_path, label):
    d = small_study()
    d.pop("data")
    d["datasets"] = [{**SMALL, "label": label}, SMALL]
    with pytest.raises(ConfigError):
        load_study(write_study(tmp_path / "s.yaml", d))


def test_study_named_dotdot_is_refused_without_writing(tmp_path, cli):
    d = small_study(name="..")
    path = write_study(tmp_path / "s.yaml", d)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        res = cli("study", "run", path)
    finally:
        os.chdir(cwd)
    assert res.exit_code == 2 and "name '..'" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.yaml"]


def test_two_datasets_get_two_folders(tmp_path):
    d = small_study(seeds=[0], train={"epochs": 1, "batch_size": 16})
    d.pop("data")
    other = {**SMALL, "options": {**SMALL["options"], "seed": 9}, "label": "other"}
    d["datasets"] = [SMALL, other]
    d["variants"] = {"a": {"model": {"head": "linear"}}}
    store = run_study(load_study(write_study(tmp_path / "s.yaml", d)), tmp_path / "out", workers=1, report=False)
    rows = store.rows()
    assert len(rows) == 2 and {r.status for r in rows} == {"done"}
    owners = [json.loads((tmp_path / "out" / "runs" / r.dataset / "a" / "seed0" / "owner.json").read_text()) for r in rows]
    assert {o["dataset"] for o in owners} == {"synthetic16", "other"}
    assert rows[0].test_predictions != rows[1].test_predictions or rows[0].test_targets != rows[1].test_targets


# --- 4. foreign state is refused -----------------------------------------------------------------
def _run_once(tmp_path, **over):
    path = write_study(tmp_path / "s.yaml", small_study(**over))
    run_study(load_study(path), tmp_path / "out", workers=1, report=False)
    return path


def _reset_to_pending(out: Path, variant: str, seed: int) -> None:
    store = StudyStore(out / "results.sqlite")
    with store.tx() as c:
        c.execute("UPDATE runs SET status = 'pending' WHERE variant = ? AND seed = ?", (variant, seed))
    store.close()


def test_result_copied_from_another_seed_is_refused(tmp_path):
    path = _run_once(tmp_path)
    runs = tmp_path / "out" / "runs" / "synthetic16" / "a"
    shutil.copy(runs / "seed0" / "result.json", runs / "seed1" / "result.json")
    _reset_to_pending(tmp_path / "out", "a", 1)
    store = run_study(load_study(path), tmp_path / "out", workers=1, report=False)
    row = next(r for r in store.rows() if r.variant == "a" and r.seed == 1)
    assert row.status == "failed" and "seed: 0 -> 1" in row.error
    assert row.test is None or row.config["seed"] == 1


def test_edited_result_is_refused(tmp_path):
    path = _run_once(tmp_path, seeds=[0])
    res = tmp_path / "out" / "runs" / "synthetic16" / "a" / "seed0" / "result.json"
    data = json.loads(res.read_text())
    data["test"]["accuracy"] = 1.0
    res.write_text(json.dumps(data))
    _reset_to_pending(tmp_path / "out", "a", 0)
    store = run_study(load_study(path), tmp_path / "out", workers=1, report=False)
    row = next(r for r in store.rows() if r.variant == "a")
    assert row.status == "failed" and "seal" in row.error


def test_checkpoint_copied_from_another_seed_is_refused(tmp_path):
    out = tmp_path / "run"
    cfg = TrainConfig.model_validate(
        {"data": SMALL, "epochs": 2, "batch_size": 16, "threads": 1, "checkpoint_every_steps": 2}
    )
    _interrupted_run(out, cfg)
    other = tmp_path / "other"
    other.mkdir()
    shutil.copytree(out / "checkpoint", other / "checkpoint")
    with pytest.raises(ConfigError, match="seed: 0 -> 1"):
        train(cfg.model_copy(update={"seed": 1}), other)


def test_run_folder_of_another_study_is_refused(tmp_path):
    path = _run_once(tmp_path, seeds=[0])
    foreign = tmp_path / "foreign"
    run_study(load_study(path), foreign, workers=1, report=False)
    # a folder of another study copied over a pending run of this one
    dest = tmp_path / "out" / "runs" / "synthetic16" / "b" / "seed0"
    shutil.rmtree(dest)
    shutil.copytree(foreign / "runs" / "synthetic16" / "b" / "seed0", dest)
    _reset_to_pending(tmp_path / "out", "b", 0)
    store = run_study(load_study(path), tmp_path / "out", workers=1, report=False)
    row = next(r for r in store.rows() if r.variant == "b")
    assert row.status == "failed" and "belongs to another run" in row.error


def test_another_study_file_into_an_existing_folder_is_refused(tmp_path):
    _run_once(tmp_path, seeds=[0])
    other = write_study(tmp_path / "other.yaml", small_study(name="other", seeds=[0]))
    with pytest.raises(ConfigError, match="holds study 'one'"):
        run_study(load_study(other), tmp_path / "out", workers=1, report=False)
    rebased = write_study(tmp_path / "rebased.yaml", small_study(seeds=[0], baseline="b"))
    with pytest.raises(ConfigError, match="baseline 'a'"):
        run_study(load_study(rebased), tmp_path / "out", workers=1, report=False)
    store = StudyStore(tmp_path / "out" / "results.sqlite")
    assert store.get_meta("name") == "one" and store.get_meta("baseline") == "a"


# --- 5. a worker killed from outside -------------------------------------------------------------
def _worker_pids(parent: int) -> list[int]:
    """The study's worker processes: children of its fork server (or spawned children of the study)."""
    procs = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        procs[int(entry.name)] = (int(stat.rsplit(")", 1)[1].split()[1]), cmd)
    servers = {p for p, (pp, cmd) in procs.items() if pp == parent and b"forkserver" in cmd}
    return sorted(p for p, (pp, cmd) in procs.items()
                  if pp in servers or (pp == parent and b"spawn_main" in cmd and b"resource_tracker" not in cmd))


@pytest.mark.slow
def test_worker_killed_from_outside_is_retried_and_others_go_on(tmp_path, reference):
    path = write_study(tmp_path / "s.yaml", fault_study())
    proc = study_cli("run", path, "--out", tmp_path / "out", "--workers", "2")
    killed = None
    deadline = time.time() + 120
    while time.time() < deadline and killed is None and proc.poll() is None:
        ckpts = list((tmp_path / "out" / "runs").glob("*/*/seed*/checkpoint")) if (tmp_path / "out" / "runs").exists() else []
        workers = _worker_pids(proc.pid)
        if ckpts and len(workers) == 2:
            killed = workers[0]
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    out, err = proc.communicate(timeout=300)
    assert killed is not None, "no worker was seen training"
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "BrokenProcessPool" not in err
    store = StudyStore(tmp_path / "out" / "results.sqlite")
    rows = store.rows()
    assert {r.status for r in rows} == {"done"}
    assert any(r.attempts >= 2 for r in rows)
    assert metrics(store) == reference[1]  # resumed runs end where uninterrupted ones do


# --- 6. validated before anything runs -----------------------------------------------------------
@pytest.mark.parametrize(
    "train_over, needle",
    [
        ({"scheduler": {"name": "step", "kwargs": {"step_sise": 2}}}, "step_sise"),
        ({"loss": "cee"}, "cee"),
        ({"loss_kwargs": {"label_smoothin": 0.1}}, "label_smoothin"),
        ({"device": "cuda:7"}, "cuda"),
    ],
)
def test_run_options_are_checked_before_any_run(tmp_path, cli, train_over, needle):
    d = small_study()
    d["variants"]["b"]["train"] = train_over
    path = write_study(tmp_path / "s.yaml", d)
    res = cli("study", "run", path, "--out", tmp_path / "out")
    assert res.exit_code == 2, res.output
    assert needle in res.output and "variant 'b'" in res.output
    assert not (tmp_path / "out" / "results.sqlite").exists()


@pytest.mark.parametrize(
    "data_over, needle",
    [
        ({"augment": "cifr"}, "cifr"),
        ({"normalize": [[0.5, 0.5], [0.2, 0.2]]}, "normalize"),
        ({"options": {**SMALL["options"], "num_classes": 1}}, "class"),
    ],
)
def test_data_options_are_checked_before_any_run(tmp_path, cli, data_over, needle):
    path = write_study(tmp_path / "s.yaml", small_study(data={**SMALL, **data_over}))
    res = cli("study", "run", path, "--out", tmp_path / "out")
    assert res.exit_code == 2, res.output
    assert needle in res.output
    assert not (tmp_path / "out" / "results.sqlite").exists()


def test_failed_run_with_a_corrected_config_is_accepted_on_retry(tmp_path, monkeypatch):
    # a variant that fails (NaN loss) is fixed in the study file; --retry-failed redoes it afresh
    from archlab.train import losses

    from .test_failures import _NanAfter

    monkeypatch.setitem(losses._LOSSES, "nan_after", (_NanAfter, ("after",)))
    bad = small_study(seeds=[0])
    bad["variants"]["b"]["train"] = {"loss": "nan_after", "loss_kwargs": {"after": 3}}
    path = write_study(tmp_path / "s.yaml", bad)
    store = run_study(load_study(path), tmp_path / "out", workers=1, report=False)
    assert next(r for r in store.rows() if r.variant == "b").status == "failed"
    store.close()
    fixed = write_study(tmp_path / "s.yaml", small_study(seeds=[0]))
    with pytest.raises(ConfigError, match="--retry-failed"):
        run_study(load_study(fixed), tmp_path / "out", workers=1, report=False)
    store = run_study(load_study(fixed), tmp_path / "out", workers=1, report=False, retry_failed=True)
    row = next(r for r in store.rows() if r.variant == "b")
    assert row.status == "done" and row.config["loss"] == "ce"
    assert list((tmp_path / "out" / "replaced").rglob("seed0.1"))  # the failed attempt is kept aside


def test_seeds_out_of_range_and_threads_too_large_are_one_line(tmp_path, cli):
    for over, needle in (({"seeds": [2**70]}, "seed"), ({"train": {"threads": 100000}}, "threads")):
        path = write_study(tmp_path / "s.yaml", small_study(**over))
        res = cli("study", "run", path, "--out", tmp_path / "out")
        assert res.exit_code == 2 and needle in res.output
        assert "Traceback" not in res.output
