"""Untrusted files run no code (SPEC §11), checked end to end through the user-facing entry points.

One payload — a pickle whose ``__reduce__`` would create a file — is fed to everything that reads a
pickle-based format: a CIFAR batch (restricted unpickler), ``archlab.load_pretrained`` (.pth), a
run's checkpoint (``torch.load(weights_only=True)``), both directly and through `study run`
resuming it. YAML with python tags is refused (``safe_load``). Names cannot smuggle HTML into the
report. The unit tests next to each loader (tests/data/test_cifar.py, tests/test_pretrained.py,
tests/train/test_checkpoint.py) cover the loaders' own error messages.
"""

from __future__ import annotations

import builtins
import os
import pickle

import numpy as np
import pytest
import torch
import yaml

import archlab
from archlab.cli import main
from archlab.data import load_dataset, write_cifar_batch
from archlab.errors import CheckpointError, ConfigError, DataError
from archlab.study.config import Study, load_study
from archlab.study.runner import run_dir, run_study
from archlab.train.checkpoint import STATE_FILE, load_checkpoint

from .conftest import fault_study, write_study


class WritesFile:
    """Unpickling this object (with a plain unpickler) creates ``target``."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (builtins.open, (self.target, "w"))


class RunsShell:
    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


PAYLOADS = [WritesFile, RunsShell]


def test_the_payload_is_live(tmp_path):
    """Guards every test below: a plain unpickler does run it."""
    marker = tmp_path / "pwned"
    pickle.loads(pickle.dumps(WritesFile(marker))).close()  # on purpose: proves the payload works
    assert marker.exists()


def _cifar_root(tmp_path, payload):
    folder = tmp_path / "data" / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(1, 6):
        write_cifar_batch(folder / f"data_batch_{i}", rng.integers(0, 256, (4, 3, 32, 32), dtype=np.uint8), [0, 1, 2, 3])
    write_cifar_batch(folder / "test_batch", rng.integers(0, 256, (4, 3, 32, 32), dtype=np.uint8), [0, 1, 2, 3])
    evil = {b"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), b"labels": [0, payload]}
    (folder / "data_batch_3").write_bytes(pickle.dumps(evil, protocol=2))
    return tmp_path / "data"


@pytest.mark.parametrize("payload", PAYLOADS)
def test_cifar_batch_payload_is_refused_directly_and_by_study_run(tmp_path, capsys, payload):
    marker = tmp_path / "pwned"
    root = _cifar_root(tmp_path, payload(marker))
    with pytest.raises(DataError, match="data_batch_3: refused to unpickle global"):
        load_dataset("cifar10", root=root)
    assert not marker.exists()

    study = fault_study(data={"name": "cifar10", "root": str(root)}, seeds=[0])
    code = main(["study", "run", str(write_study(tmp_path / "s.yaml", study)), "--out", str(tmp_path / "out")])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2 and "refused to unpickle global" in err and "Traceback" not in err
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("payload", PAYLOADS)
def test_pretrained_pth_payload_is_refused(tmp_path, payload):
    marker = tmp_path / "pwned"
    model = archlab.create_model("resnet18", num_classes=10)
    sd = dict(model.backbone.state_dict())
    sd["payload"] = payload(marker)
    torch.save(sd, tmp_path / "resnet18-evil.pth")
    with pytest.raises(CheckpointError, match="weights_only"):
        archlab.load_pretrained(model, tmp_path / "resnet18-evil.pth")
    (tmp_path / "raw.pth").write_bytes(pickle.dumps(payload(marker)))  # a bare pickle named .pth
    with pytest.raises(CheckpointError, match="weights_only"):
        archlab.load_pretrained(model, tmp_path / "raw.pth")
    assert not marker.exists()


@pytest.mark.parametrize("payload", PAYLOADS)
def test_checkpoint_payload_is_refused_directly_and_when_a_study_resumes(tmp_path, payload):
    marker = tmp_path / "pwned"
    s = Study.model_validate(fault_study(seeds=[0], variants={"a": {}}, train={"epochs": 1, "batch_size": 10, "threads": 1}))
    run_study(s, tmp_path / "out", report=False)
    key = s.grid()[0]
    run = run_dir(tmp_path / "out", key)
    # swap in a malicious training state and make the run look interrupted
    state = torch.load(run / "checkpoint" / STATE_FILE, weights_only=True)
    state["optimizer"] = payload(marker)
    torch.save(state, run / "checkpoint" / STATE_FILE)
    (run / "result.json").unlink()
    from archlab.study.execute import load_splits
    from archlab.train.engine import build_run_model

    cfg = s.resolve(key)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_checkpoint(run / "checkpoint", model=build_run_model(cfg, load_splits(cfg.data.model_dump_json())))
    assert not marker.exists()

    from archlab.study.store import StudyStore

    store = StudyStore(tmp_path / "out" / "results.sqlite")
    with store.tx() as c:
        c.execute("UPDATE runs SET status = 'running'")
    store.close()
    store = run_study(s, tmp_path / "out", report=False)
    row = store.rows()[0]
    assert row.status == "failed" and "CheckpointError" in row.error and "weights_only" in row.error
    assert not marker.exists()


@pytest.mark.parametrize(
    "tagged",
    [
        "!!python/object/apply:os.system ['touch {m}']",
        "!!python/object/apply:builtins.open ['{m}', 'w']",
        "!!python/object/new:subprocess.Popen [['touch', '{m}']]",
        "!!python/name:os.system",
    ],
)
def test_yaml_with_python_tags_is_refused(tmp_path, capsys, tagged):
    marker = tmp_path / "pwned"
    text = yaml.safe_dump(fault_study()) + f"description: {tagged.format(m=marker)}\n"
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_study(path)
    code = main(["study", "run", str(path), "--out", str(tmp_path / "out")])
    assert code == 2 and "invalid YAML" in capsys.readouterr().err
    train_cfg = tmp_path / "train.yaml"
    train_cfg.write_text(f"epochs: {tagged.format(m=marker)}\n")
    code = main(["train", "--config", str(train_cfg), "--out", str(tmp_path / "run")])
    assert code == 2 and "invalid YAML" in capsys.readouterr().err
    assert not marker.exists()
    assert not (tmp_path / "out").exists() and not (tmp_path / "run").exists()


@pytest.mark.parametrize("field", ["variant", "study", "baseline"])
def test_names_with_markup_are_refused_in_study_files(tmp_path, field):
    """A study file cannot name a variant `<script>...`: names are [A-Za-z0-9_.+-] (the report escapes
    whatever reaches it anyway — tests/study/test_report.py)."""
    evil = "<script>alert(1)</script>"
    d = fault_study()
    if field == "variant":
        d["variants"][evil] = {}
    elif field == "study":
        d["name"] = evil
    else:
        d["baseline"] = evil
    with pytest.raises(ConfigError):
        load_study(write_study(tmp_path / "s.yaml", d))
