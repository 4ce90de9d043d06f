"""DDP under torchrun (2 processes, gloo on CPU) is the same run as one process; DDP resume is exact."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import yaml
from torch import nn

from archlab.errors import ConfigError
from archlab.train import engine
from archlab.train.config import TrainConfig
from archlab.train.distributed import DistContext, GlobalBatchNorm, current

DATA = {
    "name": "synthetic",
    "options": {"num_classes": 3, "num_samples": 240, "image_size": 28, "channels": 1, "seed": 1},
    "val_fraction": 0.2,
    "test_fraction": 0.2,
}
# 144 training samples in batches of 25: the last batch (19) splits 10/9, so uneven shards are exercised;
# eval batches of 20 make the gathered predictions span several batches.
BASE = {"data": DATA, "epochs": 2, "batch_size": 25, "eval_batch_size": 20, "seed": 3, "threads": 1, "device": "cpu"}
# crnet: BatchNorm (converted to global-batch BN under DDP) and no dropout, so DDP can equal one process.
CRNET = {**BASE, "data": {**DATA, "augment": "spinal_mnist"}, "model": {"name": "crnet", "kwargs": {"channels": [8, 16, 16]}}}
# mnist_cnn: dropout, whose per-rank streams must be restored on resume.
MNIST_CNN = {**BASE, "model": {"name": "mnist_cnn"}, "checkpoint_every_steps": 2}

TIMEOUT = 120


def _torchrun(args: list[str], tmp_path, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=TIMEOUT, env=env, cwd=tmp_path)
    if check and proc.returncode != 0:
        raise AssertionError(f"torchrun failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def _train_cli(cfg: dict, out, tmp_path) -> dict:
    path = tmp_path / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = _torchrun(["-m", "archlab.cli", "train", "-c", str(path), "-o", str(out), "-q"], tmp_path)
    assert proc.stdout.count("test accuracy") == 1  # rank 0 prints, the other rank is silent
    return json.loads((out / "result.json").read_text())


@pytest.mark.slow
def test_ddp_two_processes_equal_one_process(tmp_path):
    threads = torch.get_num_threads()
    try:
        single = engine.train(TrainConfig.model_validate(CRNET))
    finally:
        torch.set_num_threads(threads)  # the config's threads: 1 must not slow the rest of the suite
    ddp = _train_cli(CRNET, tmp_path / "ddp", tmp_path)
    # Same global batches, augmentation draws and global-batch BatchNorm: only float summation order
    # differs (gradients summed over 2 shards, BN statistics over 2 partial sums). Stated tolerance:
    # losses within 1e-4 relative / 1e-3 absolute, identical accuracies and test predictions.
    assert len(ddp["history"]) == len(single.history) == 2
    for a, b in zip(single.history, ddp["history"]):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
        assert b["train_accuracy"] == a["train_accuracy"]
        assert b["val_accuracy"] == a["val_accuracy"]
        assert b["val_loss"] == pytest.approx(a["val_loss"], abs=1e-3)
    assert ddp["best_epoch"] == single.best_epoch
    assert ddp["test_targets"] == single.test_targets
    assert ddp["test_predictions"] == single.test_predictions
    assert ddp["test"]["accuracy"] == single.test["accuracy"]
    assert ddp["test"]["loss"] == pytest.approx(single.test["loss"], abs=1e-3)
    assert ddp["params"] == single.params
    # rank 0 alone wrote the run folder; its best weights load into a plain (single-process) model
    model, *_ = engine.load_run(tmp_path / "ddp")
    assert not any(isinstance(m, GlobalBatchNorm) for m in model.modules())


_RESUME = textwrap.dedent(
    """
    import logging, sys, yaml
    from archlab.train import engine
    from archlab.train.config import TrainConfig
    from archlab.train.distributed import launch

    logging.basicConfig(level=logging.INFO)
    cfg = TrainConfig.model_validate(yaml.safe_load(open(sys.argv[1])))
    full, part = sys.argv[2], sys.argv[3]

    def stop(step):
        if step == 5:  # after the checkpoint of step 4, inside epoch 1 (6 steps per epoch)
            raise KeyboardInterrupt("simulated kill")

    with launch(cfg.device):
        engine.train(cfg, full)
        try:
            engine.train(cfg, part, on_step=stop)
            sys.exit("the interrupted run was not interrupted")
        except KeyboardInterrupt:
            pass
        engine.train(cfg, part)  # model, optimizer, RNG and data position come from the checkpoint
    """
)


@pytest.mark.slow
def test_ddp_resume_equals_uninterrupted_ddp_run(tmp_path):
    # One torchrun launch (two processes) runs an uninterrupted DDP run, an interrupted one and its
    # resumption: a launch costs seconds of imports, and the resumed run reads all its state from disk.
    script = tmp_path / "resume.py"
    script.write_text(_RESUME)
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(MNIST_CNN))
    full, part = tmp_path / "full", tmp_path / "part"
    proc = _torchrun([str(script), str(cfg_path), str(full), str(part)], tmp_path)
    assert proc.stderr.count(f"resumed {part} at epoch 1 step 4") == 2  # both ranks, from the checkpoint
    a = json.loads((full / "result.json").read_text())
    b = json.loads((part / "result.json").read_text())
    state = torch.load(part / "checkpoint" / "train_state.pt", weights_only=True)
    assert len(state["rng_ranks"]) == 2  # every rank's dropout stream is kept
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]
    assert strip(b["history"]) == strip(a["history"])
    assert b["test"] == a["test"]
    assert b["test_predictions"] == a["test_predictions"]


def test_batches_too_small_for_the_process_count_are_refused():
    ctx = DistContext(rank=0, world_size=4, device=torch.device("cpu"))
    with pytest.raises(ConfigError, match="raise batch_size to at least 4"):
        ctx.check_batches(100, 2, drop_last=False)
    with pytest.raises(ConfigError, match="drop_last"):
        ctx.check_batches(101, 10, drop_last=False)  # last batch: 1 sample for 4 processes
    ctx.check_batches(101, 10, drop_last=True)
    ctx.check_batches(104, 10, drop_last=False)  # last batch: 4


def test_shards_cover_the_global_batch_and_weights_give_its_mean():
    x = torch.arange(19.0).view(19, 1)
    y = torch.arange(19)
    parts = [DistContext(rank=r, world_size=2, device=torch.device("cpu")).shard_batch(x, y) for r in range(2)]
    assert torch.equal(torch.cat([p[1] for p in parts]), y)
    # mean of per-rank means weighted as DDP averages them == global mean
    ddp_mean = sum(p[0].mean() * p[2] for p in parts) / 2
    assert ddp_mean.item() == pytest.approx(x.mean().item())


def test_torchrun_without_a_process_group_is_refused(monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(ConfigError, match="no process group"):
        current("cpu")


def test_global_batchnorm_outside_a_group_is_batchnorm():
    bn = nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.weight.uniform_()
        bn.bias.uniform_()
    ref = nn.Sequential(nn.Conv2d(1, 3, 3), bn)
    conv = GlobalBatchNorm.convert(nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3)))
    conv.load_state_dict(ref.state_dict())
    assert isinstance(conv[1], GlobalBatchNorm)
    assert list(conv.state_dict()) == list(ref.state_dict())
    x = torch.randn(4, 1, 6, 6)
    assert torch.allclose(conv(x), ref(x))
    assert torch.allclose(conv[1].running_var, ref[1].running_var)
